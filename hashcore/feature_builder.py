"""``FeatureCacheBuilder``: encodes a split with a frozen encoder into a feature-cache entry, or loads a complete
one; crash-safe and resumable, every DDP rank writing its own shard (see :mod:`hashcore.feature_store`)."""
from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import os
import shutil
import time
import warnings
from typing import Any, Callable, Dict, Iterator, Optional, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .cache_storage import check_space, entry_lock, guarded, pwrite_all
from .cached_features import CachedFeatureDataset
from .feature_entries import (DTYPES, FORMAT_VERSION, entry_bytes, entry_problem, file_crc32, fsync_dir, read_json,
                              valid_entry, write_json)
from .feature_keys import CONTENT_FIELDS, cache_key, dataset_fingerprint, encoder_fields
from .random_transforms import (BANK_OPTION, RandomTransformError, random_transform_message, transform_is_random,
                                unwrap_multiview)

AUTOCAST = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def view_seed(bank_seed: int, view: int, item: int) -> int:
    """The torch seed of bank view ``view`` of item ``item`` (independent of workers, shards, resumption)."""
    digest = hashlib.blake2b(f"{bank_seed}:{view}:{item}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


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


def _shard(rows: int, rank: int, world: int) -> tuple:
    return rows * rank // world, rows * (rank + 1) // world


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
        meta = valid_entry(final, key)
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
            problem = entry_problem(final, key, verify=True)
            if problem is None:
                return {"status": "complete", "final": final}
            # never trusted, rebuilt: one warning saying why
            warnings.warn(f"feature cache: rebuilding the {fields.get('split') or 'split'} entry {final}: {problem}",
                          stacklevel=3)
            shutil.rmtree(final, ignore_errors=True)
        partial = final + ".partial"
        n = len(source)
        plan = read_json(os.path.join(partial, "plan.json"))
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
        needed = entry_bytes(shape, self.dtype, label_array.nbytes)
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
        guarded(lambda: write_json(os.path.join(partial, "plan.json"), plan), os.path.join(partial, "plan.json"),
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
        prog = read_json(counter) if plan["status"] == "resumed" else None
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
            write_json(counter, {"lo": lo, "hi": hi, "done": written, "updated": _now()})

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
            prog = read_json(os.path.join(partial, f"progress-rank{r}.json")) or {}
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
        guarded(lambda: write_json(meta_path, meta), meta_path, plan.get("bytes"))  # the meta is written LAST
        fsync_dir(partial)
        try:
            guarded(lambda: os.rename(partial, final), final, plan.get("bytes"))  # atomic: no entry or a whole one
        except OSError:
            if valid_entry(final, plan["key"]) is None:
                raise
            shutil.rmtree(partial, ignore_errors=True)  # another job completed the same entry first
        fsync_dir(os.path.dirname(final) or ".")


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
