"""``hashbench compare``: methods × code lengths × seeds, with the LSH and ITQ baselines, into one results folder.

    hashbench compare --config experiments/data/mnist.yaml --methods cib,bihalf,dch,greedy --bits 16,32,64 \\
        --seeds 3 --name mnist   [any LightningCLI override, e.g. --trainer.max_epochs 5]

Every run fits with its method's official schedule (its class's ``paper_settings``) on the splits of YOUR data
config (all methods share them), then is tested on the test queries with its final weights. Configs are stacked
``<method's settings> → --config files → --method-config <file>[method] → bits/seed → your overrides``.

The folder never loses work: each run lives in
``results/<name>/runs/<method>_<bits>b_seed<seed>-<config hash>-<code id>/`` with its checkpoints and
``result.json``. A run is identified by its resolved config AND the code that trains it (``hashbench/provenance.py``:
the suite's sources; summaries name the commit and flag uncommitted changes). A rerun of the same command skips the
runs that finished with the same config and code, reruns the ones finished by other code (``--keep-old-code`` keeps
them instead, marked in runs.csv and summary.md), resumes an interrupted one from its last epoch, runs the rest, and
rebuilds ``runs.csv``, ``runs.json``, ``summary.md`` and the figures from every finished run of this code;
``--force`` reruns. Ctrl-C keeps what finished and writes the summary of it. Under DDP only rank 0 prints and
writes. Two compares on one folder never train the same run: a run being trained by another compare is skipped,
then waited for at the end (``hashbench/sweep_locks.py``).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from hashcore.registry import get_method, method_names, resolve_method_name

from . import comparison, paper_settings
from .config_files import resolve as resolve_config
from .env_scope import restored_env
from .errors import ConfigError
from .provenance import code_version, row_code_text
from .runs import LAST, checkpoint_dir, is_global_zero
from .sweep_locks import Decisions, RunLock, atomic_write_text, results_lock

DEFAULT_BASELINES = ("lsh", "itq")
#: resolved-config keys that do not change a result (where it is written, how much is printed)
NOT_HASHED = ("run_name", "trainer.default_root_dir", "trainer.logger", "trainer.enable_progress_bar",
              "trainer.enable_model_summary", "trainer.log_every_n_steps", "data.init_args.num_workers")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hashbench compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True, help="LightningCLI config(s): data, trainer, ...")
    p.add_argument("--methods", default="cib,bihalf,dch,greedy",
                   help=f"comma list of {', '.join(method_names())}; 'all' = every method that reads images "
                        f"({', '.join(all_image_methods())}), i.e. all but the autoencoder study's, which read flat "
                        "binarised pixels (their class sets image_input = False)")
    p.add_argument("--bits", default="16,32,64", help="comma list of code lengths")
    p.add_argument("--seeds", default="1", help="a count N (seeds 0..N-1) or a comma list of seeds (one seed: --seeds 5,)")
    p.add_argument("--baselines", default=",".join(DEFAULT_BASELINES),
                   help="classic baselines added to every comparison (on the same features and splits); '' for none")
    p.add_argument("--method-config", default=None,
                   help="YAML mapping a method name to LightningCLI overrides for that method only (e.g. its epochs)")
    p.add_argument("--name", default=None, help="results folder name (default: the first config's stem)")
    p.add_argument("--out", default="results", help="parent folder of the results")
    p.add_argument("--examples", type=int, default=5, help="fixed test queries shown in retrieval_examples.png")
    p.add_argument("--force", action="store_true", help="rerun runs that already finished")
    p.add_argument("--keep-old-code", action="store_true",
                   help="keep runs finished by other code (another commit or uncommitted changes) instead of rerunning "
                        "them; they are marked in runs.csv (other_code) and summary.md")
    p.add_argument("--verbose", action="store_true", help="show Lightning's own output (progress, tables, tips)")
    return p


def all_image_methods() -> list[str]:
    """What ``--methods all`` runs: every registered method that reads images (learned and closed form)."""
    return [name for name in method_names() if get_method(name).image_input]


@dataclass(frozen=True)
class Cell:
    method: str
    bits: int
    seed: int

    @property
    def label(self) -> str:
        return f"{self.method}_{self.bits}b_seed{self.seed}"


def _ints(text: str, what: str, p: argparse.ArgumentParser) -> list[int]:
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        p.error(f"--{what} takes integers, e.g. --bits 16,32,64 --seeds 3")


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = _parser()
    args, overrides = p.parse_known_args(argv)
    try:
        names = [m.strip() for m in args.methods.split(",") if m.strip()]
        names = [n for m in names for n in (all_image_methods() if m.lower() == "all" else [m])]
        methods = [resolve_method_name(m) for m in names]
        baselines = [resolve_method_name(m) for m in args.baselines.split(",") if m.strip()]
        for name in methods + baselines:  # every run's official schedule exists before the first run starts
            paper_settings.settings_of(name)
    except ValueError as err:
        p.error(str(err))
    args.methods = list(dict.fromkeys(methods + [b for b in baselines if b not in methods]))
    args.baseline_names = [m for m in args.methods if get_method(m).baseline]
    args.bits = _ints(args.bits, "bits", p)
    if not args.bits or any(b < 1 or b > 4096 for b in args.bits):
        p.error(f"--bits must be code lengths between 1 and 4096, got {args.bits!r}")
    seeds = _ints(args.seeds, "seeds", p)
    if "," not in args.seeds:
        if not seeds or seeds[0] < 1:
            p.error(f"--seeds N runs seeds 0..N-1, so N must be at least 1 (got {args.seeds!r}); "
                    "for particular seeds give a comma list: --seeds 0, (seed 0 alone) or --seeds 3,4")
        seeds = list(range(seeds[0]))
    args.seeds = seeds
    if args.examples < 0:
        p.error("--examples must be >= 0")
    try:
        args.config = [resolve_config(c) for c in args.config]
        args.method_overrides = _method_overrides(args.method_config)
    except ValueError as err:  # ConfigError, or an unknown method name in the --method-config file
        p.error(str(err))
    args.name = args.name or Path(args.config[0]).stem
    return args, overrides


def _method_overrides(path: Optional[str]) -> dict:
    if not path:
        return {}
    data = yaml.safe_load(Path(resolve_config(path)).read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"--method-config {path}: expected a mapping of method name to config overrides")
    return {resolve_method_name(k): v for k, v in data.items()}


# ------------------------------------------------------------------------------------------------ one run
class _Parsed(Exception):
    def __init__(self, config: dict):
        self.config = config


def _drop(cfg: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        cfg = cfg.get(key) if isinstance(cfg, dict) else None
        if cfg is None:
            return
    if isinstance(cfg, dict):
        cfg.pop(leaf, None)


def config_hash(args: list[str]) -> str:
    """12 hex digits of the resolved configuration (LightningCLI's own parse, nothing instantiated)."""
    from .lightning_cli import HashbenchCLI, run_cli

    class ParseOnly(HashbenchCLI):
        """Stops at LightningCLI's public ``before_instantiate_classes`` hook with the parsed config (a subclass per
        call, so two sweeps in one process never see each other's hook)."""

        def before_instantiate_classes(self) -> None:
            raise _Parsed(yaml.safe_load(self.parser.dump(self.config, skip_none=False)))

    try:
        run_cli(args, run=False, cli_class=ParseOnly)
    except _Parsed as parsed:
        cfg = parsed.config
    for key in NOT_HASHED:
        _drop(cfg, key)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]


