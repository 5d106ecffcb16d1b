"""``last.ckpt`` at the end of every training epoch, written atomically, whatever the validation schedule.

Lightning's ``ModelCheckpoint(save_last=True)`` with a monitor saves only when validation runs (every 20 epochs in
the CIBHash configs), so a run killed in epoch 39 lost 19 epochs; and it skips a save when no optimiser step was
taken since the last one, so closed-form methods (LSH, ITQ, PCAH, SH: ``global_step`` stays 0) would never get a
``last.ckpt``. This callback is not a ``ModelCheckpoint``: it subclasses Lightning's public ``Checkpoint`` base (so
Lightning runs it after the module's own ``on_train_epoch_end``, where closed-form methods fit, and after every other
callback) and calls the public ``trainer.save_checkpoint`` once per finished epoch. Under the CLI the trainer's
checkpoint plugin (``hashbench/checkpoint_io.py``) writes every checkpoint atomically with a checksum file; without
it (a trainer built by hand) this callback writes ``last.ckpt.partial`` and renames it (atomic on POSIX).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.trainer.states import TrainerFn

LAST = "last.ckpt"


class LastCheckpoint(Checkpoint):
    """``<dirpath>/last.ckpt`` after every training epoch (what ``--ckpt_path last`` resumes)."""

    def __init__(self, dirpath: Optional[str] = None):
        self.dirpath = dirpath

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    @property
    def last_model_path(self) -> str:
        """Where the last checkpoint was written ('' before the first)."""
        return self._written

    _written = ""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.dirpath is None:  # like ModelCheckpoint: <default_root_dir>/checkpoints
            self.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        self.save(trainer, os.path.join(self.dirpath, LAST))

    def save(self, trainer, filepath: str) -> None:
        if getattr(trainer.strategy.checkpoint_io, "writes_atomically", False):
            trainer.save_checkpoint(filepath)  # the plugin renames (and checksums) itself
        else:
            partial = filepath + ".partial"
            trainer.save_checkpoint(partial)  # every rank takes part; rank 0 writes
            if trainer.is_global_zero:
                os.replace(partial, filepath)
        self._written = filepath
