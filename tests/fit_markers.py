"""A callback for console tests: every fit start appends ``<pid> <run folder>`` to the file ``$FIT_MARKER_LOG``
(so a test counts how often each run is trained, whichever process trains it)."""
import os
from pathlib import Path

from lightning.pytorch.callbacks import Callback, ModelCheckpoint


class FitStarts(Callback):
    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        dirs = [c.dirpath for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.dirpath]
        run = Path(dirs[0]).parent.name if dirs else trainer.default_root_dir
        with open(os.environ["FIT_MARKER_LOG"], "a") as f:
            f.write(f"{os.getpid()} {run}\n")


class StartTogether(Callback):
    """Holds every process at ``setup`` until ``count`` processes reached it (files in ``folder``), so two console
    commands start building their feature cache at the same moment. Put it before FeatureCache in the callbacks."""

    def __init__(self, folder: str, count: int = 2, timeout_s: float = 300.0):
        self.folder, self.count, self.timeout_s = Path(folder), count, timeout_s

    def setup(self, trainer, pl_module, stage: str) -> None:
        import time
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / str(os.getpid())).touch()
        deadline = time.monotonic() + self.timeout_s
        while len(list(self.folder.iterdir())) < self.count and time.monotonic() < deadline:
            time.sleep(0.01)


class ConfigCheckFailsInTraining(Callback):
    """Raises, at the end of the first training batch, the ValueError our own data.top_k check raises: once work has
    started such an error is a bug (traceback), not the user's configuration mistake."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from datamodules.base import resolve_top_k
        resolve_top_k("zero", None)
