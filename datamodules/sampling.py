"""Resume-safe shuffling whose global batches do not depend on the number of processes.

Lightning calls ``set_epoch(epoch)`` on a train loader's sampler before every epoch (also on a resumed
run, with the epoch it resumes at). :class:`EpochShuffleSampler` draws that epoch's permutation from
``torch.Generator().manual_seed(epoch_seed(seed, epoch, "order"))`` and reseeds the DataLoader's own
generator, from which the loader draws its worker base seed when an iterator is created, with
``epoch_seed(seed, epoch, "workers")`` (rank 0; other ranks get streams of their own). Nothing depends on how many loaders or iterators were made
before, so a run resumed at epoch 2 sees the order and augmentation seeds of the uninterrupted run.

Under DDP the permutation is cut into *global* batches of ``batch_size × num_replicas`` consecutive
indices, and rank ``r`` takes the ``r``-th run of ``batch_size`` indices of each: the ranks' batches at
step ``s``, concatenated in rank order (what an all-gather gives), are exactly batch ``s`` of one process
with ``batch_size × num_replicas``. A permutation tail that fills no global batch is dropped, as the one
process's ``drop_last=True`` loader drops it. So 1 process with batch 8 and 2 processes with batch 4 train
on the same batches, and a run resumed on another number of processes continues the same sequence.
(The older ``DistributedSampler`` scheme, rank ``r`` taking every ``W``-th index, gave other batches.)

It subclasses ``DistributedSampler`` so that Lightning keeps it under DDP (it only swaps in its own
sampler for non-distributed ones).

Random augmentations follow the items, not the processes: :class:`EpochSeededItems` draws item ``i`` of
epoch ``e`` under the torch seed ``epoch_seed(seed, e, "item/<i>")`` (in a forked RNG, so nothing else's
random stream moves), so an image gets the same crop and flip whichever rank, worker or process count
reads it. Worker seeds alone would not do: which worker reads an item depends on the number of workers and
of processes.
"""

from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch.utils.data import Dataset, DistributedSampler


from hashcore.distributed import global_rank, world_size
from hashcore.seeds import epoch_seed  # noqa: E402,F401 (re-exported: the data streams' seed)


def _world() -> tuple:
    return world_size(), global_rank()


class EpochShuffleSampler(DistributedSampler):
    """Shuffled indices ``0..n-1`` whose order depends only on ``(seed, epoch)``, cut into global batches.

    Args:
        dataset: the train dataset (only its length is used).
        seed: the datamodule's seed.
        epoch: the epoch to start at (``set_epoch`` changes it).
        generator: the DataLoader's generator, reseeded by ``set_epoch`` (worker base seeds).
        num_replicas, rank: DDP world size and rank; None = from ``torch.distributed`` (1 / 0 when it
            is not initialised).
        batch_size: the per-process batch size of the loader this sampler feeds. Rank ``r`` yields, for
            every global batch ``s`` of ``batch_size * num_replicas`` permutation entries, the entries
            ``[r * batch_size, (r + 1) * batch_size)`` of it; the tail that fills no global batch is
            dropped (every rank yields the same count, whole batches only).
    """

    def __init__(self, dataset, seed: int, epoch: int = 0, generator: Optional[torch.Generator] = None,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None, batch_size: int = 1):
        world, me = _world()
        num_replicas = world if num_replicas is None else int(num_replicas)
        rank = me if rank is None else int(rank)
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or int(batch_size) < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed),
                         drop_last=True)
        self.batch_size = int(batch_size)
        self.generator = generator
        self._listeners = []  # objects whose ``epoch`` follows this sampler's
        self.set_epoch(epoch)

    def add_epoch_listener(self, listener) -> None:
        """Set ``listener.epoch`` at every ``set_epoch`` (e.g. :class:`EpochSeededItems`)."""
        self._listeners.append(listener)
        listener.epoch = self.epoch

    @property
    def global_batch_size(self) -> int:
        """The batch one optimiser step sees: ``batch_size`` per process × ``num_replicas``."""
        return self.batch_size * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for listener in self._listeners:
            listener.epoch = self.epoch
        if self.generator is not None:
            # rank 0 keeps the one-process stream; other ranks get their own, so that ranks never
            # draw the same augmentations for different images
            stream = "workers" if self.rank == 0 else f"workers/rank{self.rank}"
            self.generator.manual_seed(epoch_seed(self.seed, self.epoch, stream))

    def permutation(self) -> list:
        """This epoch's order of the whole dataset (the same on every rank)."""
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, "order"))
        return torch.randperm(len(self.dataset), generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        order, b, g = self.permutation(), self.batch_size, self.global_batch_size
        mine = []
        for start in range(0, len(order) - g + 1, g):
            mine += order[start + self.rank * b:start + (self.rank + 1) * b]
        return iter(mine)

    def __len__(self) -> int:
        return len(self.dataset) // self.global_batch_size * self.batch_size


class EpochSeededItems(Dataset):
    """``dataset`` whose item ``i`` is read under the torch seed ``epoch_seed(seed, epoch, "item/<i>")``,
    with ``seed`` and ``epoch`` those of ``sampler`` at the time (a worker reads the epoch its copy was
    made at, when the loader's iterator started, as it reads its own seed from the loader's generator).
    It keeps the two ints, not the sampler: workers started by ``spawn`` unpickle the dataset, and the
    sampler's generator would travel as a shared-memory tensor."""

    def __init__(self, dataset, sampler: EpochShuffleSampler):
        self.dataset, self.seed, self.epoch = dataset, sampler.seed, sampler.epoch
        sampler.add_epoch_listener(self)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(epoch_seed(self.seed, self.epoch, f"item/{int(i)}"))
            return self.dataset[i]
