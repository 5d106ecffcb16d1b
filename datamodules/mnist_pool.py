"""The in-process cache of the last MNIST-family pool read, keyed by the path, mtime and size of its files: a
second datamodule on the same files (fit then test, the runs of a sweep) reuses it; changed files are read again."""

from __future__ import annotations

import os
from typing import Callable, Dict

from .mnist_readers import read_idx_pool, read_mnist_pkl_pool
from .pools import Pool

_POOL_CACHE: Dict[tuple, Pool] = {}


def _cached(paths, read: Callable[[], Pool]) -> Pool:
    key = tuple((p, os.path.getmtime(p), os.path.getsize(p)) for p in paths)
    if key in _POOL_CACHE:
        return _POOL_CACHE[key]
    pool = read()
    _POOL_CACHE.clear()  # one pool (70,000 images) at a time
    _POOL_CACHE[key] = pool
    return pool


def load_idx_pool(files: Dict[str, str], names) -> Pool:
    """:func:`~datamodules.mnist_readers.read_idx_pool`, cached."""
    return _cached(sorted(files.values()), lambda: read_idx_pool(files, names))


def read_mnist_pkl(path: str) -> Pool:
    """:func:`~datamodules.mnist_readers.read_mnist_pkl_pool`, cached."""
    return _cached([path], lambda: read_mnist_pkl_pool(path))
