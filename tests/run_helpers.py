"""Callbacks that tests inject through the CLI (``--trainer.callbacks+=...``) to play a crashed or killed run."""
from __future__ import annotations

import os
import signal
import time

import lightning as L


class KillAt(L.Callback):
    """SIGKILL this process at ``step`` of ``epoch`` (mid-epoch: nothing gets a chance to save or clean up)."""

    def __init__(self, epoch: int = 1, step: int = 1):
        super().__init__()
        self.epoch, self.step = epoch, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.step:
            self.strike()

    def strike(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class RequeueAt(KillAt):
    """SIGUSR1 at ``step`` of ``epoch`` (what SLURM sends before preempting: Lightning saves hpc_ckpt_N.ckpt and
    runs ``scontrol requeue``), then SIGKILL (SLURM ending the job)."""

    def strike(self) -> None:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.5)  # the handler runs in this thread between bytecodes; give it the save
        os.kill(os.getpid(), signal.SIGKILL)
