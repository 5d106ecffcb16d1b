"""FeatureCache: compute a frozen backbone's deterministic part once per split; train and evaluate from the cache.

Enable it from a LightningCLI config::

    trainer:
      callbacks:
        - class_path: callbacks.feature_cache.FeatureCache
          init_args:
            cache_dir: .cache/features   # shared by every rank under DDP
            dtype: float32               # or float16 (half the disk, ~1e-3 relative rounding)
            # bank_views: 8              # only for random train transforms (CIBHash): explicit approximation

The interface is narrow on both sides. The model says what may be cached — ``cacheable_encoder()`` (VGG16:
convs → fc6 → ReLU; the whole backbone with ``freeze_mode=eval``; None for a trained backbone) — and is told
whether its inputs are cached rows, ``use_cached_inputs(flag)``; its backbone then runs only the rest (the
official code's live dropout → fc7), so a method never sees the difference. The datamodule offers
``splits_for(stage)``, ``dataset(split)`` and ``replace_dataset(split, ds)``; a cached dataset declares
``loads_in_process`` and the datamodule serves it without worker processes. The on-disk store is
``hashcore/feature_store.py``.

A random train transform (CIBHash) is refused with an error naming ``bank_views``, unless that option is set or
``random_train_transform: images`` trains on images as usual (exact) while the evaluation splits are cached.
"""
from __future__ import annotations

import time
import warnings
from typing import Literal, Optional

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from callbacks.cached_inputs import CachedInputs
from hashcore.feature_store import (CachedFeatureDataset, FeatureCacheBuilder, RandomTransformError, encoder_fields,
                            random_transform_message, transform_is_random, unwrap_multiview)

from hashcore.splits import SPLITS as _ROLES  # noqa: E402


def _same(dm, split: str, ds) -> bool:
    try:
        other = dm.dataset(split)
    except (ValueError, RuntimeError, KeyError):
        return False
    return other is ds or (isinstance(other, CachedFeatureDataset) and other.source is ds)


