"""Per-epoch seeds: the one place that turns (run seed, epoch, stream) into a 63-bit seed.

Two hashes live here because each is already in saved runs: the data pipeline's streams (order, workers,
items) use sha256, the per-rank reseeding of python/numpy/torch (``EpochSeeding``) uses blake2b. Changing
either would change every resumed or reproduced run's numbers, so both are kept exactly as they were.
"""
from __future__ import annotations

import hashlib

_MASK = (1 << 63) - 1


def epoch_seed(seed: int, epoch: int, stream: str) -> int:
    """A 63-bit seed that depends only on ``(seed, epoch, stream)`` (the data order, worker and item streams)."""
    digest = hashlib.sha256(f"hashbench/{stream}/{int(seed)}/{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & _MASK


def rank_epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A 63-bit seed derived from (seed, epoch, rank) for reseeding a process's global RNGs each epoch."""
    digest = hashlib.blake2b(f"hashbench:{seed}:{epoch}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK
