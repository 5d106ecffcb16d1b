"""The DataLoaders a HashDataModule serves, and the global batch size a checkpoint keeps so that a resumed run
continues the same batch sequence.

A mixin of :class:`~datamodules.base.HashDataModule` (its ``batch_size``, ``num_workers``, ``seed``, ... and the
split table of :mod:`datamodules.split_datasets`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from .sampling import EpochSeededItems, EpochShuffleSampler


class SplitLoaders:
    """``train_dataloader`` (seeded per epoch, DDP-invariant), the query / database / validation loaders and the
    checkpoint state."""

    def _loader(self, dataset: Dataset, batch_size: int, persistent: bool, **kwargs) -> DataLoader:
        workers = 0 if getattr(dataset, "loads_in_process", False) else self.num_workers
        return DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=self.pin_memory,
                          persistent_workers=persistent and workers > 0, **kwargs)

    def _eval_loader(self, split: str) -> DataLoader:
        return self._loader(self.dataset(split), self.eval_batch_size, self.persistent_workers,
                            shuffle=False, drop_last=False)

    def _fit_epoch(self) -> int:
        """The epoch Lightning's fit loop is at (what it passes to ``set_epoch``; 0 without a trainer):
        Lightning creates the first iterator, and its workers prefetch indices, before that call."""
        # Not ``trainer.current_epoch``: on a resumed run it still names the finished epoch when the first iterator is
        # built (tests/test_datamodules_sampling.py::test_a_resumed_run_replays_the_uninterrupted_runs_epoch pins it).
        loop = getattr(getattr(self, "trainer", None), "fit_loop", None)
        try:
            return int(loop.epoch_progress.current.processed)
        except (AttributeError, TypeError, ValueError):
            return 0

    def _processes(self) -> Tuple[Optional[int], Optional[int]]:
        """``(world size, rank)`` of the trainer this datamodule is attached to (None = from
        ``torch.distributed``, or one process)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None, None
        return int(trainer.world_size), int(trainer.global_rank)

    def train_dataloader(self) -> DataLoader:
        """Shuffled train batches of ``batch_size`` per process. Under DDP with W processes, step s's
        batches of all ranks together are step s's batch of one process with ``batch_size × W``
        (``sampling.py``), so the run trains on the same sequence on any number of processes."""
        ds = self.dataset("train")
        world, rank = self._processes()
        generator = torch.Generator()
        sampler = EpochShuffleSampler(ds, self.seed, epoch=self._fit_epoch(), generator=generator,
                                      num_replicas=world, rank=rank, batch_size=self.batch_size)
        if len(ds) < sampler.global_batch_size:
            per = (f" × {sampler.num_replicas} processes = {sampler.global_batch_size}, one step's batch"
                   if sampler.num_replicas > 1 else "")
            raise ValueError(f"{self.display_name} protocol {self.protocol!r}: the train split has "
                             f"{len(ds)} images, fewer than batch_size={self.batch_size}{per}; "
                             f"with drop_last=True no batch would be produced. Lower data.batch_size.")
        # random augmentations seeded per (epoch, item), whoever reads it; datasets read in the main
        # process (cached features) draw from the process's RNG as before
        items = ds if getattr(ds, "loads_in_process", False) else EpochSeededItems(ds, sampler)
        return self._loader(items, self.batch_size, persistent=False, sampler=sampler, generator=generator,
                            drop_last=True)

    # ------------------------------------------------------------------ checkpoint state
    def _global_batch_size(self) -> int:
        world, _ = self._processes()
        return self.batch_size * (world or 1)

    def state_dict(self) -> Dict[str, Any]:
        """Saved in every checkpoint: the global batch (``batch_size × world size``) the run trained with."""
        return {"global_batch_size": self._global_batch_size()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """On resume: warn when the global batch differs from the checkpoint's, since the batch
        sequence from here on is then not the uninterrupted run's."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.state.fn != TrainerFn.FITTING:
            return  # test / predict from a checkpoint: no batch sequence to continue
        was, now = state_dict.get("global_batch_size"), self._global_batch_size()
        if was is not None and int(was) != now:
            world, _ = self._processes()
            world = world or 1
            fit = (f"set data.batch_size to {int(was) // world} to continue it" if int(was) % world == 0
                   else f"{int(was)} images cannot be split evenly over {world} processes")
            rank_zero_warn(f"the checkpoint was trained with a global batch of {int(was)} images per step, this run "
                           f"has {now} (data.batch_size={self.batch_size} × {world} process(es)): from here on it "
                           f"trains on other batches than the uninterrupted run; {fit}", category=UserWarning)

    def query_dataloader(self) -> DataLoader:
        return self._eval_loader("query")

    def database_dataloader(self) -> DataLoader:
        return self._eval_loader("database")

    def val_query_dataloader(self) -> DataLoader:
        """Validation queries (never the test queries); an error without a validation split."""
        return self._eval_loader("val_query")

    def val_database_dataloader(self) -> DataLoader:
        """The database the validation queries are ranked against."""
        return self._eval_loader("val_database")

    def val_dataloader(self) -> List[DataLoader]:
        """``[val_query_loader, val_database_loader]`` (0 = queries, 1 = database), or ``[]`` without a
        validation split (Lightning then skips validation)."""
        if not self.has_validation:
            return []
        return [self.val_query_dataloader(), self.val_database_dataloader()]

    def test_dataloader(self) -> List[DataLoader]:
        """``[query_loader, database_loader]`` (0 = queries, 1 = database)."""
        return [self.query_dataloader(), self.database_dataloader()]

    def predict_dataloader(self) -> List[DataLoader]:
        """``[query_loader, database_loader]``, as ``test_dataloader``."""
        return self.test_dataloader()
