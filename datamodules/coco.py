"""MS-COCO from HashNet's list files (``<relative path> <80 x 0/1>``) plus an image root."""

from __future__ import annotations

from typing import ClassVar

from .base import FileHashDataModule


class COCO(FileHashDataModule):
    """MS-COCO (80 labels, multi-label), HashNet lists: 10,000 train / 5,000 query / database.

    List names ``train.txt`` / ``test.txt`` / ``database.txt`` (DeepHash-pytorch, HashNet) or
    ``train_coco.txt`` / ``test_coco.txt`` / ``database_coco.txt`` (Bi-half). HashNet's lists carry
    absolute paths from the authors' machine: pass
    ``strip_prefix="/home/caozhangjie/run-czj/dataset/coco/"`` to make them relative to ``root``.
    Protocol: ``coco`` (mAP@5000).

    Args:
        root: image root holding ``train2014/`` and ``val2014/``.
        **kwargs: see :class:`~datamodules.base.FileHashDataModule` (list_dir, strip_prefix,
            check_images) and :class:`~datamodules.base.HashDataModule`.
    """

    dataset_name: ClassVar[str] = "coco"
    display_name: ClassVar[str] = "MS-COCO"
    default_protocol: ClassVar[str] = "coco"
    list_where_from: ClassVar[str] = (
        "the HashNet lists, https://github.com/thuml/HashNet (pytorch/data/coco/{train,test,database}.txt), "
        "also in https://github.com/swuxyj/DeepHash-pytorch (data/coco); images: the COCO 2014 "
        "train2014/ and val2014/ folders from https://cocodataset.org, extracted under root")

    def __init__(self, root: str = "data/coco", **kwargs):
        super().__init__(root=root, **kwargs)
