"""Writers of miniature datasets in the real on-disk formats (nothing is downloaded in tests).

* CIFAR-10 python pickle batches (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``,
  ``batches.meta``: pickled dicts with bytes keys, ``b'data'`` uint8 N x 3072 as R, G, B planes);
* list files ``<relative path> <0/1 ...>`` plus small JPEGs (NUS-WIDE, MS-COCO, DeepHash mirflickr);
* MIRFlickr: ``mirflickr/im1.jpg ...`` and ``mirflickr25k_annotations_v080/<concept>.txt``;
* IDX files (MNIST / Fashion-MNIST layout), optionally gzipped; deeplearning.net's ``mnist.pkl.gz``;
* hostile inputs: a pickle that would create a file when loaded, a truncated JPEG.

Image identity is encoded in the pixels so tests can check that item i is the image they expect:
``color_of(k)`` is a flat colour for list / mirflickr images (JPEG keeps flat colours within a few
levels).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import yaml
from PIL import Image

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"

CIFAR_DIR = "cifar-10-batches-py"
FLICKR_CONCEPTS = ("animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor",
                   "lake", "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky",
                   "structures", "sunset", "transport", "tree", "water")


def data_config(name: str) -> dict:
    """The ``data.init_args`` of ``experiments/data/<name>.yaml`` (and check its class_path)."""
    cfg = yaml.safe_load((EXPERIMENTS / "data" / f"{name}.yaml").read_text())
    assert set(cfg) == {"data"}, f"{name}.yaml must hold only a data: block"
    assert cfg["data"]["class_path"] == "datamodules.ImageList"
    return dict(cfg["data"]["init_args"])


def set_up(cls, root: str, defaults: dict, **overrides):
    """``cls(root=root, **defaults)`` with ``overrides`` applied, after ``setup("fit")``."""
    dm = cls(root=root, **{**defaults, **overrides})
    dm.setup("fit")
    return dm


def class_counts(ds, num_classes: int = 10) -> np.ndarray:
    """Items per class of a single-label split (labels are one-hot rows)."""
    return np.bincount(ds.labels.argmax(1).numpy(), minlength=num_classes)


def color_of(k: int) -> Tuple[int, int, int]:
    """A flat colour that identifies image number k (k < 40 * 40)."""
    return (16 + 6 * (k % 40), 16 + 6 * ((k // 40) % 40), 128)


def decode_color(rgb: Sequence[float]) -> int:
    r, g = int(round((float(rgb[0]) - 16) / 6)), int(round((float(rgb[1]) - 16) / 6))
    return r + 40 * g


def write_jpeg(path: str, k: int, size: Tuple[int, int] = (24, 16)) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, color_of(k)).save(path, quality=95)


# ---------------------------------------------------------------------------------------------- CIFAR
def make_cifar_arrays(train_per_class: int = 15, test_per_class: int = 5, seed: int = 0):
    """Random uint8 images (N, 32, 32, 3) and labels, classes interleaved like the real batches."""
    rng = np.random.default_rng(seed)
    ytr = rng.permutation(np.repeat(np.arange(10), train_per_class))
    yte = rng.permutation(np.repeat(np.arange(10), test_per_class))
    xtr = rng.integers(0, 256, size=(len(ytr), 32, 32, 3), dtype=np.uint8)
    xte = rng.integers(0, 256, size=(len(yte), 32, 32, 3), dtype=np.uint8)
    return xtr, ytr, xte, yte


def _to_rows(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), 3072))


def write_cifar(root: str, train_per_class: int = 15, test_per_class: int = 5, seed: int = 0,
                str_keys: bool = False) -> Dict[str, np.ndarray]:
    """Write a CIFAR-10 miniature under ``root/cifar-10-batches-py``; returns the arrays written.

    The official train images are split evenly over data_batch_1..5 (so train_per_class * 10 must
    be divisible by 5). ``str_keys`` writes ``'data'``/``'labels'`` keys (a re-packed copy)."""
    xtr, ytr, xte, yte = make_cifar_arrays(train_per_class, test_per_class, seed)
    d = os.path.join(root, CIFAR_DIR)
    os.makedirs(d, exist_ok=True)
    key = (lambda s: s) if str_keys else (lambda s: s.encode())
    per = len(ytr) // 5
    for b in range(5):
        sl = slice(b * per, (b + 1) * per)
        _dump(os.path.join(d, f"data_batch_{b + 1}"), {
            key("batch_label"): key(f"training batch {b + 1} of 5"), key("labels"): ytr[sl].tolist(),
            key("data"): _to_rows(xtr[sl]), key("filenames"): [key(f"img{i}.png") for i in range(per)]})
    _dump(os.path.join(d, "test_batch"), {
        key("batch_label"): key("testing batch 1 of 1"), key("labels"): yte.tolist(),
        key("data"): _to_rows(xte), key("filenames"): [key(f"t{i}.png") for i in range(len(yte))]})
    _dump(os.path.join(d, "batches.meta"), {
        key("num_cases_per_batch"): per, key("num_vis"): 3072,
        key("label_names"): [key(n) for n in ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                              "frog", "horse", "ship", "truck")]})
    return {"images": np.concatenate([xtr, xte]), "labels": np.concatenate([ytr, yte]),
            "is_test": np.r_[np.zeros(len(ytr), bool), np.ones(len(yte), bool)]}


def _dump(path: str, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


# ---------------------------------------------------------------------------------------------- hostile files
class CreatesFile:
    """Pickles to "call open(marker, 'w')": loading it with plain ``pickle.load`` creates ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_truncated_jpeg(path: str, k: int = 0) -> None:
    """A JPEG cut in half (PIL opens the header, then fails to decode)."""
    write_jpeg(path, k, size=(64, 48))
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


