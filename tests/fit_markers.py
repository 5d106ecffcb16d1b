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
