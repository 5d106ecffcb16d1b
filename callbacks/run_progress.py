"""A run's progress a person can watch: ``progress.json`` in the run folder every epoch, and one live line.

Inside ``hashbench compare`` a run prints nothing until it ends (no progress bars), so a 300-epoch run was hours of
silence. :class:`RunProgress` writes ``<run folder>/progress.json`` (method, bits, seed, epoch e/E, the epoch's
loss, elapsed, ETA, host and pid) at the start of training and after every training epoch, atomically, so
``hashbench compare … --status`` can show runs of other processes, machines and SLURM jobs from the folder alone.
With ``show=True`` it also keeps one line on the terminal: in a TTY the line is rewritten in place and cleared when
the run ends (the sweep then prints the run's result line in its place); in a log file (not a TTY) one line per
epoch at most, and no more often than every ``log_interval_s`` seconds.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, TextIO

from lightning.pytorch.callbacks import Callback

PROGRESS_FILE = "progress.json"
#: the loss shown: the epoch mean of the total the methods log (``train/loss``), else its last step
LOSS_KEYS = ("train/loss_epoch", "train/loss", "train/loss_step")


def write_json_atomically(path: Path, data: dict) -> None:
    """A reader (``--status`` on another machine) sees the previous file or this one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def duration(seconds: Optional[float]) -> str:
    """``42s``, ``3m05s``, ``2h04m``: short enough for one line per run."""
    if seconds is None:
        return "?"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_text(p: dict) -> str:
    """``epoch 3/50, loss 0.4321, 1m02s, ETA 15m10s`` from a progress.json record."""
    parts = [f"epoch {p.get('epoch', 0)}/{p.get('max_epochs', '?')}"]
    if p.get("loss") is not None:
        parts.append(f"loss {p['loss']:.4f}")
    parts.append(duration(p.get("elapsed_s")))
    if p.get("eta_s") is not None:
        parts.append(f"ETA {duration(p['eta_s'])}")
    return ", ".join(parts)


def run_label(p: dict) -> str:
    return f"{p.get('method', '?')} {p.get('bits', '?')} bits seed {p.get('seed', '?')}"


class LiveLine:
    """One line per run on a terminal: rewritten in place in a TTY, printed at most every ``log_interval_s``
    otherwise (logs of SLURM jobs and CI stay short)."""

    def __init__(self, stream: Optional[TextIO] = None, log_interval_s: float = 60.0):
        self._stream = stream  # None: sys.stdout when writing (ddp_spawn pickles the callbacks; a stream cannot be)
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_interval_s = log_interval_s
        self.printed_at = float("-inf")
        self.shown = False

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stream": None}  # a spawned process writes to its own stdout

    def update(self, text: str) -> None:
        if self.tty:
            width = _terminal_width()
            self.stream.write("\r\x1b[K" + text[: width - 1])
            self.shown = True
        elif time.monotonic() - self.printed_at >= self.log_interval_s:
            self.stream.write(text + "\n")
            self.printed_at = time.monotonic()
        self.stream.flush()

    def clear(self) -> None:
        """The run ended: its line goes, so the result line takes its place."""
        if self.tty and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        self.shown = False


def _terminal_width() -> int:
    with contextlib.suppress(OSError, ValueError):
        return os.get_terminal_size().columns
    return 120


