"""CIFAR-10 from the standard ``cifar-10-batches-py`` pickle batches, read by our own loader.

Pool order: ``data_batch_1`` ... ``data_batch_5`` (50,000 official train images), then ``test_batch``
(10,000 official test images). Files whose md5 differs from the official release (test miniatures,
re-packed copies) still load; the mismatch is a warning. Every batch is unpickled with a data-only
unpickler (``safe_pickle.py``), so a crafted file is refused before it can run anything.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from typing import ClassVar, List, Optional, Tuple

import numpy as np

from .base import HashDataModule
from .pools import Pool
from .errors import DatasetNotFoundError, DatasetFormatError, abspath, not_found
from .protocols import Protocol, register
from .safe_pickle import UnsafePickleError, load_data_pickle

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BASE_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
EXPECTED = (f"the python version of CIFAR-10: a folder '{BASE_FOLDER}' with data_batch_1 ... "
            f"data_batch_5 and test_batch (and batches.meta), each a pickled dict "
            f"{{b'data': uint8 array N x 3072 (the R, G and B planes of a 32x32 image, row-major), "
            f"b'labels': N ints in 0..9}}")
WHERE = (f"pass download=True (downloads and extracts {URL} into root), or download that archive "
         f"yourself and extract it into root")


def _official_md5() -> dict:
    """Official md5s, taken from torchvision's CIFAR10 class (no copy of the table here)."""
    from torchvision.datasets import CIFAR10 as TV

    table = {name: md5 for name, md5 in list(TV.train_list) + list(TV.test_list)}
    table[TV.meta["filename"]] = TV.meta["md5"]
    return table


