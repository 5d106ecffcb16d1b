"""FeatureCache: run a frozen backbone's deterministic part once per split, train the head on cached features.

Enable it from a LightningCLI config::

    trainer:
      callbacks:
        - class_path: callbacks.feature_cache.FeatureCache
          init_args:
            cache_dir: .cache/features   # shared by every rank under DDP
            dtype: float16               # or float32 (exact)
            # bank_views: 8              # only for random train transforms (CIBHash): explicit approximation

In ``setup`` (Lightning calls the datamodule's ``setup`` first) the callback computes or loads
the deterministic part of the backbone (``Backbone.cache_split``) for every split the stage needs and
replaces the datamodule's ``train_set`` /
``query_set`` / ``database_set`` / ``val_query_set`` with :class:`~datamodules.feature_cache.CachedFeatureDataset`
stand-ins that yield ``(feature, label, index)``. The model sees 2-D inputs and applies only what follows
the cache point (``freeze_mode=train``, VGG16: the official code's live dropout → fc7 → ReLU → dropout;
``freeze_mode=eval``: nothing, the whole backbone is cached), so training and evaluation compute what they
compute without the cache (``HashModule.features``).

A backbone that is trained (DCH, supervised GreedyHash) is left alone with one warning. A random train
transform (CIBHash) is refused with an error naming ``bank_views`` unless that option is set, or unless
``random_train_transform: images`` asks to train on images as usual (exact) while the deterministic
evaluation splits are still cached.
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Literal, Optional

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from datamodules.feature_cache import (CachedFeatureDataset, FeatureCacheBuilder, encoder_fields,
                                       transform_is_random)

SPLITS = ("train", "query", "database", "val_query")
_STAGE_SPLITS = {
    "fit": ("train", "val_query", "query", "database"),
    "validate": ("val_query", "query", "database"),
    "test": ("query", "database"),
    "predict": ("query", "database"),
}


class FeatureCache(L.Callback):
    """Cache a frozen backbone's deterministic part (``Backbone.cache_split[0]``) per split on disk and
    train/evaluate from it. A split already holding features of another encoder is recomputed.

    Args:
        cache_dir: root folder of the cache (one sub-folder per split, backbone and key).
        dtype: storage ``float16`` (default; half the disk/IO, ~1e-3 relative rounding) or ``float32``
            (bit-for-bit the encoder's float32 output).
        batch_size: batch size of the one-off encoding pass.
        num_workers: DataLoader workers of the encoding pass; None = the datamodule's ``num_workers``.
        device: where the encoding pass runs: ``auto`` (the trainer's CUDA device if it has one, else CPU),
            ``cpu`` or ``cuda``.
        autocast: mixed precision of the encoding pass on CUDA: ``auto`` (fp16 with float16 storage,
            none with float32), ``none``, ``bf16``, ``fp16``. CPU builds are always float32.
        channels_last: channels-last encoder input; None = on CUDA only.
        bank_views: for a random train transform only: precompute this many augmented views per train
            image and let every item draw ``views`` distinct ones per epoch (an approximation of fresh
            augmentation, never applied silently). 0 = see ``random_train_transform``. Unused (one info
            line) when the train transform is deterministic, so one config can serve every method.
        bank_seed: seed of the augmentation bank.
        random_train_transform: what to do with a random train transform when ``bank_views`` is 0:
            ``error`` (default: say so and name the options) or ``images`` (train on images with fresh
            augmentation, exactly as without the cache; cache only the evaluation splits).
        splits: which splits to cache (default all the stage uses: train, val_query, query, database).
        loader_workers: DataLoader workers of the datamodule's loaders once every split of the stage is
            cached; while any split is still read from images the datamodule's own ``num_workers`` is kept.
            None keeps it always. Reading a batch of cached features is a single memory-map read, cheaper
            in-process than shipping it from worker processes (benchmarks/README.md).
        progress: show the build progress bar (rank 0).
    """

    def __init__(self, cache_dir: str = ".cache/features", dtype: Literal["float16", "float32"] = "float16",
                 batch_size: int = 128, num_workers: Optional[int] = None,
                 device: Literal["auto", "cpu", "cuda"] = "auto",
                 autocast: Literal["auto", "none", "bf16", "fp16"] = "auto", channels_last: Optional[bool] = None,
                 bank_views: int = 0, bank_seed: int = 0, random_train_transform: Literal["error", "images"] = "error",
                 splits: Optional[list[str]] = None, loader_workers: Optional[int] = 0, progress: bool = True):
        super().__init__()
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"FeatureCache device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        if random_train_transform not in ("error", "images"):
            raise ValueError("FeatureCache random_train_transform must be 'error' or 'images', "
                             f"got {random_train_transform!r}")
        if int(bank_views) < 0:
            raise ValueError(f"FeatureCache bank_views must be >= 0, got {bank_views}")
        unknown = sorted(set(splits or ()) - set(SPLITS))
        if unknown:
            raise ValueError(f"FeatureCache splits {unknown} unknown; choose from {list(SPLITS)}")
        if loader_workers is not None and int(loader_workers) < 0:
            raise ValueError(f"FeatureCache loader_workers must be >= 0 or None, got {loader_workers}")
        # fail early on a bad dtype/autocast (the builder validates them)
        FeatureCacheBuilder(cache_dir, dtype=dtype, batch_size=batch_size, autocast=autocast)
        self.cache_dir, self.dtype, self.batch_size = cache_dir, dtype, int(batch_size)
        self.num_workers, self.device, self.autocast = num_workers, device, autocast
        self.channels_last, self.bank_views, self.bank_seed = channels_last, int(bank_views), int(bank_seed)
        self.random_train_transform = random_train_transform
        self.splits = tuple(splits) if splits else SPLITS
        self.loader_workers = None if loader_workers is None else int(loader_workers)
        self.progress = bool(progress)
        self.info: dict[str, dict] = {}  # per split: status, path, seconds (tests, benchmarks, logs)
        self.encoder_calls = 0
        self._warned = False

    # ---------------------------------------------------------------------------------------------
    def _build_device(self, trainer) -> torch.device:
        root = getattr(trainer.strategy, "root_device", torch.device("cpu"))
        if self.device == "cpu":
            return torch.device("cpu")
        if self.device == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("FeatureCache device='cuda' but CUDA is not available; use device: auto or cpu")
            return root if root.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
        return root if root.type == "cuda" else torch.device("cpu")

    def _skip(self, message: str) -> None:
        if not self._warned:
            warnings.warn(f"FeatureCache: {message}; training runs on images without the cache", stacklevel=2)
            self._warned = True

    @staticmethod
    def _random_train_transform(dm, dataset) -> bool:
        from datamodules.transforms import is_random  # lightweight; names are the datamodules' truth
        name = getattr(dm, "train_transform", None)
        by_name = isinstance(name, str) and is_random(name)
        return by_name or transform_is_random(getattr(dataset, "transform", None))

    @staticmethod
    def _datamodule_fields(dm) -> dict:
        sizes = getattr(dm, "sizes", None)
        return {
            "datamodule": f"{type(dm).__module__}.{type(dm).__qualname__}",
            "root": os.path.abspath(str(dm.root)) if getattr(dm, "root", None) else None,
            "protocol": getattr(dm, "protocol", None), "seed": getattr(dm, "seed", None),
            "sizes": dict(sizes) if isinstance(sizes, dict) else sizes,
            "image_size": getattr(dm, "image_size", None), "normalize": getattr(dm, "normalize", None),
        }

    # ---------------------------------------------------------------------------------------------
    def setup(self, trainer: "L.Trainer", pl_module: "L.LightningModule", stage: str) -> None:
        backbone = getattr(pl_module, "backbone", None)
        if backbone is None or not hasattr(backbone, "cache_split"):
            return self._skip(f"{type(pl_module).__name__} has no backbone.cache_split to cache")
        if not getattr(backbone, "frozen", False):
            return self._skip(f"the backbone of {type(pl_module).__name__} is trained (freeze=False), so its "
                              "features change every step and cannot be cached")
        dm = trainer.datamodule
        if dm is None:
            return self._skip("no datamodule (loaders were passed directly), nothing to replace")
        stage_splits = _STAGE_SPLITS.get(stage, SPLITS)
        encoder = backbone.cache_split[0]
        name = getattr(backbone, "name", "") + (":whole" if encoder is backbone else "")
        todo, fields = [], None
        for split in (s for s in stage_splits if s in self.splits):
            ds = getattr(dm, f"{split}_set", None)
            if isinstance(ds, CachedFeatureDataset):  # e.g. a datamodule whose setup() keeps its sets
                fields = fields or encoder_fields(encoder, name)
                if all(ds.meta.get("fields", {}).get(k) == v for k, v in fields.items()):
                    continue
                if ds.source is None:
                    raise ValueError(f"FeatureCache: the {split} split of {type(dm).__name__} holds features of "
                                     f"another encoder ({ds.meta.get('fields', {}).get('encoder')!r}, not {name!r}) "
                                     "and no images to recompute them from; call the datamodule's setup() again")
                rank_zero_info(f"FeatureCache: {split} was cached by another encoder; caching it for {name!r}")
                ds = ds.source
            if ds is not None:
                todo.append((split, ds))
        if todo:
            self._cache_splits(trainer, dm, backbone, encoder, name, todo)
        self._set_loader_workers(dm, stage_splits)

    def _cache_splits(self, trainer, dm, backbone, encoder, name: str, todo: list) -> None:
        _warn_if_prefix_is_random(encoder, getattr(backbone, "freeze_mode", "train"))
        builder = FeatureCacheBuilder(
            self.cache_dir, dtype=self.dtype, batch_size=self.batch_size,
            num_workers=getattr(dm, "num_workers", 0) if self.num_workers is None else self.num_workers,
            device=self._build_device(trainer), autocast=self.autocast, channels_last=self.channels_last,
            progress=self.progress, rank=trainer.global_rank, world=trainer.world_size,
            barrier=lambda: trainer.strategy.barrier("feature_cache"),
            broadcast=lambda obj: trainer.strategy.broadcast(obj, src=0))
        fields = {**encoder_fields(encoder, name), **self._datamodule_fields(dm)}
        modes = [(m, m.training) for m in encoder.modules()]  # restored exactly (frozen BN stays in eval)
        encoder.eval()
        try:
            for split, ds in todo:
                train = split == "train"
                random = self._random_train_transform(dm, ds) if train else None
                if random and not self.bank_views and self.random_train_transform == "images":
                    rank_zero_info(f"FeatureCache: train split left on images: its transform "
                                   f"{getattr(dm, 'train_transform', '')!r} is random and bank_views=0 "
                                   "(random_train_transform=images); evaluation splits are cached")
                    setattr(dm, f"{split}_set", ds)
                    continue
                if train and self.bank_views and not random:
                    rank_zero_info(f"FeatureCache: bank_views={self.bank_views} not used: the train transform "
                                   f"{getattr(dm, 'train_transform', '')!r} is deterministic, one cached view is exact")
                t0 = time.perf_counter()
                cached = builder.get(
                    ds, encoder, fields, split=split, bank_views=self.bank_views if random else 0,
                    bank_seed=self.bank_seed, views=(getattr(dm, "views", None) or 1) if train else 1,
                    random_transform=random,
                    transform_name=getattr(dm, "train_transform", None) if train else None)
                setattr(dm, f"{split}_set", cached)
                self.info[split] = {"status": cached.cache_status, "path": cached.path,
                                    "seconds": round(time.perf_counter() - t0, 3), "items": len(cached),
                                    "shape": cached.meta.get("shape")}
                rank_zero_info(f"FeatureCache: {split} {cached.cache_status} ({len(cached)} items, "
                               f"{cached.meta.get('shape')} {self.dtype}) in {self.info[split]['seconds']:.1f}s "
                               f"from {cached.path}")
        finally:
            for m, mode in modes:
                m.training = mode
            self.encoder_calls += builder.encoder_calls

    def _set_loader_workers(self, dm, stage_splits) -> None:
        """One ``num_workers`` serves every loader: ``loader_workers`` once every split of the stage is cached,
        the datamodule's own value (remembered on first change) while any split is still read from images."""
        if self.loader_workers is None or not hasattr(dm, "num_workers"):
            return
        if not hasattr(dm, "_image_num_workers"):
            dm._image_num_workers = dm.num_workers
        sets = [getattr(dm, f"{s}_set", None) for s in stage_splits]
        on_images = any(ds is not None and not isinstance(ds, CachedFeatureDataset) for ds in sets)
        dm.num_workers = dm._image_num_workers if on_images else self.loader_workers


def _warn_if_prefix_is_random(prefix: torch.nn.Module, freeze_mode: str) -> None:
    """The cache is computed in eval mode; a prefix with live dropout in training would differ."""
    if freeze_mode != "train":
        return
    live = [n for n, m in prefix.named_modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0]
    if live:
        warnings.warn(f"FeatureCache: the backbone prefix contains dropout ({', '.join(live[:3])}) that is live in "
                      "training; the cache stores its eval-mode output, so training differs from the uncached run",
                      stacklevel=3)