class SweepRunner:
    """The runs of one comparison and its results folder."""

    def __init__(self, args: argparse.Namespace, overrides: list[str]):
        self.args, self.overrides = args, overrides
        self.shown = Path(args.out) / args.name  # as the user wrote it, in messages
        self.out = self.shown.absolute()  # for files: helper processes (W&B) may run in another directory
        self.runs_dir = self.out / "runs"
        self.configs_dir = self.out / "configs"
        self.writer = is_global_zero()  # DDP: rank 0 prints and writes, the other ranks only train
        self.code = code_version()  # what trains every run of this sweep
        self.followed = False  # a DDP run: other ranks follow this process' decisions
        self.uses_wandb = False
        self.wandb_mode: Optional[str] = None  # WANDB_MODE the runs logged with (each run restores it)
        self.summary_text, self.info = "", None
        self.data_class = self._data_class()  # read once: every method file names it

    def say(self, text: str = "") -> None:
        if self.writer:
            print(text, flush=True)

    # -- configs --------------------------------------------------------------------------------------
    def _data_class(self) -> Optional[str]:
        """The data class of the user's configs (the method files below name it so their batch size merges)."""
        found = None
        for c in self.args.config:
            with contextlib.suppress(OSError, yaml.YAMLError, AttributeError, TypeError):
                found = (yaml.safe_load(Path(c).read_text()) or {}).get("data", {}).get("class_path") or found
        return found

    def _method_file(self, cell: Cell) -> str:
        """The method's official schedule and batch size; the user's configs (after it) decide the data."""
        cfg = paper_settings.method_config(cell.method, protocol_settings=False, select=False)
        cfg["trainer"]["max_epochs"] = paper_settings.epochs_for(cell.method, cell.bits)
        if self.data_class:
            cfg["data"] = {"class_path": self.data_class, "init_args": cfg["data"]["init_args"]}
        else:
            cfg.pop("data")
        path = self.configs_dir / f"{cell.method}_{cell.bits}b.yaml"
        text = yaml.safe_dump(cfg, sort_keys=False)
        if self.writer and (not path.is_file() or path.read_text() != text):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return str(path)

    def _override_file(self, method: str) -> Optional[str]:
        extra = self.args.method_overrides.get(method)
        if not extra:
            return None
        path = self.configs_dir / f"{method}_overrides.yaml"
        if self.writer:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(extra, sort_keys=False))
        return str(path)

    def cli_args(self, cell: Cell) -> list[str]:
        a = ["--config", self._method_file(cell)]
        for c in self.args.config:
            a += ["--config", c]
        extra = self._override_file(cell.method)
        if extra:
            a += ["--config", extra]
        a += ["--model.bits", str(cell.bits), "--seed_everything", str(cell.seed)]
        if not self.args.verbose:
            a += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
        return a + self.overrides

    # -- results --------------------------------------------------------------------------------------
    def _results(self, pattern: str = "*") -> list[dict]:
        rows = []
        for path in sorted(self.runs_dir.glob(f"{pattern}/result.json")):
            with contextlib.suppress(OSError, ValueError):
                rows.append({**json.loads(path.read_text()), "run_dir": path.parent.name})
        return rows

    def _ours(self, row: dict) -> bool:
        return row.get("code_id") == self.code.code_id

    def finished_rows(self) -> list[dict]:
        """Every finished run of this code in the folder, the newest per (method, bits, seed); with
        ``--keep-old-code`` also the newest run of other code where this code has none, marked ``other_code``."""
        newest: dict[tuple, dict] = {}
        self.left_out = []  # finished runs of other code not in the tables (named once by write_report)
        rows = self._results()
        for ours in (True, False):
            for row in (r for r in rows if self._ours(r) == ours):
                key = (row.get("method"), int(row.get("bits", 0)), int(row.get("seed", 0)))
                if not ours and not self.args.keep_old_code:
                    self.left_out.append(row)
                elif key not in newest or (newest[key]["other_code"] == (not ours)
                                           and row.get("finished", "") >= newest[key].get("finished", "")):
                    newest[key] = {**row, "other_code": not ours}
        self.left_out = [r for r in self.left_out
                         if (r.get("method"), int(r.get("bits", 0)), int(r.get("seed", 0))) not in newest]
        return list(newest.values())

    def _previous(self, cell: Cell, digest: str) -> tuple[Optional[dict], Optional[dict]]:
        """The finished runs of this cell's config: (by this code, by other code), the newest of each."""
        rows = sorted(self._results(f"{cell.label}-{digest}*"), key=lambda r: r.get("finished", ""))
        ours = [r for r in rows if self._ours(r)]
        other = [r for r in rows if not self._ours(r)]
        return (ours[-1] if ours else None), (other[-1] if other else None)

    def _write_result(self, run_dir: Path, row: dict) -> None:
        if not self.writer:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "result.json", json.dumps(row, indent=1, default=str))

    def run(self, cell: Cell, cell_args: list[str], run_dir: Path, digest: str) -> dict:
        """Fit + test one configuration in this process; its row (also written to ``run_dir/result.json``)."""
        from callbacks.feature_cache import FeatureCache
        from callbacks.retrieval import RetrievalEvaluation

        from .lightning_cli import run_cli

        # LightningCLI turns W&B offline (WANDB_MODE) when no API key is set: that holds for this run only
        with restored_env("WANDB_MODE"):
            cli = run_cli([*cell_args, "--trainer.default_root_dir", str(self.runs_dir), "--run_name", run_dir.name],
                          run=False)
            trainer, model, dm = cli.trainer, cli.model, cli.datamodule
            evaluator = next((c for c in trainer.callbacks if isinstance(c, RetrievalEvaluation)), None)
            if evaluator is None:
                evaluator = RetrievalEvaluation()
                trainer.callbacks.append(evaluator)
            evaluator.save_dir = str(run_dir / "retrieval")
            evaluator.examples = self.args.examples
            evaluator.print_results = False  # one line per run here, the table at the end
            if not self.args.verbose:
                for cb in trainer.callbacks:  # the per-run line gives the time; no progress bars in a sweep
                    if isinstance(cb, FeatureCache):
                        cb.progress = False
            last = checkpoint_dir(run_dir) / LAST
            resume = str(last) if last.is_file() else None
            t0 = time.perf_counter()
            try:
                _interruptible(trainer, lambda: trainer.fit(model, datamodule=dm, ckpt_path=resume))
                fit_s = time.perf_counter() - t0
                _interruptible(trainer, lambda: trainer.test(model, datamodule=dm, verbose=False))
            finally:
                _finish_wandb(trainer)  # else the next run's logger writes into this run
            if any(type(lg).__name__ == "WandbLogger" for lg in trainer.loggers):
                self.wandb_mode = os.environ.get("WANDB_MODE")  # the summary run logs as the runs did
        results = json.loads((run_dir / "retrieval" / "test_last.json").read_text()) if self.writer else {}
        metrics = {k: float(v) for k, v in results.get("metrics", {}).items() if k != "mAP"}
        cut_offs = results.get("top_k") or ["all" if getattr(dm, "top_k", None) is None else dm.top_k]
        self.uses_wandb |= any(type(lg).__name__ == "WandbLogger" for lg in trainer.loggers)
        self.followed |= trainer.world_size > 1
        row = {"method": cell.method, "display": type(model).__name__, "bits": cell.bits, "seed": cell.seed,
               "status": "ok", "dataset": getattr(dm, "display_name", "") or getattr(dm, "dataset_name", "")
               or type(dm).__name__,
               "protocol": getattr(dm, "protocol", ""), "backbone": str(model.hparams.get("backbone", "")),
               "headline": f"mAP@{cut_offs[0]}",  # the evaluation's first cut-off: the protocol's unless overridden
               "supervised": bool(getattr(model, "supervised", False)), "baseline": bool(getattr(model, "baseline", False)),
               **metrics, "fit_seconds": round(fit_s, 2), "total_seconds": round(time.perf_counter() - t0, 2),
               "epochs": trainer.current_epoch, "num_query": results.get("num_query"),
               "num_database": results.get("num_database"), **self.code.as_row(), "config_hash": digest,
               "resumed_from": resume, "finished": _now(), "curves": results.get("curves", {}),
               "bit_plus_rate": results.get("bit_plus_rate", []), "examples": results.get("examples", [])}
        if self.writer:
            self._save_thumbnails(dm, row["examples"])
        self._write_result(run_dir, row)
        return row

    def _save_thumbnails(self, dm, examples: list) -> None:
        image = getattr(dm, "image", None)
        if not examples or image is None:
            return
        wanted = {("query", int(e["query"])) for e in examples}
        wanted |= {("database", int(i)) for e in examples for i in e.get("retrieved", [])}
        missing = {k for k in wanted if not (self.out / "thumbs" / f"{k[0]}_{k[1]}.png").is_file()}
        if missing:
            with contextlib.suppress(Exception):  # figures are a courtesy: never lose a finished run to them
                comparison.save_thumbnails(self.out, {k: image(*k) for k in sorted(missing)})

    # -- the sweep ------------------------------------------------------------------------------------
    def grid(self) -> list[Cell]:
        a = self.args
        return [Cell(m, b, s) for b in a.bits for m in a.methods for s in a.seeds]

    def summary(self, rows: list[dict], info) -> str:
        """summary.md: what was compared (configs, overrides, code), then the report's tables; rows kept from
        other code (``--keep-old-code``) are announced under the head and listed in a footnote."""
        old = [r for r in rows if r.get("other_code")]
        head = (f"# {self.args.name}\n\n{self.code.text}; configs {', '.join(self.args.config)}; overrides "
                f"{' '.join(self.overrides) or 'none'}\n\n")
        if old:
            head += (f"**{len(old)} of {len(rows)} runs were trained by other code than {self.code.text} "
                     "(kept with --keep-old-code; listed at the end \u2020).**\n\n")
        if info is None:
            body = "No run finished.\n\n" + "\n".join(f"- {r['method']}, {r['bits']} bits, seed {r['seed']}: "
                                                      f"{r.get('error')}" for r in rows)
        else:
            body = comparison.summary_markdown(rows, info)
        if old:
            body = body.rstrip("\n") + "\n\n\u2020 Runs of other code (not " + self.code.text + "):\n\n" + "\n".join(
                f"- {r['method']}, {r['bits']} bits, seed {r['seed']}: {row_code_text(r)} ({r.get('run_dir', '')})"
                for r in sorted(old, key=lambda r: (r["method"], r["bits"], r["seed"]))) + "\n"
        return head + body

    def write_report(self, failed: list[dict]) -> list[dict]:
        """runs.csv/json, summary.md and the figures, from every finished run in the folder (+ this sweep's
        failures). Figures are a courtesy: a plotting problem is reported, never loses the tables."""
        if not self.writer:
            return self.finished_rows() + failed
        with results_lock(self.out):  # another compare on this folder may be writing them too
            rows = self.finished_rows() + [{**r, "other_code": False} for r in failed]
            if self.left_out:
                codes = sorted({row_code_text(r) for r in self.left_out})
                self.say(f"{len(self.left_out)} finished runs of other code ({'; '.join(codes)}) are left out of the "
                         f"tables, which hold {self.code.text} only (--keep-old-code keeps them, marked)")
            comparison.write_rows(self.out, rows)
            try:  # a report problem is said, never loses the finished runs (they are on disk already)
                self.info = comparison.TitleInfo.from_rows(rows) if any(r.get("status") == "ok" for r in rows) else None
                self.summary_text = self.summary(rows, self.info)
                atomic_write_text(self.out / "summary.md", self.summary_text + "\n")
                if self.info is not None:
                    comparison.plot_all(self.out, rows, self.info)
            except Exception as err:  # noqa: BLE001
                self.say(f"summary/figures not written: {type(err).__name__}: {_first_line(err)} (runs.csv and "
                         "runs.json are complete)")
        return rows

    def run_dir(self, cell: Cell, digest: str) -> Path:
        """A run's folder: its config hash and the code that trains it (other code never resumes its checkpoint)."""
        return self.runs_dir / f"{cell.label}-{digest}-{self.code.code_id[:8]}"

    def _lead(self, cells: list[Cell], failed: list[dict]) -> None:
        """Rank 0: decide what happens to every cell (keep, train, or wait for another compare), and do it."""
        a, waiting = self.args, []
        for i, cell in enumerate(cells, 1):
            cell_args = self.cli_args(cell)
            digest = config_hash(cell_args)
            run_dir = self.run_dir(cell, digest)
            head = f"[{i}/{len(cells)}] {cell.method:7s} {cell.bits:4d} bits seed {cell.seed}:"
            ours, other = self._previous(cell, digest)
            if not a.force and ours is not None:
                self.say(f"{head} finished earlier, kept ({ours['run_dir']})")
                self.done += 1
                continue
            if not a.force and other is not None:
                if a.keep_old_code:
                    self.say(f"{head} finished earlier by other code ({row_code_text(other)}), kept as asked by "
                             f"--keep-old-code and marked in the summary ({other['run_dir']})")
                    self.done += 1
                    continue
                self.say(f"{head} finished earlier by other code ({row_code_text(other)}): rerun with "
                         f"{self.code.text} (--keep-old-code keeps such runs)")
            lock = RunLock(self.runs_dir, run_dir.name)
            if not lock.acquire(wait=False):
                self.say(f"{head} run {run_dir.name} is being trained by another compare ({lock.owner()}); skipped "
                         "for now, collected when this sweep's other runs are done")
                waiting.append((head, cell, cell_args, digest, run_dir, lock))
                continue
            self._train_locked(head, cell, cell_args, digest, run_dir, lock, failed)
        for head, cell, cell_args, digest, run_dir, lock in waiting:
            self.say(f"{head} waiting for the other compare ({lock.owner()}) to finish {run_dir.name} "
                     "(Ctrl-C stops waiting; what finished is kept)")
            lock.acquire(wait=True)
            self._train_locked(head, cell, cell_args, digest, run_dir, lock, failed)

    def _train_locked(self, head: str, cell: Cell, cell_args: list[str], digest: str, run_dir: Path, lock: RunLock,
                      failed: list[dict]) -> None:
        """Train one cell while holding its lock, unless another compare finished it meanwhile."""
        try:
            if (run_dir / "result.json").is_file() and not self.args.force:
                self.say(f"{head} finished by another compare, kept ({run_dir.name})")
            else:
                if self.args.force and run_dir.exists():
                    shutil.rmtree(run_dir)
                self.decisions.publish({"action": "train", "method": cell.method, "bits": cell.bits,
                                        "seed": cell.seed, "digest": digest, "run_dir": run_dir.name})
                row = self._train(cell, cell_args, run_dir, digest, failed)
                self.say(f"{head} {_result_line(row)}")
        finally:
            lock.release()
        self.done += 1

    def _follow(self, failed: list[dict]) -> None:
        """A DDP rank other than 0: train exactly the runs rank 0 trains, in its order."""
        while (d := self.decisions.next())["action"] != "end":
            if d["action"] == "train":
                cell = Cell(d["method"], int(d["bits"]), int(d["seed"]))
                self._train(cell, self.cli_args(cell), self.runs_dir / d["run_dir"], d["digest"], failed)

    def _train(self, cell: Cell, cell_args: list[str], run_dir: Path, digest: str, failed: list[dict]) -> dict:
        try:
            return self.run(cell, cell_args, run_dir, digest)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # one failing run must not lose the others
            if self.args.verbose:
                import traceback
                traceback.print_exc()
            row = {"method": cell.method, "bits": cell.bits, "seed": cell.seed, "status": "failed",
                   "error": f"{type(err).__name__}: {_first_line(err)}", **self.code.as_row(), "config_hash": digest}
            failed.append(row)
            return row

    def main(self) -> list[dict]:
        a = self.args
        cells = self.grid()
        baselines = f" + baselines {', '.join(a.baseline_names)}" if a.baseline_names else ""
        trained = [m for m in a.methods if m not in a.baseline_names]
        self.say(f"hashbench compare: {len(cells)} runs ({', '.join(trained) or '-'}{baselines} × "
                 f"{', '.join(map(str, a.bits))} bits × seeds {', '.join(map(str, a.seeds))}) → {self.shown}/")
        if self.writer:  # every run's config files exist before DDP's launcher starts the other ranks (they read them)
            for cell in cells:
                self.cli_args(cell)
        self.decisions = Decisions(self.out, leader=self.writer)
        failed: list[dict] = []
        self.done = 0
        try:
            if self.writer:
                self._lead(cells, failed)
            else:
                self._follow(failed)
        except KeyboardInterrupt:
            rows = self.write_report(failed)
            self.say(f"\ninterrupted after {self.done} of {len(cells)} runs; "
                     f"{sum(r.get('status') == 'ok' for r in rows)} finished runs are in {self.shown}/ (summary.md, "
                     "figures). Run the same command again to continue: finished runs are skipped and the interrupted "
                     "one resumes from its last epoch.")
            raise SystemExit(130) from None
        finally:
            self.decisions.publish({"action": "end"})
            self.decisions.close(followers=self.followed)
        rows = self.write_report(failed)
        if self.writer:
            if self.summary_text:
                self.say("\n" + _headline_section(self.summary_text))
            self.say(f"\nresults: {self.shown}/ (summary.md, runs.csv, runs.json, figures *.png, thumbs/)")
            self._wandb_summary(rows)
        if failed:
            raise SystemExit(1)
        return rows

    def _wandb_summary(self, rows: list[dict]) -> None:
        """One W&B run holding the comparison table and figures (when this sweep's runs logged to W&B)."""
        info = self.info
        if not self.uses_wandb or self.wandb_mode == "disabled" or info is None:
            return
        try:
            comparison.log_wandb_summary(rows, self.out, info, project="hashbench",
                                     group=f"{info.dataset}-{info.protocol}-comparison", name=f"compare-{self.args.name}",
                                     mode=self.wandb_mode)
        except Exception as err:  # noqa: BLE001 - the results folder is complete; W&B is a copy
            self.say(f"W&B summary run not written: {type(err).__name__}: {_first_line(err)}")


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


def _headline_section(summary: str) -> str:
    """The part of summary.md printed at the end of a sweep: everything up to its second section."""
    parts = summary.split("\n## ")
    return "\n## ".join(parts[:3]).strip() if len(parts) > 1 else summary.strip()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _result_line(row: dict) -> str:
    if row.get("status") != "ok":
        return f"FAILED {row.get('error', '')}"
    keys = [row["headline"]] + [k for k in row if k.startswith("mAP@") and k != row["headline"] and "_" not in k
                                and "H<=" not in k]
    shown = ", ".join(f"{k} {row[k]:.4f}" for k in keys if k in row)
    return f"{shown}  ({row.get('total_seconds', 0):.0f} s)"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def _quiet(verbose: bool):
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


def main(argv: list[str]) -> list[dict]:
    args, overrides = parse(argv)
    with _quiet(args.verbose):
        return SweepRunner(args, overrides).main()
