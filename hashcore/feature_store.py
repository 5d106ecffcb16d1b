"""The feature store's public entry: the on-disk store of a frozen encoder's outputs, one entry per split (no Lightning).

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

Where each part lives: the keys ``feature_keys.py``, random-transform detection ``random_transforms.py``, one entry on
disk ``feature_entries.py``, the cached dataset ``cached_features.py``, building (resumable, DDP) ``feature_builder.py``.
Every name below is importable from here, as before the split.
"""
from __future__ import annotations

from .cached_features import CachedFeatureDataset
from .feature_builder import AUTOCAST, FeatureCacheBuilder, cache_features, view_seed
from .feature_entries import DTYPES, FORMAT_VERSION, file_crc32
from .feature_keys import (CONTENT_FIELDS, array_fingerprint, cache_key, dataset_fingerprint, encoder_fields,
                           module_fingerprint)
from .random_transforms import (BANK_OPTION, RandomTransformError, random_transform_message, transform_is_random,
                                unwrap_multiview)

__all__ = ["AUTOCAST", "BANK_OPTION", "CONTENT_FIELDS", "DTYPES", "FORMAT_VERSION", "CachedFeatureDataset",
           "FeatureCacheBuilder", "RandomTransformError", "array_fingerprint", "cache_features", "cache_key",
           "dataset_fingerprint", "encoder_fields", "file_crc32", "module_fingerprint", "random_transform_message",
           "transform_is_random", "unwrap_multiview", "view_seed"]
