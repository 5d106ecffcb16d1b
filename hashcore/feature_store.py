"""On-disk store of a frozen encoder's outputs, one entry per dataset split (no Lightning import).

Why: CIBHash, Bi-half and unsupervised GreedyHash freeze VGG16 and train a small head, yet the official code runs
the whole VGG16 over every image every epoch. The expensive, deterministic part of the backbone (the model's
``cacheable_encoder()``: convs → fc6 → ReLU for VGG16, or the whole backbone with ``freeze_mode=eval``) is computed
once per split and stored as a memory-mapped ``.npy``; every epoch (and every later run) reads it. What is random in
training (VGG's live dropout → fc7 → ReLU → dropout, as the official code) still runs each step.

Layout of one entry (``<cache_dir>/<split>-<encoder>-<identity[:16]>/``)::

    features.npy   (N, D) or, for an augmentation bank, (M, N, D); float16 (default) or float32
    labels.npy     (N, C) float32 multi-hot labels of the split
    meta.json      written LAST: {"complete": true, key, fields, shape, dtype, features_crc32, timings, ...}

An entry is found by its *identity* (split, encoder name and weights, transform, storage, bank) and valid for one
*key* = identity + a fingerprint of the split's inputs (the dataset's ``fingerprint()``: image bytes for in-memory
pools; path, size and mtime of every file for image files; labels). Replaced images or labels change the key: the
entry is rebuilt with one warning saying so. The CRC-32 of ``features.npy`` is stored when it is written and checked
when the entry is loaded: a features file changed after it was written is rebuilt, with one warning.

Crash safety: a build writes into ``<entry>.partial/`` (``plan.json``, the pre-allocated ``features.npy``, one
``progress-rank<r>.json`` counter per rank, updated only after the rows it counts were fsync'ed), then writes
``meta.json`` and renames the directory atomically. A directory without a valid ``meta.json`` is never read as
complete: an interrupted build is resumed from the counters (same plan), or rebuilt when the plan changed.

Distributed: every rank encodes a contiguous shard of the rows into the shared file (rank 0 plans and
pre-allocates before a barrier; rank 0 finalises between two barriers). ``barrier`` / ``broadcast`` are plain
callables, so the module runs without Lightning (``cache_dir`` must be visible to every rank).

Random train transforms (CIBHash's augmentations) cannot be cached exactly: caching one draw would freeze one
augmentation per image. They are refused unless ``bank_views=M`` is given explicitly: M augmented views per image
are precomputed (view m of image i is drawn with a seed derived from ``(bank_seed, m, i)``, so the bank is
reproducible whatever the workers, sharding or resumption), and the cached dataset returns ``views`` *distinct*
bank entries per item, drawn afresh from torch's RNG at every fetch — an approximation of fresh augmentation
(M·(M−1) ordered pairs per image instead of an unbounded stream); use it knowingly.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import json
import os
import shutil
import time
import warnings
import zlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .cache_storage import check_space, entry_lock, guarded, pwrite_all

FORMAT_VERSION = 2
DTYPES = {"float16": np.float16, "float32": np.float32}
AUTOCAST = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
BANK_OPTION = "bank_views"

# torchvision transform classes whose output is random (besides every ``Random*`` class)
_RANDOM_TRANSFORM_CLASSES = frozenset({
    "ColorJitter", "GaussianBlur", "AutoAugment", "RandAugment", "TrivialAugmentWide", "AugMix",
    "ElasticTransform", "GaussianNoise", "ScaleJitter"})


class RandomTransformError(ValueError):
    """A random transform was about to be cached without the explicit augmentation bank."""


# ------------------------------------------------------------------------------------------- keys
def module_fingerprint(module: nn.Module) -> str:
    """sha256 over the architecture (``repr``) and every state_dict entry's name, dtype, shape and bytes."""
    h = hashlib.sha256(repr(module).encode())
    for name, tensor in module.state_dict().items():
        t = tensor.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        t = t.to("cpu").contiguous()
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the raw 16-bit words
            t = t.view(torch.int16)
        if t.numel():
            h.update(memoryview(t.numpy()).cast("B"))
    return h.hexdigest()


