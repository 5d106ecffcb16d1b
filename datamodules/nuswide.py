"""NUS-WIDE from the standard list files (``<relative path> <0/1 ...>``) plus an image root."""

from __future__ import annotations

from typing import ClassVar

from .base import FileHashDataModule


class NUSWIDE(FileHashDataModule):
    """NUS-WIDE, multi-label, from list files ``train.txt`` / ``test.txt`` (queries) / ``database.txt``.

    Protocols: ``nuswide_21`` (default: DeepHash-pytorch lists, 21 most frequent concepts, 2,100
    query / 10,500 train ⊂ database, mAP@5000), ``nuswide_21_m`` (HashNet NUS-WIDE-m images, 21
    concepts) and ``nuswide_81`` (HashNet / DCH, 81 concepts, 5,000 query / 10,000 train). Each
    protocol's lists live in their own folder: point ``list_dir`` at it.

    Args:
        root: image root; list paths (e.g. ``images/0571_262727880.jpg``) are relative to it.
        **kwargs: see :class:`~datamodules.base.FileHashDataModule` (list_dir, strip_prefix,
            check_images) and :class:`~datamodules.base.HashDataModule`.
    """

    dataset_name: ClassVar[str] = "nuswide"
    display_name: ClassVar[str] = "NUS-WIDE"
    default_protocol: ClassVar[str] = "nuswide_21"
    list_where_from: ClassVar[str] = (
        "the DeepHash-pytorch lists, https://github.com/swuxyj/DeepHash-pytorch/tree/master/data/nuswide_21 "
        "(train.txt, test.txt; its code.py builds database.txt from the NUS-WIDE release), with the "
        "NUS-WIDE images of the archive linked from https://github.com/TreezzZ/DSDH_PyTorch extracted "
        "under root; for nuswide_81 the HashNet lists, https://github.com/thuml/HashNet (pytorch/data/nus_wide)")

    def __init__(self, root: str = "data/nuswide", **kwargs):
        super().__init__(root=root, **kwargs)