class FeatureCache(L.Callback):
    """Cache ``pl_module.cacheable_encoder()`` per split on disk and train/evaluate from it.

    Args:
        cache_dir: root folder of the cache (one entry per split, encoder and settings).
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
            image and let every item draw its views distinct from them per epoch (an approximation of fresh
            augmentation, never applied silently). 0 = see ``random_train_transform``. Unused (one info
            line) when the train transform is deterministic, so one config can serve every method.
        bank_seed: seed of the augmentation bank.
        random_train_transform: what to do with a random train transform when ``bank_views`` is 0:
            ``error`` (default: say so and name the options) or ``images`` (train on images with fresh
            augmentation, exactly as without the cache; cache only the evaluation splits).
        progress: show the build progress bar (rank 0).
    """

    def __init__(self, cache_dir: str = ".cache/features", dtype: Literal["float16", "float32"] = "float16",
                 batch_size: int = 128, num_workers: Optional[int] = None,
                 device: Literal["auto", "cpu", "cuda"] = "auto",
                 autocast: Literal["auto", "none", "bf16", "fp16"] = "auto", channels_last: Optional[bool] = None,
                 bank_views: int = 0, bank_seed: int = 0, random_train_transform: Literal["error", "images"] = "error",
                 progress: bool = True):
        super().__init__()
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"FeatureCache device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        if random_train_transform not in ("error", "images"):
            raise ValueError("FeatureCache random_train_transform must be 'error' or 'images', "
                             f"got {random_train_transform!r}")
        if int(bank_views) < 0:
            raise ValueError(f"FeatureCache bank_views must be >= 0, got {bank_views}")
        FeatureCacheBuilder(cache_dir, dtype=dtype, batch_size=batch_size, autocast=autocast)  # validates them
        self.cache_dir, self.dtype, self.batch_size = cache_dir, dtype, int(batch_size)
        self.num_workers, self.device, self.autocast = num_workers, device, autocast
        self.channels_last, self.bank_views, self.bank_seed = channels_last, int(bank_views), int(bank_seed)
        self.random_train_transform = random_train_transform
        self.progress = bool(progress)
        self.info: dict[str, dict] = {}  # per split: status, path, seconds (tests, benchmarks, logs)
        self.encoder_calls = 0
        self.inputs = CachedInputs()  # what the backbone reads in each phase (images or cached rows)
        self._warned = False

    # ---------------------------------------------------------------------------------------------- setup
    def setup(self, trainer: "L.Trainer", pl_module: "L.LightningModule", stage: str) -> None:
        encoder = pl_module.cacheable_encoder() if hasattr(pl_module, "cacheable_encoder") else None
        if encoder is None:
            return self._skip(f"{type(pl_module).__name__} has nothing to cache (its backbone is trained, so its "
                              "features change every step)")
        dm = trainer.datamodule
        if dm is None or not all(hasattr(dm, a) for a in ("splits_for", "dataset", "replace_dataset")):
            return self._skip("the datamodule offers no splits_for()/dataset()/replace_dataset(), so no split can "
                              "be served from the cache")
        self.inputs.reset()
        todo = []
        for split in dm.splits_for(stage):
            ds = dm.dataset(split)
            if isinstance(ds, CachedFeatureDataset):  # the datamodule kept an earlier replacement: start from images
                ds = ds.source
            if ds is not None:
                todo.append((split, ds))
        # a dataset serving two roles (CIFAR cibhash: the validation database *is* the database) is one entry, named
        # after its first role, so fit and test share it
        names = {id(ds): next((s for s in _ROLES if _same(dm, s, ds)), split) for split, ds in todo}
        if todo:
            self._cache(trainer, pl_module, dm, encoder, todo, names)

    def _skip(self, message: str) -> None:
        if not self._warned:
            warnings.warn(f"FeatureCache: {message}; training runs on images without the cache", stacklevel=2)
            self._warned = True

    def _builder(self, trainer, dm) -> FeatureCacheBuilder:
        root = getattr(trainer.strategy, "root_device", torch.device("cpu"))
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("FeatureCache device='cuda' but CUDA is not available; use device: auto or cpu")
        device = root if root.type == "cuda" and self.device != "cpu" else torch.device("cpu")
        if self.device == "cuda" and device.type != "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        return FeatureCacheBuilder(
            self.cache_dir, dtype=self.dtype, batch_size=self.batch_size,
            num_workers=getattr(dm, "num_workers", 0) if self.num_workers is None else self.num_workers,
            device=device, autocast=self.autocast, channels_last=self.channels_last, progress=self.progress,
            rank=trainer.global_rank, world=trainer.world_size,
            barrier=lambda: trainer.strategy.barrier("feature_cache"),
            broadcast=lambda obj: trainer.strategy.broadcast(obj, src=0))

    def _cache(self, trainer, pl_module, dm, encoder, todo: list, names: dict) -> None:
        builder = self._builder(trainer, dm)
        name = str(getattr(pl_module, "hparams", {}).get("backbone", type(encoder).__name__))
        fields = encoder_fields(encoder, name + (":whole" if isinstance(encoder, torch.nn.Sequential) else ""))
        modes = [(m, m.training) for m in encoder.modules()]  # restored exactly (frozen BN stays in eval)
        encoder.eval()
        done: dict[int, CachedFeatureDataset] = {}  # one entry per dataset object (a split may serve two roles)
        try:
            for split, ds in todo:
                cached = done.get(id(ds)) or self._cache_split(builder, encoder, fields, names[id(ds)], ds)
                if cached is None:
                    continue
                done[id(ds)] = cached
                dm.replace_dataset(split, cached)
        finally:
            for m, mode in modes:
                m.training = mode
            self.encoder_calls += builder.encoder_calls
        self.inputs.cached(train=any(s == "train" and id(d) in done for s, d in todo),
                           evaluation=any(s != "train" and id(d) in done for s, d in todo))

    def _cache_split(self, builder, encoder, fields, split: str, ds) -> Optional[CachedFeatureDataset]:
        train = split == "train"
        random = train and transform_is_random(getattr(ds, "transform", None))
        base, views = unwrap_multiview(getattr(ds, "transform", None))
        if random and not self.bank_views:
            if self.random_train_transform == "images":
                rank_zero_info("FeatureCache: train split left on images: its transform is random and bank_views=0 "
                               "(random_train_transform=images); the evaluation splits are cached")
                return None
            raise RandomTransformError(random_transform_message(split, repr(base)))
        if train and self.bank_views and not random:
            rank_zero_info(f"FeatureCache: bank_views={self.bank_views} not used: the train transform is "
                           "deterministic, one cached view is exact")
        t0 = time.perf_counter()
        cached = builder.get(ds, encoder, fields, split=split, bank_views=self.bank_views if random else 0,
                             bank_seed=self.bank_seed, views=views, random_transform=random)
        self.info[split] = {"status": cached.cache_status, "path": cached.path,
                            "seconds": round(time.perf_counter() - t0, 3), "items": len(cached),
                            "shape": cached.meta.get("shape")}
        rank_zero_info(f"FeatureCache: {split} {cached.cache_status} ({len(cached)} items, "
                       f"{cached.meta.get('shape')} {self.dtype}) in {self.info[split]['seconds']:.1f}s from {cached.path}")
        return cached

    # ---------------------------------------------------------------------------------------------- which inputs
    def _apply(self, pl_module) -> None:
        """Tell the model what its backbone reads now (after every transition of ``self.inputs``)."""
        if hasattr(pl_module, "use_cached_inputs"):
            pl_module.use_cached_inputs(self.inputs.inputs_cached)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.inputs.start_training()
        self._apply(pl_module)

    def on_validation_start(self, trainer, pl_module) -> None:
        self.inputs.start_evaluation()
        self._apply(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:  # back to training, or done
        self.inputs.end_evaluation(fitting=trainer.state.fn == "fit")
        self._apply(pl_module)

    on_test_start = on_predict_start = on_validation_start

    def on_test_end(self, trainer, pl_module) -> None:
        self.inputs.end_stage()
        self._apply(pl_module)

    on_predict_end = on_fit_end = on_test_end

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self.inputs.reset()
        self._apply(pl_module)