class RunProgress(Callback):
    """``progress.json`` in the run folder (``trainer.default_root_dir``) every epoch; a live line if ``show``."""

    def __init__(self, method: str = "", bits: Optional[int] = None, seed: Optional[int] = None, show: bool = False,
                 line: Optional[LiveLine] = None):
        self.identity = {"method": method, "bits": bits, "seed": seed}
        self.line = (line or LiveLine()) if show else None
        self.started = time.monotonic()
        self.first_epoch = 0
        self.record: dict = {}

    def _path(self, trainer) -> Path:
        return Path(trainer.default_root_dir) / PROGRESS_FILE

    def _write(self, trainer, state: str, epoch: int, loss: Optional[float] = None, **extra) -> None:
        if not trainer.is_global_zero:
            return
        elapsed = time.monotonic() - self.started
        done_here = epoch - self.first_epoch  # epochs this process trained (a resumed run's earlier ones took no time)
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else None
        eta = elapsed / done_here * (max_epochs - epoch) if done_here > 0 and max_epochs else None
        self.record = {**self.identity, "state": state, "epoch": epoch, "max_epochs": max_epochs, "loss": loss,
                       "elapsed_s": round(elapsed, 1), "eta_s": None if eta is None else round(eta, 1),
                       "updated": time.time(), "host": socket.gethostname(), "pid": os.getpid(), **extra}
        path = self._path(trainer)
        with contextlib.suppress(OSError):  # progress is a courtesy: a full disk must not stop the run here
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomically(path, self.record)
        if self.line is not None and state == "running" and (self.line.tty or epoch > self.first_epoch):
            self.line.update(f"  {run_label(self.record)}: {progress_text(self.record)}")

    def on_train_start(self, trainer, pl_module) -> None:
        self.started = time.monotonic()
        self.first_epoch = trainer.current_epoch  # > 0 when resumed from a checkpoint
        self._write(trainer, "running", trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = trainer.callback_metrics
        loss = next((float(metrics[k]) for k in LOSS_KEYS if k in metrics), None)
        self._write(trainer, "running", trainer.current_epoch + 1, loss)

    def on_train_end(self, trainer, pl_module) -> None:
        self._write(trainer, "testing", trainer.current_epoch, self.record.get("loss"))

    def on_test_end(self, trainer, pl_module) -> None:
        if self.record:  # tested after this fit: the run is done (its result is written next)
            self._write(trainer, "finished", self.record["epoch"], self.record.get("loss"))

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        state = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
        self._write(trainer, state, self.record.get("epoch", trainer.current_epoch), self.record.get("loss"),
                    error=f"{type(exception).__name__}: {str(exception).strip().splitlines()[0] if str(exception).strip() else ''}")
        if self.line is not None:
            self.line.clear()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self.line is not None:
            self.line.clear()


class ProgressBoard:
    """One line per running run when several train at once (parallel sweeps): fed from their progress.json files.

    In a TTY the block of live lines is redrawn in place and a run's line collapses into its result line (printed
    above the block, where it stays); not a TTY: a run's line is printed when its epoch changes, at most every
    ``log_interval_s`` seconds per run, and its result line when it ends."""

    def __init__(self, stream: Optional[TextIO] = None, log_interval_s: float = 60.0):
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_interval_s = log_interval_s
        self.lines: dict[str, str] = {}  # run → its live line, in start order
        self.drawn = 0  # live lines on the screen now (TTY)
        self.logged: dict[str, tuple[float, object]] = {}  # run → (when, epoch) last printed (not a TTY)

    @staticmethod
    def read(run_dir: Path) -> Optional[dict]:
        try:
            return json.loads((Path(run_dir) / PROGRESS_FILE).read_text())
        except (OSError, ValueError):
            return None

    def update(self, key: str, progress: dict) -> None:
        text = f"  {run_label(progress)}: {progress_text(progress)}"
        self.lines[key] = text
        if self.tty:
            self._redraw()
            return
        when, epoch = self.logged.get(key, (float("-inf"), None))
        if progress.get("epoch") != epoch and time.monotonic() - when >= self.log_interval_s:
            self.stream.write(text + "\n")
            self.logged[key] = (time.monotonic(), progress.get("epoch"))
        self.stream.flush()

    def finish(self, key: str, result_line: str) -> None:
        """The run ended: its live line gives way to ``result_line``."""
        self.lines.pop(key, None)
        self.logged.pop(key, None)
        if self.tty:
            self._erase()
            self.stream.write(result_line + "\n")
            self._redraw(erased=True)
        else:
            self.stream.write(result_line + "\n")
            self.stream.flush()

    def clear(self) -> None:
        """Remove the live lines (the sweep ended or was stopped); result lines stay."""
        if self.tty:
            self._erase()
            self.stream.flush()
        self.lines.clear()
        self.logged.clear()

    def _erase(self) -> None:
        if self.drawn:  # to the first live line, then clear to the end of the screen
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
        self.drawn = 0

    def _redraw(self, erased: bool = False) -> None:
        if not erased:
            self._erase()
        width = _terminal_width()
        for text in self.lines.values():
            self.stream.write(text[: width - 1] + "\n")
        self.drawn = len(self.lines)
        self.stream.flush()