# ---------------------------------------------------------------------------------------------- lists
def _bits(v: Iterable[int]) -> str:
    return " ".join(str(int(b)) for b in v)


def random_multihot(rng: np.random.Generator, n: int, c: int, min_labels: int = 1) -> np.ndarray:
    y = (rng.random((n, c)) < 0.15).astype(np.uint8)
    for i in range(n):
        while y[i].sum() < min_labels:
            y[i, rng.integers(c)] = 1
    return y


def write_list_dataset(root: str, num_classes: int, n_query: int = 6, n_train: int = 8,
                       n_database: int = 20, train_in_database: bool = True, seed: int = 0,
                       names: Optional[Dict[str, str]] = None, list_dir: Optional[str] = None,
                       prefix: str = "images/", path_prefix_in_list: str = "") -> Dict[str, dict]:
    """Write JPEGs under ``root/images`` and the three lists (DeepHash names by default).

    Returns ``{split: {"paths": [...relative...], "labels": (n, C), "ids": [...]}}``; image ids are
    unique across the dataset (the train images are database images when ``train_in_database``).
    """
    rng = np.random.default_rng(seed)
    names = names or {"train": "train.txt", "query": "test.txt", "database": "database.txt"}
    list_dir = list_dir or root
    os.makedirs(list_dir, exist_ok=True)
    n_total = n_query + n_database + (0 if train_in_database else n_train)
    labels = random_multihot(rng, n_total, num_classes)
    rel = [f"{prefix}{k:04d}_x.jpg" for k in range(n_total)]
    for k, r in enumerate(rel):
        write_jpeg(os.path.join(root, r), k, size=(24 + (k % 3) * 4, 16 + (k % 2) * 8))
    q_ids = list(range(n_query))
    db_ids = list(range(n_query, n_query + n_database))
    tr_ids = (list(rng.choice(db_ids, size=n_train, replace=False)) if train_in_database
              else list(range(n_query + n_database, n_total)))
    out = {}
    for split, ids in (("query", q_ids), ("database", db_ids), ("train", tr_ids)):
        with open(os.path.join(list_dir, names[split]), "w") as f:
            for k in ids:
                f.write(f"{path_prefix_in_list}{rel[k]} {_bits(labels[k])}\n")
        out[split] = {"paths": [rel[k] for k in ids], "labels": labels[ids], "ids": [int(k) for k in ids]}
    return out


