"""Run the console commands (`lightning`, `hashbench`, `torchrun`) as a user types them, on a miniature CIFAR-10.

Shared by tests/test_console_*.py: the installed console scripts of this interpreter's environment are first on PATH
and this checkout first on PYTHONPATH, so the commands run this code; W&B is off and each process uses one thread.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L

from hashbench.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
EXP = REPO / "experiments"
BIN = Path(sys.executable).parent
#: a miniature of any CIFAR-10 config: tiny CNN, 32 px, a few steps, no logger
TINY = ["--data.download", "false", "--data.scale", "0.01", "--data.image_size", "32", "--data.num_workers", "0",
        "--data.batch_size", "8", "--model.backbone", "tiny_cnn", "--model.pretrained", "false",
        "--trainer.logger", "false", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "4",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.accelerator", "cpu"]
TWO_CPU = ["--trainer.devices", "2", "--trainer.accelerator", "cpu"]


def console_env(**extra: str) -> dict:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "WANDB_MODE": "disabled",
           "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID"):
        env.pop(key, None)  # a test run under a launcher must not make these commands believe they are rank 1
    return {**env, **extra}


@dataclass
class Ran:
    command: list
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def tail(self) -> str:
        return f"$ {' '.join(map(str, self.command))}\n--- stdout\n{self.stdout[-2500:]}\n--- stderr\n{self.stderr[-4000:]}"


def console(*command, cwd, timeout: float = 300, **env) -> Ran:
    """Run one command line in ``cwd``; a hang fails the test with what the command printed so far."""
    t0 = time.perf_counter()
    try:
        out = subprocess.run([str(c) for c in command], cwd=cwd, env=console_env(**env), capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"`{' '.join(map(str, command))}` still running after {timeout} s (a hang)\n"
                             f"{(err.stderr or b'')[-3000:]!r}") from None
    ran = Ran(list(command), out.returncode, out.stdout, out.stderr, time.perf_counter() - t0)
    print(f"[{ran.seconds:5.1f} s] {' '.join(map(str, command))[:160]}")  # pytest -s / -rA shows the wall times
    return ran


class FailOnRank(L.Callback):
    """A configuration only rank ``rank`` cannot build (a file only rank 0 sees, a device missing on one node...)."""

    def __init__(self, rank: int = 1):
        super().__init__()
        if os.environ.get("LOCAL_RANK", "0") == str(rank):
            raise ConfigError(f"FailOnRank: rank {rank} cannot build this configuration")