def array_fingerprint(*arrays: Any) -> str:
    """sha256 of arrays' dtypes, shapes and bytes (split indices, labels)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a))
        h.update(f"{a.dtype}|{a.shape}".encode())
        h.update(memoryview(a).cast("B") if a.size else b"")
    return h.hexdigest()


def cache_key(fields: Dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the key fields."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


#: key fields that describe the split's inputs; every other field is part of the entry's identity
CONTENT_FIELDS = ("data_fingerprint", "num_items")


def dataset_fingerprint(dataset: Dataset) -> str:
    """What the split's items are made of: the dataset's own ``fingerprint()`` (image bytes or file path/size/mtime,
    labels), else the pool indices and labels."""
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return str(own())
    labels = getattr(dataset, "labels", None)
    return array_fingerprint(np.asarray(getattr(dataset, "pool_indices", np.arange(len(dataset)))),
                             labels if labels is not None else np.zeros(0))


def file_crc32(path: str, chunk: int = 16 << 20) -> int:
    """Streaming CRC-32 of a file (≈ 2.7 GB/s in memory; the disk read dominates)."""
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            crc = zlib.crc32(block, crc)
    return crc


def encoder_fields(encoder: nn.Module, name: str = "") -> Dict[str, Any]:
    """Key fields describing an encoder: its name and a fingerprint of its architecture and weights."""
    return {"encoder": name or type(encoder).__name__, "encoder_fingerprint": module_fingerprint(encoder)}


# ------------------------------------------------------------------------------------------- transforms
def unwrap_multiview(transform) -> tuple:
    """``(base transform, views)``: ``MultiView(t, v)`` → ``(t, v)``; anything else → ``(transform, 1)``."""
    if transform is not None and type(transform).__name__ == "MultiView" and hasattr(transform, "transform"):
        return transform.transform, int(getattr(transform, "views", 1))
    return transform, 1


def transform_is_random(transform) -> bool:
    """True when a (torchvision-style) transform contains a random step (``Random*``, ColorJitter, ...)."""
    if transform is None:
        return False
    base, _ = unwrap_multiview(transform)
    if base is not transform:
        return transform_is_random(base)
    name = type(transform).__name__
    if name.startswith("Random") or name in _RANDOM_TRANSFORM_CLASSES:
        return True
    children = getattr(transform, "transforms", None)
    if isinstance(children, (list, tuple)):
        return any(transform_is_random(t) for t in children)
    return False


def random_transform_message(split: str, transform_name: str) -> str:
    return (
        f"feature cache: the {split} transform {transform_name} is random (a new augmentation of every "
        f"image at every epoch). Caching its output would freeze ONE augmentation per image and silently "
        f"change the method, so it is refused. Options: (1) set {BANK_OPTION}=M (e.g. 8) to precompute M "
        f"augmented views per image and draw distinct ones each epoch — an explicit, documented "
        f"approximation of fresh augmentation (M views per image instead of a new one every epoch); "
        f"(2) train without the feature cache; (3) use a deterministic train transform (e.g. 'resize').")


def view_seed(bank_seed: int, view: int, item: int) -> int:
    """The torch seed of bank view ``view`` of item ``item`` (independent of workers, shards, resumption)."""
    digest = hashlib.blake2b(f"{bank_seed}:{view}:{item}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


# ------------------------------------------------------------------------------------------- cached data
class CachedFeatureDataset(Dataset):
    """The cached stand-in of a split: items ``(feature, label, index)`` like the original dataset.

    ``feature`` is a float32 vector (D,) — the cached encoder output — or, when the original train set
    yields ``views > 1`` images per item, a list of ``views`` vectors: distinct bank views drawn from
    torch's RNG at each fetch (augmentation bank), or copies of the one cached vector (deterministic
    transform). ``__getitems__`` (used by any ``DataLoader`` with a ``batch_size``) reads a whole batch with one
    fancy-index of the memory map, so a loader serves it fastest in the main process (``loads_in_process``).
    """

    transform = None
    #: a batch is one memory-map read: cheaper in the main process than shipped from DataLoader workers
    loads_in_process = True

    def __init__(self, path: str, labels: torch.Tensor, split: str = "", pool_indices=None, views: int = 1,
                 meta: Optional[dict] = None, source: Optional[Dataset] = None):
        self.path = str(path)
        self.features_file = os.path.join(self.path, "features.npy")
        self.labels = torch.as_tensor(labels, dtype=torch.float32)
        self.split = split
        n = len(self.labels)
        self.pool_indices = (np.asarray(pool_indices, dtype=np.int64) if pool_indices is not None
                             else np.arange(n, dtype=np.int64))
        self.meta = dict(meta or {})
        self.bank_views = int(self.meta.get("bank_views", 0))
        self.views = int(views)
        if self.bank_views and self.views > self.bank_views:
            raise ValueError(f"{self.views} views per item need at least as many bank views, got {self.bank_views}")
        self.source = source  # the original dataset (images), kept for inspection
        self.cache_status: str = self.meta.get("status", "")  # "built" / "resumed" / "loaded"
        self._array: Optional[np.ndarray] = None

    # memory map opened lazily in each process (DataLoader workers get no pickled copy of the data)
    @property
    def features(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.features_file, mmap_mode="r", allow_pickle=False)  # data only, never code
        return self._array

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[-1])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def _to_tensor(rows: np.ndarray) -> torch.Tensor:
        # `rows` is a fresh array (fancy indexing copies out of the memory map): no extra copy for float32
        t = torch.from_numpy(np.ascontiguousarray(rows))
        return t.float() if t.dtype != torch.float32 else t

    def _rows(self, idx: np.ndarray) -> List[torch.Tensor]:
        """Feature rows of ``idx`` for each of the ``views`` outputs (one memmap fancy-index per view)."""
        a = self.features
        if not self.bank_views:
            x = self._to_tensor(a[idx])
            return [x] + [x.clone() for _ in range(self.views - 1)]
        # distinct bank views per item: the first `views` columns of a random permutation of 0..M-1
        choice = torch.rand(len(idx), self.bank_views).argsort(dim=1)[:, :self.views].numpy()
        return [self._to_tensor(a[choice[:, j], idx]) for j in range(self.views)]

    def _check(self, i: int) -> int:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for cached {self.split or 'split'} of size {n}")
        return i

    def __getitem__(self, i):
        i = self._check(int(i))
        rows = self._rows(np.array([i]))
        feats = [r[0] for r in rows]
        return (feats[0] if self.views == 1 else feats), self.labels[i], i

    def get_batch(self, indices) -> tuple:
        """An already collated batch ``(features B×D | [views × B×D], labels B×C, index B)``."""
        idx = np.asarray(indices.tolist() if torch.is_tensor(indices) else indices, dtype=np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"indices out of range for cached {self.split or 'split'} of size {len(self)}")
        idx = np.where(idx < 0, idx + len(self), idx)
        rows = self._rows(idx)
        index = torch.from_numpy(idx)
        return (rows[0] if self.views == 1 else rows), self.labels[index], index

    def __getitems__(self, indices: Sequence[int]) -> list:
        """Batch fetch for ``DataLoader``'s auto-collation: one fancy-index read, then per-item views of it
        (so any ``collate_fn`` still receives ordinary ``(feature, label, index)`` items)."""
        feats, labels, index = self.get_batch(indices)
        if self.views == 1:
            return list(zip(feats.unbind(0), labels.unbind(0), index.tolist()))
        per_view = [v.unbind(0) for v in feats]
        return [([pv[k] for pv in per_view], labels[k], int(index[k])) for k in range(len(index))]

    def __repr__(self) -> str:
        bank = f", bank_views={self.bank_views}" if self.bank_views else ""
        return (f"CachedFeatureDataset(split={self.split!r}, n={len(self)}, dim={self.meta.get('shape', ['?'])[-1]}, "
                f"dtype={self.meta.get('dtype')}{bank}, views={self.views}, path={self.path!r})")


# ------------------------------------------------------------------------------------------- building
class _RowSource(Dataset):
    """Images of the rows to encode: row r is item ``r % N`` seen through bank view ``r // N``."""

    def __init__(self, dataset: Dataset, rows: np.ndarray, n: int, bank: bool, bank_seed: int):
        self.dataset, self.rows, self.n, self.bank, self.bank_seed = dataset, rows, n, bank, bank_seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int):
        row = int(self.rows[k])
        view, item = divmod(row, self.n)
        if self.bank:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(view_seed(self.bank_seed, view, item))
                image = self.dataset[item][0]
        else:
            image = self.dataset[item][0]
        if isinstance(image, (list, tuple)):  # a multi-view transform of a deterministic base: one view
            image = image[0]
        return image, row


