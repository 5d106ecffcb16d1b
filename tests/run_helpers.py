"""Callbacks that tests inject through the CLI (``--trainer.callbacks+=...``) to play a crashed or killed run."""
from __future__ import annotations

import os
import signal

import lightning as L


class KillAt(L.Callback):
    """SIGKILL this process at ``step`` of ``epoch`` (mid-epoch: nothing gets a chance to save or clean up)."""

    def __init__(self, epoch: int = 1, step: int = 1):
        super().__init__()
        self.epoch, self.step = epoch, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
