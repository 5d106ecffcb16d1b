"""One run of a sweep, in this process: fit with its config, test its final weights, and its result row."""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from . import comparison
from .env_scope import restored_env
from .runs import newest_checkpoint
from .sweep_grid import Cell


@dataclass
class RunOutcome:
    row: dict
    logged_to_wandb: bool
    wandb_mode: Optional[str]  # WANDB_MODE the run logged with (the summary run logs the same way)
    world_size: int


def fit_and_test(cell: Cell, cell_args: list[str], run_dir: Path, digest: str, *, out: Path, examples: int,
                 verbose: bool, writer: bool, code_row: dict, live: bool = True) -> RunOutcome:
    """Fit + test one configuration in this process (resuming ``run_dir``'s last checkpoint); its row."""
    from callbacks.feature_cache import FeatureCache
    from callbacks.retrieval import RetrievalEvaluation
    from callbacks.run_progress import RunProgress

    from .lightning_cli import run_cli

    wandb_mode = None
    # LightningCLI turns W&B offline (WANDB_MODE) when no API key is set: that holds for this run only
    with restored_env("WANDB_MODE"):
        cli = run_cli([*cell_args, "--trainer.default_root_dir", str(run_dir.parent), "--run_name", run_dir.name],
                      run=False)
        trainer, model, dm = cli.trainer, cli.model, cli.datamodule
        evaluator = next((c for c in trainer.callbacks if isinstance(c, RetrievalEvaluation)), None)
        if evaluator is None:
            evaluator = RetrievalEvaluation()
            trainer.callbacks.append(evaluator)
        evaluator.save_dir = str(run_dir / "retrieval")
        evaluator.examples = examples
        evaluator.print_results = False  # one line per run here, the table at the end
        trainer.callbacks.append(RunProgress(cell.method, cell.bits, cell.seed, show=live and not verbose))
        if not verbose:
            for cb in trainer.callbacks:  # the per-run line gives the time; no progress bars in a sweep
                if isinstance(cb, FeatureCache):
                    cb.progress = False
        newest = newest_checkpoint(run_dir)  # last.ckpt, or a SLURM requeue checkpoint that got further
        resume = str(newest) if newest is not None else None
        t0 = time.perf_counter()
        try:
            _interruptible(trainer, lambda: trainer.fit(model, datamodule=dm, ckpt_path=resume))
            fit_s = time.perf_counter() - t0
            _interruptible(trainer, lambda: trainer.test(model, datamodule=dm, verbose=False))
        finally:
            _finish_wandb(trainer)  # else the next run's logger writes into this run
        logged_to_wandb = any(type(lg).__name__ == "WandbLogger" for lg in trainer.loggers)
        if logged_to_wandb:
            wandb_mode = os.environ.get("WANDB_MODE")
    results = json.loads((run_dir / "retrieval" / "test_last.json").read_text()) if writer else {}
    metrics = {k: float(v) for k, v in results.get("metrics", {}).items() if k != "mAP"}
    cut_offs = results.get("top_k") or ["all" if getattr(dm, "top_k", None) is None else dm.top_k]
    row = {"method": cell.method, "display": type(model).__name__, "bits": cell.bits, "seed": cell.seed,
           "status": "ok", "dataset": getattr(dm, "display_name", "") or getattr(dm, "dataset_name", "")
           or type(dm).__name__,
           "protocol": getattr(dm, "protocol", ""), "backbone": str(model.hparams.get("backbone", "")),
           "headline": f"mAP@{cut_offs[0]}",  # the evaluation's first cut-off: the protocol's unless overridden
           "supervised": bool(getattr(model, "supervised", False)), "baseline": bool(getattr(model, "baseline", False)),
           **metrics, "fit_seconds": round(fit_s, 2), "total_seconds": round(time.perf_counter() - t0, 2),
           "epochs": trainer.current_epoch, "num_query": results.get("num_query"),
           "num_database": results.get("num_database"), **code_row, "config_hash": digest,
           "resumed_from": resume, "finished": now(), "curves": results.get("curves", {}),
           "bit_plus_rate": results.get("bit_plus_rate", []), "examples": results.get("examples", [])}
    if writer:
        _save_thumbnails(out, dm, row["examples"])
    return RunOutcome(row, logged_to_wandb, wandb_mode, trainer.world_size)


def _save_thumbnails(out: Path, dm, examples: list) -> None:
    image = getattr(dm, "image", None)
    if not examples or image is None:
        return
    wanted = {("query", int(e["query"])) for e in examples}
    wanted |= {("database", int(i)) for e in examples for i in e.get("retrieved", [])}
    missing = {k for k in wanted if not (out / "thumbs" / f"{k[0]}_{k[1]}.png").is_file()}
    if missing:
        with contextlib.suppress(Exception):  # figures are a courtesy: never lose a finished run to them
            comparison.save_thumbnails(out, {k: image(*k) for k in sorted(missing)})


def _interruptible(trainer, fn) -> None:
    """Lightning turns Ctrl-C into a graceful stop and ``exit(1)``; here it is an interruption of the sweep."""
    try:
        fn()
    except SystemExit:
        if getattr(trainer, "interrupted", False):
            raise KeyboardInterrupt from None
        raise
    if getattr(trainer, "interrupted", False):
        raise KeyboardInterrupt


def _finish_wandb(trainer) -> None:
    """Close this run's W&B run: its logger's run is W&B's current run (``wandb.run``), if one was started."""
    if any(type(lg).__name__ == "WandbLogger" for lg in trainer.loggers):
        import wandb

        if wandb.run is not None:
            wandb.run.finish()


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextlib.contextmanager
def quiet(verbose: bool) -> Iterator[None]:
    """Lightning's per-run chatter (device lines, tips, warnings about this toy-sized loader) off, unless --verbose."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"lightning(\.|$)")
        warnings.filterwarnings("ignore", message=r".*(does not have many workers|smaller than the logging interval"
                                                  r"|treespec).*")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)