# ---------------------------------------------------------------------------------------------- mirflickr
def write_mirflickr(root: str, n_images: int = 60, seed: int = 0, with_r1: bool = True) -> np.ndarray:
    """``root/mirflickr/im1..imN.jpg`` + ``root/mirflickr25k_annotations_v080/<concept>.txt``
    (1-based image numbers), plus ``*_r1.txt`` and ``README.txt`` that must be ignored.
    Returns the (N, 24) labels written (some images have no label, as in the real data)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n_images, len(FLICKR_CONCEPTS))) < 0.2).astype(np.uint8)
    labels[::7] = 0  # unlabelled images exist in MIRFlickr
    for i in range(n_images):
        write_jpeg(os.path.join(root, "mirflickr", f"im{i + 1}.jpg"), i, size=(20 + (i % 4) * 3, 18))
    ann = os.path.join(root, "mirflickr25k_annotations_v080")
    os.makedirs(ann, exist_ok=True)
    for j, c in enumerate(FLICKR_CONCEPTS):
        with open(os.path.join(ann, f"{c}.txt"), "w") as f:
            f.writelines(f"{k + 1}\n" for k in np.flatnonzero(labels[:, j]))
    if with_r1:
        with open(os.path.join(ann, "baby_r1.txt"), "w") as f:
            f.write("1\n2\n3\n")
        with open(os.path.join(ann, "README.txt"), "w") as f:
            f.write("MIRFLICKR-25000 annotations\n")
    return labels


def write_bihalf_flickr_lists(root: str, labels: np.ndarray) -> None:
    """Bi-half layout: ``img.txt``, ``targets.txt``, images in ``root/images``."""
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "img.txt"), "w") as f:
        f.writelines(f"im{i + 1}.jpg\n" for i in range(len(labels)))
    with open(os.path.join(root, "targets.txt"), "w") as f:
        f.writelines(_bits(row) + "\n" for row in labels)
    for i in range(len(labels)):
        write_jpeg(os.path.join(root, "images", f"im{i + 1}.jpg"), i)


# ---------------------------------------------------------------------------------------------- IDX
def write_idx(path: str, arr: np.ndarray) -> None:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(head + arr.tobytes())


def write_mnist_idx(folder: str, train_per_class: int = 12, test_per_class: int = 4, gz: bool = True,
                    seed: int = 0) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ytr = rng.permutation(np.repeat(np.arange(10), train_per_class)).astype(np.uint8)
    yte = rng.permutation(np.repeat(np.arange(10), test_per_class)).astype(np.uint8)
    xtr = rng.integers(0, 256, size=(len(ytr), 28, 28), dtype=np.uint8)
    xte = rng.integers(0, 256, size=(len(yte), 28, 28), dtype=np.uint8)
    ext = ".gz" if gz else ""
    write_idx(os.path.join(folder, "train-images-idx3-ubyte" + ext), xtr)
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte" + ext), ytr)
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte" + ext), xte)
    write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte" + ext), yte)
    return {"images": np.concatenate([xtr, xte]), "labels": np.concatenate([ytr, yte]).astype(np.int64)}


def write_mnist_pkl(path: str, train_per_class: int = 12, test_per_class: int = 4, seed: int = 0,
                    protocol: int = 2) -> Dict[str, np.ndarray]:
    """deeplearning.net's ``mnist.pkl.gz``: ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), x float32
    N x 784 = pixels / 256, y int64; the train images are split 3:1 into train / valid like the real file."""
    arrays = write_mnist_idx(os.path.join(os.path.dirname(path), "_idx_tmp"), train_per_class, test_per_class,
                             gz=False, seed=seed)
    n_train = 10 * train_per_class
    x = arrays["images"].reshape(-1, 784).astype(np.float32) / 256.0
    y = arrays["labels"]
    cut = n_train * 3 // 4
    parts = ((x[:cut], y[:cut]), (x[cut:n_train], y[cut:n_train]), (x[n_train:], y[n_train:]))
    with gzip.open(path, "wb") as f:
        pickle.dump(parts, f, protocol=protocol)
    for name in os.listdir(os.path.join(os.path.dirname(path), "_idx_tmp")):
        os.remove(os.path.join(os.path.dirname(path), "_idx_tmp", name))
    os.rmdir(os.path.join(os.path.dirname(path), "_idx_tmp"))
    return arrays


def list_paths(root: str) -> List[str]:
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.join(d, f) for f in files]
    return sorted(out)