def _single_view_source(dataset: Dataset, base_transform) -> Dataset:
    """A shallow copy of ``dataset`` whose transform is the single-view ``base_transform``."""
    if getattr(dataset, "transform", None) is base_transform:
        return dataset
    src = copy.copy(dataset)
    src.transform = base_transform
    return src


def _write_json(path: str, obj: dict) -> None:
    """Atomic JSON write (tmp file, fsync, rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _entry_bytes(shape: list, dtype: str, label_bytes: int) -> int:
    """Disk space of an entry: the features (with a generous .npy header), the labels and the small JSON files."""
    return int(np.prod(shape)) * np.dtype(DTYPES[dtype]).itemsize + label_bytes + 4096 + 4 * 4096


def _shard(rows: int, rank: int, world: int) -> tuple:
    return rows * rank // world, rows * (rank + 1) // world


def _entry_problem(final: str, key: str, verify: bool = False) -> Optional[str]:
    """Why the entry at ``final`` cannot be used for ``key`` (None: it can). ``verify`` also checks the CRC-32 of
    the features file against the one stored when it was written."""
    meta = _read_json(os.path.join(final, "meta.json"))
    if not meta or meta.get("complete") is not True or meta.get("format") != FORMAT_VERSION:
        return "it is incomplete or of another format"
    if meta.get("key") != key:
        return ("the split's inputs (images or labels) changed since it was built "
                f"({meta.get('num_items')} items then)")
    if _valid_entry(final, key) is None:
        return "its files do not match its meta.json (shape, dtype or item count)"
    if verify and meta.get("features_crc32") != file_crc32(os.path.join(final, "features.npy")):
        return "features.npy was modified after it was written (checksum mismatch)"
    return None


def _valid_entry(final: str, key: str) -> Optional[dict]:
    """meta of a complete cache entry, or None (missing, incomplete, other key, wrong file shape)."""
    meta = _read_json(os.path.join(final, "meta.json"))
    if not meta or meta.get("complete") is not True or meta.get("key") != key or meta.get("format") != FORMAT_VERSION:
        return None
    try:
        arr = np.load(os.path.join(final, "features.npy"), mmap_mode="r", allow_pickle=False)
        labels = np.load(os.path.join(final, "labels.npy"), mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if list(arr.shape) != list(meta.get("shape", [])) or str(arr.dtype) != meta.get("dtype") \
            or len(labels) != meta.get("num_items"):
        return None
    return meta


class FeatureCacheBuilder:
    """Builds or loads the cache of ``encoder(image)`` for dataset splits.

    Args:
        cache_dir: root folder of the cache entries (shared by every rank).
        dtype: storage dtype, ``float16`` (half the disk and memory traffic; ~1e-3 relative rounding)
            or ``float32`` (exact).
        batch_size, num_workers: of the encoding loader.
        device: where the encoder runs (``cpu``, ``cuda``, ``cuda:1`` or a ``torch.device``).
        autocast: ``none``/``bf16``/``fp16`` mixed precision of the encoder on CUDA; ``auto`` = fp16 when
            the storage is float16, none otherwise. Ignored on CPU (always float32 there).
        channels_last: run the encoder in channels-last memory format; None = on CUDA only.
        progress: show a progress bar (rank 0).
        checkpoint_seconds: how often a rank fsyncs its rows and advances its progress counter.
        rank, world: this process' rank and the number of processes.
        barrier: callable with no argument that blocks until every rank reached it.
        broadcast: ``broadcast(obj) -> obj`` returning rank 0's object on every rank.
    """

    def __init__(self, cache_dir: str = ".cache/features", dtype: str = "float16", batch_size: int = 128,
                 num_workers: int = 0, device: Union[str, torch.device] = "cpu", autocast: str = "auto",
                 channels_last: Optional[bool] = None, progress: bool = True, checkpoint_seconds: float = 10.0,
                 rank: int = 0, world: int = 1, barrier: Optional[Callable[[], Any]] = None,
                 broadcast: Optional[Callable[[Any], Any]] = None):
        if dtype not in DTYPES:
            raise ValueError(f"feature cache dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if autocast != "auto" and autocast not in AUTOCAST:
            raise ValueError(f"feature cache autocast must be 'auto' or one of {sorted(AUTOCAST)}, got {autocast!r}")
        if int(batch_size) < 1 or int(num_workers) < 0:
            raise ValueError("feature cache batch_size must be >= 1 and num_workers >= 0")
        if not 0 <= int(rank) < int(world):
            raise ValueError(f"rank {rank} is not in 0..{world - 1}")
        self.cache_dir = os.path.expanduser(str(cache_dir))
        self.dtype, self.batch_size, self.num_workers = dtype, int(batch_size), int(num_workers)
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        if autocast == "auto":
            autocast = "fp16" if dtype == "float16" else "none"
        self.autocast = autocast if cuda else "none"
        self.channels_last = cuda if channels_last is None else bool(channels_last)
        self.progress, self.checkpoint_seconds = bool(progress), float(checkpoint_seconds)
        self.rank, self.world = int(rank), int(world)
        self._barrier = barrier or (lambda: None)
        self._broadcast = broadcast or (lambda obj: obj)
        self.encoder_calls = 0  # forward calls made by this builder (tests, benchmarks)

    # -------------------------------------------------------------------------------- public
    def fields(self, dataset: Dataset, key_fields: Dict[str, Any], split: str, bank_views: int = 0,
               bank_seed: int = 0) -> Dict[str, Any]:
        """Every field the cache key is made of: the caller's fields, the split's identity (name, transform,
        storage, bank) and its inputs (``CONTENT_FIELDS``: :func:`dataset_fingerprint`, item count)."""
        base, _ = unwrap_multiview(getattr(dataset, "transform", None))
        out = dict(key_fields)
        out.update({
            "format": FORMAT_VERSION, "split": split, "num_items": len(dataset),
            "data_fingerprint": dataset_fingerprint(dataset),
            "dataset_class": type(dataset).__name__,
            "transform": repr(base), "dtype": self.dtype, "compute": self.autocast,
            "bank_views": int(bank_views), "bank_seed": int(bank_seed) if bank_views else None,
        })
        return out

    def entry_path(self, fields: Dict[str, Any]) -> str:
        """The entry's folder, named by its identity (everything but the inputs), so changed inputs rebuild it."""
        identity = cache_key({k: v for k, v in fields.items() if k not in CONTENT_FIELDS})
        tag = "".join(c if c.isalnum() or c in "._" else "_" for c in str(fields.get("encoder", "enc")))
        return os.path.join(self.cache_dir, f"{fields['split']}-{tag}-{identity[:16]}")

    def get(self, dataset: Dataset, encoder: nn.Module, key_fields: Dict[str, Any], split: str = "",
            bank_views: int = 0, bank_seed: int = 0, views: Optional[int] = None,
            random_transform: Optional[bool] = None, transform_name: Optional[str] = None) -> CachedFeatureDataset:
        """The cached stand-in of ``dataset`` (loaded, resumed or built).

        ``encoder`` is called in whatever mode the caller left it (put it in eval mode; gradients are off).
        ``views`` = items per ``__getitem__`` of the cached dataset (default: the dataset transform's
        MultiView count). ``random_transform`` overrides the transform inspection (e.g. the datamodule's
        own knowledge by name). A random transform needs ``bank_views >= views`` (else
        :class:`RandomTransformError`); for a deterministic one ``bank_views`` is ignored.
        """
        split = split or str(getattr(dataset, "split", "") or "data")
        transform = getattr(dataset, "transform", None)
        base, tf_views = unwrap_multiview(transform)
        views = int(views or tf_views)
        random = transform_is_random(transform) if random_transform is None else bool(random_transform)
        if random and not bank_views:
            raise RandomTransformError(random_transform_message(split, repr(transform_name or base)))
        if not random and bank_views:
            warnings.warn(f"feature cache: {BANK_OPTION}={bank_views} ignored for the {split} split: its "
                          f"transform is deterministic, so one cached view is exact", stacklevel=2)
            bank_views = 0
        if bank_views and bank_views < views:
            raise ValueError(f"feature cache: {BANK_OPTION}={bank_views} is fewer than the {views} distinct views "
                             f"per item the {split} split must yield; set {BANK_OPTION} >= {views}")
        labels = getattr(dataset, "labels", None)
        if labels is None:
            raise ValueError(f"feature cache: the {split} dataset {type(dataset).__name__} has no .labels "
                             "(float32 multi-hot per item) to store with the features")
        fields = self.fields(dataset, key_fields, split, bank_views, bank_seed)
        key = cache_key(fields)
        final = self.entry_path(fields)
        source = _single_view_source(dataset, base) if hasattr(dataset, "transform") else dataset

        plan = None
        # rank 0 holds the entry's lock from the plan to the rename: another job building the same entry waits,
        # then finds it complete and loads it
        with entry_lock(final) if self.rank == 0 else contextlib.nullcontext():
            if self.rank == 0:
                plan = self._plan(final, key, fields, source, encoder, labels, bank_views, bank_seed)
            plan = self._broadcast(plan)
            if plan["status"] != "complete":
                t0 = time.perf_counter()
                self._encode_shard(plan, source, encoder, split)
                self._barrier()
                if self.rank == 0:
                    self._finalise(plan, time.perf_counter() - t0)
                self._barrier()
        meta = _valid_entry(final, key)
        if meta is None:
            raise RuntimeError(f"feature cache entry {final} is not complete after building it; is "
                               f"cache_dir {self.cache_dir!r} visible to every rank (a shared filesystem)?")
        meta["status"] = "loaded" if plan["status"] == "complete" else plan["status"]
        labels = np.load(os.path.join(final, "labels.npy"), allow_pickle=False)  # data only: a planted pickle never runs
        return CachedFeatureDataset(final, torch.as_tensor(labels), split,
                                    getattr(dataset, "pool_indices", None), views=views, meta=meta, source=dataset)

    # -------------------------------------------------------------------------------- rank 0: plan
    def _plan(self, final, key, fields, source, encoder, labels, bank_views, bank_seed) -> dict:
        if os.path.exists(final):
            problem = _entry_problem(final, key, verify=True)
            if problem is None:
                return {"status": "complete", "final": final}
            # never trusted, rebuilt: one warning saying why
            warnings.warn(f"feature cache: rebuilding the {fields.get('split') or 'split'} entry {final}: {problem}",
                          stacklevel=3)
            shutil.rmtree(final, ignore_errors=True)
        partial = final + ".partial"
        n = len(source)
        plan = _read_json(os.path.join(partial, "plan.json"))
        if plan and plan.get("key") == key and plan.get("world") == self.world and plan.get("format") == FORMAT_VERSION \
                and os.path.isfile(os.path.join(partial, "features.npy")):
            plan["status"] = "resumed"
            return plan
        if os.path.exists(partial):
            why = "was planned for another world size/shape" if plan else "has no readable plan"
            warnings.warn(f"feature cache: partial build {partial} {why}; rebuilding it", stacklevel=3)
            shutil.rmtree(partial, ignore_errors=True)
        dim = self._probe_dim(source, encoder, n, bank_views, bank_seed)
        shape = [bank_views, n, dim] if bank_views else [n, dim]
        label_array = np.asarray(torch.as_tensor(labels, dtype=torch.float32))
        needed = _entry_bytes(shape, self.dtype, label_array.nbytes)
        guarded(lambda: os.makedirs(partial, exist_ok=True), partial, needed)
        check_space(partial, needed)  # a disk too small is said before any image is encoded
        features = os.path.join(partial, "features.npy")

        def allocate() -> int:
            arr = np.lib.format.open_memmap(features, mode="w+", dtype=DTYPES[self.dtype], shape=tuple(shape))
            offset = int(arr.offset)
            del arr  # sparse pre-allocation; rows are written with pwrite by their rank
            return offset

        offset = guarded(allocate, features, needed)
        guarded(lambda: np.save(os.path.join(partial, "labels.npy"), label_array), os.path.join(partial, "labels.npy"),
                needed)
        plan = {"format": FORMAT_VERSION, "key": key, "fields": fields, "final": final, "partial": partial,
                "shape": shape, "dtype": self.dtype, "rows": int(np.prod(shape[:-1])), "num_items": n,
                "dim": dim, "offset": offset, "world": self.world, "bank_views": int(bank_views),
                "bank_seed": int(bank_seed), "created": _now(), "bytes": needed}
        guarded(lambda: _write_json(os.path.join(partial, "plan.json"), plan), os.path.join(partial, "plan.json"),
                needed)
        plan["status"] = "built"
        return plan

    def _probe_dim(self, source, encoder, n, bank_views, bank_seed) -> int:
        if n == 0:
            raise ValueError("feature cache: cannot cache an empty split")
        image, _ = _RowSource(source, np.array([0]), n, bool(bank_views), bank_seed)[0]
        with torch.random.fork_rng(devices=[]), self._placed(encoder):
            out = self._forward(encoder, image[None])
        if out.dim() != 2:
            raise ValueError(f"feature cache: the encoder must return (batch, dim) features, got shape {tuple(out.shape)}")
        return int(out.shape[1])

    # -------------------------------------------------------------------------------- every rank
    def _forward(self, encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
        self.encoder_calls += 1
        x = images.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = AUTOCAST[self.autocast]
        ctx = torch.autocast(self.device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
        with torch.no_grad(), ctx:
            return encoder(x).float()

    @contextlib.contextmanager
    def _placed(self, encoder: nn.Module) -> Iterator[None]:
        """Encoder on the build device (channels-last if asked), restored afterwards."""
        try:
            p = next(encoder.parameters())
            home = p.device
        except StopIteration:
            home = None
        if home is not None and home != self.device:
            encoder.to(self.device)
        if self.channels_last:
            encoder.to(memory_format=torch.channels_last)
        try:
            yield
        finally:
            if self.channels_last:
                encoder.to(memory_format=torch.contiguous_format)
            if home is not None and home != self.device:
                encoder.to(home)

    def _encode_shard(self, plan: dict, source: Dataset, encoder: nn.Module, split: str) -> None:
        partial, n = plan["partial"], plan["num_items"]
        lo, hi = _shard(plan["rows"], self.rank, self.world)
        counter = os.path.join(partial, f"progress-rank{self.rank}.json")
        prog = _read_json(counter) if plan["status"] == "resumed" else None
        done = int(prog["done"]) if prog and prog.get("lo") == lo and prog.get("hi") == hi else 0
        if done >= hi - lo:
            return
        rows = np.arange(lo + done, hi, dtype=np.int64)
        loader = DataLoader(_RowSource(source, rows, n, bool(plan["bank_views"]), plan["bank_seed"]),
                            batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda", generator=torch.Generator())
        np_dtype = DTYPES[plan["dtype"]]
        row_bytes = plan["dim"] * np.dtype(np_dtype).itemsize
        bar = _progress_bar(hi - lo, done, f"feature cache {split}" + (f" [rank 0 of {self.world}]" if self.world > 1 else ""),
                            enabled=self.progress and self.rank == 0)
        features, needed = os.path.join(partial, "features.npy"), plan.get("bytes")
        fd = guarded(lambda: os.open(features, os.O_RDWR), features, needed)
        written, last = done, time.monotonic()

        def checkpoint():
            os.fsync(fd)
            _write_json(counter, {"lo": lo, "hi": hi, "done": written, "updated": _now()})

        try:
            with torch.random.fork_rng(devices=[]), self._placed(encoder):
                for images, row_ids in loader:
                    feats = self._forward(encoder, images)
                    if not torch.isfinite(feats).all():
                        raise FloatingPointError(
                            f"feature cache: the encoder produced non-finite features for the {split} split"
                            + (f" under {self.autocast} autocast; set autocast='none'" if self.autocast != "none" else ""))
                    with np.errstate(over="ignore"):  # overflow is detected just below
                        block = feats.cpu().numpy().astype(np_dtype)
                    if not np.isfinite(block).all():
                        raise FloatingPointError(
                            f"feature cache: features of the {split} split overflow {plan['dtype']} (max |x| = "
                            f"{float(feats.abs().max()):.3g}); use dtype float32")
                    first = int(row_ids[0])
                    assert first == lo + written and int(row_ids[-1]) == first + len(block) - 1
                    data = memoryview(np.ascontiguousarray(block)).cast("B")
                    # every byte checked: a full disk is an error, never rows silently missing
                    guarded(lambda: pwrite_all(fd, data, plan["offset"] + first * row_bytes), features, needed)
                    written += len(block)
                    if bar is not None:
                        bar.update(len(block))
                    if time.monotonic() - last >= self.checkpoint_seconds:
                        guarded(checkpoint, counter, needed)
                        last = time.monotonic()
        finally:
            with contextlib.suppress(OSError):
                checkpoint()  # rows written so far stay valid for a resumption
            os.close(fd)
            if bar is not None:
                bar.close()

    # -------------------------------------------------------------------------------- rank 0: finalise
    def _finalise(self, plan: dict, seconds: float) -> None:
        partial, final = plan["partial"], plan["final"]
        for r in range(self.world):
            lo, hi = _shard(plan["rows"], r, self.world)
            prog = _read_json(os.path.join(partial, f"progress-rank{r}.json")) or {}
            if hi > lo and (prog.get("lo"), prog.get("hi"), prog.get("done")) != (lo, hi, hi - lo):
                raise RuntimeError(f"feature cache: rank {r} did not finish its rows {lo}..{hi} of {partial} "
                                   f"(progress {prog}); rerun to resume")
        meta = {k: plan[k] for k in ("format", "key", "fields", "shape", "dtype", "rows", "num_items", "dim",
                                      "world", "bank_views", "bank_seed")}
        meta.update({"complete": True, "created": _now(), "build_seconds": round(seconds, 3),
                     "features_crc32": file_crc32(os.path.join(partial, "features.npy")),
                     "built_with": {"device": str(self.device), "autocast": self.autocast,
                                    "channels_last": self.channels_last, "torch": torch.__version__}})
        meta_path = os.path.join(partial, "meta.json")
        guarded(lambda: _write_json(meta_path, meta), meta_path, plan.get("bytes"))  # the meta is written LAST
        _fsync_dir(partial)
        try:
            guarded(lambda: os.rename(partial, final), final, plan.get("bytes"))  # atomic: no entry or a whole one
        except OSError:
            if _valid_entry(final, plan["key"]) is None:
                raise
            shutil.rmtree(partial, ignore_errors=True)  # another job completed the same entry first
        _fsync_dir(os.path.dirname(final) or ".")


def _progress_bar(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="img", dynamic_ncols=True, leave=False)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def cache_features(dataset: Dataset, encoder: nn.Module, key_fields: Optional[Dict[str, Any]] = None,
                   split: str = "", bank_views: int = 0, bank_seed: int = 0, views: Optional[int] = None,
                   random_transform: Optional[bool] = None, **builder_kwargs) -> CachedFeatureDataset:
    """One-call form: ``FeatureCacheBuilder(**builder_kwargs).get(dataset, encoder, key_fields, ...)``.

    ``key_fields`` default to :func:`encoder_fields` of ``encoder`` (add the datamodule's fields so two
    datasets with equal labels but different images never share an entry)."""
    builder = FeatureCacheBuilder(**builder_kwargs)
    fields = key_fields if key_fields is not None else encoder_fields(encoder)
    return builder.get(dataset, encoder, fields, split, bank_views, bank_seed, views, random_transform)
