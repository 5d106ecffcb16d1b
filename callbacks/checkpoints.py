"""``last.ckpt`` at the end of every training epoch, written atomically, whatever the validation schedule.

Lightning's ``ModelCheckpoint(save_last=True)`` with a monitor saves only when validation runs (every 20 epochs in
the CIBHash configs), so a run killed in epoch 39 lost 19 epochs; and it writes the file in place, so a run killed
while saving left a truncated ``last.ckpt``. This one saves after every training epoch into ``last.ckpt.partial``
and renames it (atomic on POSIX), so ``last.ckpt`` is always a complete checkpoint of a finished epoch. Under the
CLI the trainer's checkpoint plugin writes every checkpoint that way itself (with a checksum file next to it), and
this callback hands it the final path.
"""
from __future__ import annotations

import os
from typing import Optional
from weakref import proxy

from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """``<dirpath>/last.ckpt`` after every training epoch (what ``--ckpt_path last`` resumes)."""

    def __init__(self, dirpath: Optional[str] = None):
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, save_last=False,
                         every_n_epochs=1, save_on_train_epoch_end=True, enable_version_counter=False)

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def _should_skip_saving_checkpoint(self, trainer) -> bool:
        """Once per finished epoch — also for methods that take no optimiser step (LSH, ITQ fit in closed form, so
        Lightning's "nothing new since the last saved step" test would never save them)."""
        from lightning.pytorch.trainer.states import TrainerFn
        return (bool(trainer.fast_dev_run) or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking
                or self._last_epoch_saved == trainer.current_epoch)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        self._save_atomically(trainer, filepath)
        self._last_epoch_saved = trainer.current_epoch

    _last_epoch_saved = -1

    def _save_atomically(self, trainer, filepath: str) -> None:
        if getattr(trainer.strategy.checkpoint_io, "writes_atomically", False):
            trainer.save_checkpoint(filepath, self.save_weights_only)  # the plugin renames (and checksums) itself
        else:
            partial = filepath + ".partial"
            trainer.save_checkpoint(partial, self.save_weights_only)  # every rank takes part; rank 0 writes
            if trainer.is_global_zero:
                os.replace(partial, filepath)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