def _md5(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _get(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    return None


def read_cifar_batch(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> (uint8 images N x 32 x 32 x 3, int64 labels N)."""
    try:
        with open(path, "rb") as f:
            d = load_data_pickle(f, path, EXPECTED, encoding="bytes")
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise DatasetFormatError(f"{abspath(path)}: not a readable CIFAR-10 pickle batch "
                                 f"({type(e).__name__}: {e}). Expected {EXPECTED}.") from e
    if not isinstance(d, dict):
        raise DatasetFormatError(f"{abspath(path)}: the pickle holds a {type(d).__name__}, not a dict. "
                                 f"Expected {EXPECTED}.")
    data, labels = _get(d, "data"), _get(d, "labels")
    if data is None or labels is None:
        keys = sorted(str(k) for k in d)
        raise DatasetFormatError(f"{abspath(path)}: missing key {'data' if data is None else 'labels'} "
                                 f"(keys found: {keys}). Expected {EXPECTED}.")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetFormatError(f"{abspath(path)}: b'data' has shape {data.shape}, expected (N, 3072). "
                                 f"Expected {EXPECTED}.")
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer) or data.size and (data.min() < 0 or data.max() > 255):
            raise DatasetFormatError(f"{abspath(path)}: b'data' has dtype {data.dtype} with values outside "
                                     f"0..255. Expected {EXPECTED}.")
        data = data.astype(np.uint8)
    if labels.ndim != 1 or len(labels) != len(data):
        raise DatasetFormatError(f"{abspath(path)}: {len(labels)} labels for {len(data)} images. "
                                 f"Expected {EXPECTED}.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetFormatError(f"{abspath(path)}: labels must be ints in 0..9. Expected {EXPECTED}.")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def find_cifar_dir(root: str) -> Optional[str]:
    for d in (os.path.join(root, BASE_FOLDER), root):
        if any(os.path.isfile(os.path.join(d, f)) for f in TRAIN_FILES + TEST_FILES):
            return d
    return None


def load_cifar10(root: str, verify_checksums: bool = True) -> Pool:
    """Read the six batches under ``root`` (or ``root/cifar-10-batches-py``) into a :class:`Pool`."""
    d = find_cifar_dir(root)
    if d is None:
        raise not_found("CIFAR-10 python batches", [os.path.join(root, BASE_FOLDER), root],
                        EXPECTED, WHERE)
    missing = [f for f in TRAIN_FILES + TEST_FILES if not os.path.isfile(os.path.join(d, f))]
    if missing:
        raise not_found("CIFAR-10 python batches", [os.path.join(d, f) for f in TRAIN_FILES + TEST_FILES],
                        EXPECTED, WHERE, missing=missing)
    if verify_checksums:
        official = _official_md5()
        bad = [f for f in TRAIN_FILES + TEST_FILES + (META_FILE,)
               if os.path.isfile(os.path.join(d, f)) and _md5(os.path.join(d, f)) != official[f]]
        if bad:
            warnings.warn(f"CIFAR-10 files in {abspath(d)} differ from the official release (md5 "
                          f"mismatch: {', '.join(bad)}); loading them anyway (a test miniature or a "
                          f"re-packed copy?). Results are comparable to papers only on the original "
                          f"data.", stacklevel=3)
    imgs, labs, is_test = [], [], []
    for f in TRAIN_FILES + TEST_FILES:
        x, y = read_cifar_batch(os.path.join(d, f))
        imgs.append(x), labs.append(y), is_test.append(np.full(len(y), f in TEST_FILES))
    labels = np.concatenate(labs)
    names: List[str] = list(CIFAR10_CLASSES)
    meta = os.path.join(d, META_FILE)
    if os.path.isfile(meta):
        try:
            with open(meta, "rb") as fh:
                m = load_data_pickle(fh, meta, f"{META_FILE}: a pickled dict with b'label_names' (10 bytes)",
                                     encoding="bytes")
            ln = _get(m, "label_names") if isinstance(m, dict) else None
            if ln is not None and len(ln) == 10:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in ln]
        except UnsafePickleError:
            raise  # a crafted file is an error, not a cosmetic problem
        except Exception as e:  # noqa: BLE001 - the class names are cosmetic
            warnings.warn(f"could not read {abspath(meta)} ({e}); using the standard class names",
                          stacklevel=3)
    return Pool(np.concatenate(imgs), np.eye(10, dtype=np.uint8)[labels], np.concatenate(is_test),
                names, order="data_batch_1..5 (official train) then test_batch (official test), "
                             "file order within each batch")


# ------------------------------------------------------------------------------------------ protocols
register(Protocol(
    "bihalf_i", "cifar10", "pooled", 10, 1000,
    "Bi-half Cifar-10(I): train+test pooled; 1,000 query per class; the other 5,000 per class are the "
    "database; train = database.",
    "liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a:ImageHashing/Cifar10_I.py",
    query=1000, train=None, database=None,
    nominal={"query": 10000, "train": 50000, "database": 50000}))
register(Protocol(
    "bihalf_ii", "cifar10", "pooled", 10, None,
    "Bi-half Cifar-10(II): as bihalf_i but train = 500 per class drawn from the database.",
    "liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a:ImageHashing/Cifar(II)_bihalf.py",
    query=1000, train=500, database=None,
    nominal={"query": 10000, "train": 5000, "database": 50000}))
register(Protocol(
    "dch", "cifar10", "pooled", 10, None,
    "DCH / DeepHash-pytorch `cifar10`: pooled; 100 query and 500 train per class; database = the "
    "remaining 54,000 (train excluded). thulab's R = 54,000 is the whole database.",
    "thulab/DeepHash@9907613 (DCH cifar10); swuxyj/DeepHash-pytorch@ab14068:utils/tools.py cifar10",
    query=100, train=500, database=None, train_in_database=False,
    nominal={"query": 1000, "train": 5000, "database": 54000}), aliases=("cifar10", "deephash_cifar10"))
register(Protocol(
    "cifar10_1", "cifar10", "pooled", 10, None,
    "DeepHash-pytorch `cifar10-1` / GreedyHash supervised `cifar1`: 100 query and 500 train per "
    "class; database = all 59,000 non-query images (train included).",
    "swuxyj/DeepHash-pytorch@ab14068:utils/tools.py cifar10-1; ssppp/GreedyHash@e5089b2:cifar1.py",
    query=100, train=500, database=None,
    nominal={"query": 1000, "train": 5000, "database": 59000}))
register(Protocol(
    "cifar10_2", "cifar10", "pooled", 10, None,
    "DeepHash-pytorch `cifar10-2`: same split as bihalf_i (1,000 query per class, train = "
    "database = the rest) but mAP@All (its unsupervised scripts override to @1000).",
    "swuxyj/DeepHash-pytorch@ab14068:utils/tools.py cifar10-2",
    query=1000, train=None, database=None,
    nominal={"query": 10000, "train": 50000, "database": 50000}))
register(Protocol(
    "cibhash", "cifar10", "official", 10, 1000,
    "CIBHash code: train = 500 per class of the official train set; database = the whole official "
    "train set; the official test set is shuffled into 5,000 validation and 5,000 test queries.",
    "qiuzx2/CIBHash@e976ace:utils/data.py get_cifar",
    query=None, train=500, database=None, val_query=5000,
    nominal={"query": 5000, "val_query": 5000, "train": 5000, "database": 50000}))
register(Protocol(
    "greedyhash", "cifar10", "official", 10, 1000,
    "GreedyHash unsupervised (and supervised `cifar2`) official split: query = the 10,000 test "
    "images; train = database = the 50,000 train images.",
    "ssppp/GreedyHash@e5089b2:unsupervised_vgg.py, cifar2.py",
    query=None, train=None, database=None,
    nominal={"query": 10000, "train": 50000, "database": 50000}), aliases=("official",))


class CIFAR10(HashDataModule):
    """CIFAR-10 (10 single labels, 60,000 32x32 images).

    Protocols: ``bihalf_i``, ``bihalf_ii``, ``dch`` (alias ``cifar10``), ``cifar10_1``, ``cifar10_2``,
    ``cibhash`` (has 5,000 validation queries), ``greedyhash`` (alias ``official``).
    Default: ``bihalf_i`` (the "CIFAR-10 (I)" of the unsupervised-hashing tables, mAP@1000).

    Args:
        download: download and extract the official archive into ``root`` when the batches are
            missing (torchvision's downloader; done in ``prepare_data``).
        verify_checksums: compare each batch with the official md5 and warn on mismatch.
        **kwargs: see :class:`~datamodules.base.HashDataModule` (root, protocol, batch_size, ...).
    """

    dataset_name: ClassVar[str] = "cifar10"
    display_name: ClassVar[str] = "CIFAR-10"
    default_protocol: ClassVar[str] = "bihalf_i"
    default_train_transform: ClassVar[str] = "resize"
    default_eval_transform: ClassVar[str] = "resize"

    def __init__(self, download: bool = False, verify_checksums: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.download = bool(download)
        self.verify_checksums = bool(verify_checksums)

    def prepare_data(self) -> None:
        d = find_cifar_dir(self.root)
        complete = d is not None and all(os.path.isfile(os.path.join(d, f)) for f in TRAIN_FILES + TEST_FILES)
        if self.download and not complete:
            from torchvision.datasets import CIFAR10 as TV
            from torchvision.datasets.utils import download_and_extract_archive

            try:
                download_and_extract_archive(TV.url, self.root, filename=TV.filename, md5=TV.tgz_md5)
            except Exception as e:  # no internet, proxy, disk full: say what to do instead
                raise DatasetNotFoundError(
                    f"CIFAR-10 download failed ({type(e).__name__}: {e}).\nDownload {TV.url} on a machine with "
                    f"internet and extract it into {abspath(self.root)} (giving {abspath(self.root)}/"
                    "cifar-10-batches-py), or point data.root at an existing copy.") from None

    def _load_pool(self) -> Pool:
        return load_cifar10(self.root, self.verify_checksums)
