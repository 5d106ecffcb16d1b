"""The suite's default progress bar: Lightning's own (Rich when ``rich`` is installed, else tqdm), redrawn by time.

Lightning redraws its bar and recomputes its metrics after every training batch. On the Bi-half autoencoder study's
steps of a few milliseconds that alone made ``lightning fit`` ×1.31 the wall time of a plain PyTorch loop
(``benchmarks/bench_ae_overhead.py``); redrawn at most every ``interval`` seconds (and at each epoch's last batch) it
costs nothing, while a slow image step (over ``interval``) still redraws after every batch.
"""
from __future__ import annotations

import importlib.util
import time

from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

REDRAW_INTERVAL_S = 0.5


class _RedrawnByTime:
    """Skips the bar's per-batch training update unless ``interval`` seconds have passed or the epoch ends."""

    def __init__(self, *args, interval: float = REDRAW_INTERVAL_S, **kwargs):
        super().__init__(*args, **kwargs)
        self.interval = interval
        self.drawn_at = float("-inf")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.monotonic()
        if now - self.drawn_at >= self.interval or batch_idx + 1 >= self.total_train_batches:
            self.drawn_at = now
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class TimedRichProgressBar(_RedrawnByTime, RichProgressBar):
    """Lightning's ``RichProgressBar``, training bar redrawn at most every ``interval`` seconds."""


class TimedTQDMProgressBar(_RedrawnByTime, TQDMProgressBar):
    """Lightning's ``TQDMProgressBar``, training bar redrawn at most every ``interval`` seconds."""


def default_progress_bar():
    """The bar Lightning would pick by itself (Rich if installed), redrawn by time."""
    return TimedRichProgressBar() if importlib.util.find_spec("rich") else TimedTQDMProgressBar()
