"""Resume-safe shuffling: the train order (and the loader's worker seeds) are functions of (seed, epoch).

Lightning calls ``set_epoch(epoch)`` on a train loader's sampler before every epoch (also on a resumed
run, with the epoch it resumes at). :class:`EpochShuffleSampler` draws that epoch's permutation from
``torch.Generator().manual_seed(epoch_seed(seed, epoch, "order"))`` and reseeds the DataLoader's own
generator, from which the loader draws its worker base seed when an iterator is created, with
``epoch_seed(seed, epoch, "workers")``. Nothing depends on how many loaders or iterators were made
before, so a run resumed at epoch 2 sees the order and augmentation seeds of the uninterrupted run.

It subclasses ``DistributedSampler`` so that Lightning keeps it under DDP (it only swaps in its own
sampler for non-distributed ones): every rank draws the same permutation and takes its share of it.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterator, Optional

import torch
from torch.utils.data import DistributedSampler


def epoch_seed(seed: int, epoch: int, stream: str) -> int:
    """A 63-bit seed that depends only on ``(seed, epoch, stream)``."""
    digest = hashlib.sha256(f"hashbench/{stream}/{int(seed)}/{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def _world() -> tuple:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class EpochShuffleSampler(DistributedSampler):
    """Shuffled indices ``0..n-1`` whose order depends only on ``(seed, epoch)``.

    Args:
        dataset: the train dataset (only its length is used).
        seed: the datamodule's seed.
        epoch: the epoch to start at (``set_epoch`` changes it).
        generator: the DataLoader's generator, reseeded by ``set_epoch`` (worker base seeds).
        num_replicas, rank: DDP world size and rank; None = from ``torch.distributed`` (1 / 0 when it
            is not initialised). Each rank takes every ``num_replicas``-th index of the permutation,
            padded by repeating its start so that every rank gets the same count (as
            ``DistributedSampler`` does).
    """

    def __init__(self, dataset, seed: int, epoch: int = 0, generator: Optional[torch.Generator] = None,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None):
        world, me = _world()
        num_replicas = world if num_replicas is None else int(num_replicas)
        rank = me if rank is None else int(rank)
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed))
        self.generator = generator
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.generator is not None:
            self.generator.manual_seed(epoch_seed(self.seed, self.epoch, "workers"))

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, "order"))
        order = torch.randperm(n, generator=g).tolist()
        if self.num_replicas > 1:
            total = math.ceil(n / self.num_replicas) * self.num_replicas
            while len(order) < total:  # pad by repeating the start (n may be < num_replicas)
                order += order[:total - len(order)]
            order = order[self.rank:total:self.num_replicas]
        return iter(order)

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.num_replicas)
