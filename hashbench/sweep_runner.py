"""The runs of one comparison: decide for every cell (keep a finished run, train it, or wait for another compare
that trains it), train in this process, in worker processes (``--parallel``), or follow rank 0 (a DDP rank), then
rebuild the tables. Results and messages are the same whichever way the runs were trained."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from . import sweep_parallel
from .provenance import code_version, row_code_text
from .runs import is_global_zero
from .sweep_config_hash import config_hash
from .sweep_configs import RunConfigs
from .sweep_grid import Cell, grid
from .sweep_locks import WORKER_ENV, Decisions, RunLock, SharedPlan
from .sweep_results import ResultsStore, headline_section, result_line
from .sweep_run import fit_and_test, first_line


@dataclass
class Planned:
    """A cell to train: where, with which arguments, and the head of its line (``[i/n] method bits seed:``)."""
    cell: Cell
    cell_args: list[str]
    digest: str
    run_dir: Path
    head: str

    def to_json(self) -> dict:
        return {**asdict(self), "cell": asdict(self.cell), "run_dir": str(self.run_dir)}

    @classmethod
    def from_json(cls, d: dict) -> "Planned":
        return cls(Cell(**d["cell"]), list(d["cell_args"]), d["digest"], Path(d["run_dir"]), d["head"])


class SweepRunner:
    """The runs of one comparison and its results folder."""

    def __init__(self, args: argparse.Namespace, overrides: list[str], argv: Optional[list[str]] = None):
        self.args, self.overrides = args, overrides
        self.argv = argv  # the command as typed: --parallel starts its workers with it
        self.shown = Path(args.out) / args.name  # as the user wrote it, in messages
        self.out = self.shown.absolute()  # for files: helper processes (W&B) may run in another directory
        self.runs_dir = self.out / "runs"
        self.writer = is_global_zero()  # DDP: rank 0 prints and writes, the other ranks only train
        self.code = code_version()  # what trains every run of this sweep
        self.followed = False  # a DDP run: other ranks follow this process' decisions
        self.uses_wandb = False
        self.wandb_mode: Optional[str] = None  # WANDB_MODE the runs logged with (each run restores it)
        self.plan = SharedPlan.from_env()  # set in a worker compare of --parallel
        self.configs = RunConfigs(args, overrides, self.out / "configs", self.writer)
        self.results = ResultsStore(args, overrides, self.out, self.code, self.say, self.writer)
        self.done = 0

    def say(self, text: str = "") -> None:
        if not self.writer:
            return
        if self.plan is None:
            print(text, flush=True)
        else:  # a --parallel worker shares the terminal with the others: one write per line, never half a line
            sys.stdout.flush()
            os.write(sys.stdout.fileno(), (text + "\n").encode())

    def cli_args(self, cell: Cell) -> list[str]:
        return self.configs.cli_args(cell)

    def run(self, cell: Cell, cell_args: list[str], run_dir: Path, digest: str) -> dict:
        """Fit + test one configuration in this process; its row (also written to ``run_dir/result.json``)."""
        outcome = fit_and_test(cell, cell_args, run_dir, digest, out=self.out, examples=self.args.examples,
                               verbose=self.args.verbose, writer=self.writer, code_row=self.code.as_row(),
                               live=self.plan is None)  # --parallel: the leader draws every running run's line
        self.uses_wandb |= outcome.logged_to_wandb
        if outcome.logged_to_wandb:
            self.wandb_mode = outcome.wandb_mode
        self.followed |= outcome.world_size > 1
        self.results.write_result(run_dir, outcome.row)
        return outcome.row

    # -- deciding ---------------------------------------------------------------------------------------
    def _to_train(self, cells: list[Cell]) -> Iterator[Planned]:
        """The cells to train, in order; says which finished runs are kept (decided one cell at a time, so a run
        another compare finishes meanwhile is kept)."""
        a = self.args
        for i, cell in enumerate(cells, 1):
            cell_args = self.cli_args(cell)
            digest = config_hash(cell_args)
            run_dir = self.results.run_dir(cell, digest)
            head = f"[{i}/{len(cells)}] {cell.method:7s} {cell.bits:4d} bits seed {cell.seed}:"
            ours, other = self.results.previous(cell, digest)
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
            yield Planned(cell, cell_args, digest, run_dir, head)

    # -- training ---------------------------------------------------------------------------------------
    def _train_all(self, planned: Iterable[Planned], failed: list[dict],
                   take: Callable[[int], bool] = lambda n: True) -> None:
        """Rank 0: train every planned run this process ``take``s, unless another compare holds it (those are
        waited for at the end, then kept or trained)."""
        waiting = []
        for n, item in enumerate(planned):
            if not take(n):
                continue
            lock = RunLock(self.runs_dir, item.run_dir.name)
            if not lock.acquire(wait=False):
                self.say(f"{item.head} run {item.run_dir.name} is being trained by another compare ({lock.owner()}); "
                         "skipped for now, collected when this sweep's other runs are done")
                waiting.append((item, lock))
                continue
            self._train_locked(item, lock, failed)
        for item, lock in waiting:
            self.say(f"{item.head} waiting for the other compare ({lock.owner()}) to finish {item.run_dir.name} "
                     "(Ctrl-C stops waiting; what finished is kept)")
            lock.acquire(wait=True)
            self._train_locked(item, lock, failed)

    def _train_locked(self, item: Planned, lock: RunLock, failed: list[dict]) -> None:
        """Train one cell while holding its lock, unless another compare finished it meanwhile."""
        cell, run_dir = item.cell, item.run_dir
        try:
            if (run_dir / "result.json").is_file() and not self.args.force:
                self.say(f"{item.head} finished by another compare, kept ({run_dir.name})")
            else:
                if self.args.force and run_dir.exists():
                    shutil.rmtree(run_dir)
                self.decisions.publish({"action": "train", "method": cell.method, "bits": cell.bits,
                                        "seed": cell.seed, "digest": item.digest, "run_dir": run_dir.name})
                row = self._train(cell, item.cell_args, run_dir, item.digest, failed)
                if self.plan is None or row.get("status") != "ok":  # --parallel: the leader prints finished runs
                    self.say(f"{item.head} {result_line(row)}")
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
                   "error": f"{type(err).__name__}: {first_line(err)}", **self.code.as_row(), "config_hash": digest}
            failed.append(row)
            return row

    # -- the sweep ----------------------------------------------------------------------------------------
    def grid(self) -> list[Cell]:
        """The runs of this command, in order (a submitted job narrows it to its one cell)."""
        return grid(self.args)

    def run_dir(self, cell: Cell, digest: str) -> Path:
        return self.results.run_dir(cell, digest)

    def main(self) -> list[dict]:
        if self.plan is not None:
            return self._main_worker()
        a = self.args
        cells = self.grid()
        slots = sweep_parallel.gpu_slots(a.parallel, a.gpus_per_run) if a.parallel > 1 else []
        baselines = f" + baselines {', '.join(a.baseline_names)}" if a.baseline_names else ""
        trained = [m for m in a.methods if m not in a.baseline_names]
        self.say(f"hashbench compare: {len(cells)} runs ({', '.join(trained) or '-'}{baselines} × "
                 f"{', '.join(map(str, a.bits))} bits × seeds {', '.join(map(str, a.seeds))}) → {self.shown}/")
        if self.writer:  # every run's config files exist before DDP's launcher starts the other ranks (they read them)
            for cell in cells:
                self.cli_args(cell)
        # how the runs are launched: here (below), --parallel workers on this machine; other launchers plug in here
        if slots:
            return self._main_parallel(cells, slots)
        self.decisions = Decisions(self.out, leader=self.writer)
        failed: list[dict] = []
        try:
            if self.writer:
                self._train_all(self._to_train(cells), failed)
            else:
                self._follow(failed)
        except KeyboardInterrupt:
            self._interrupted(len(cells), failed)
        finally:
            self.decisions.publish({"action": "end"})
            self.decisions.close(followers=self.followed)
        return self._finish(failed)

    def _interrupted(self, total: int, failed: list[dict]) -> None:
        rows = self.results.write_report(failed)
        self.say(f"\ninterrupted after {self.done} of {total} runs; "
                 f"{sum(r.get('status') == 'ok' for r in rows)} finished runs are in {self.shown}/ (summary.md, "
                 "figures). Run the same command again to continue: finished runs are skipped and the interrupted "
                 "one resumes from its last epoch.")
        raise SystemExit(130) from None

    def _finish(self, failed: list[dict]) -> list[dict]:
        rows = self.results.write_report(failed)
        if self.writer:
            if self.results.summary_text:
                self.say("\n" + headline_section(self.results.summary_text))
            self.say(f"\nresults: {self.shown}/ (summary.md, runs.csv, runs.json, figures *.png, thumbs/)")
            if self.uses_wandb:
                self.results.wandb_summary(rows, self.wandb_mode)
        if failed:
            raise SystemExit(1)
        return rows

    # -- --parallel ---------------------------------------------------------------------------------------
    def _main_parallel(self, cells: list[Cell], slots: list[Optional[str]]) -> list[dict]:
        """The leader: decide every cell here (the kept ones are said now), then N workers train the rest."""
        failed: list[dict] = []
        try:
            planned = list(self._to_train(cells))
        except KeyboardInterrupt:
            self._interrupted(len(cells), failed)
        slots = slots[:len(planned)]
        procs: list = []
        if planned:
            plan = SharedPlan.create(self.out, [p.to_json() for p in planned])
            where = "on CPU" if slots[0] is None else "GPUs " + " | ".join(slots)
            self.say(f"{len(planned)} runs to train, {len(slots)} at a time ({where})")
            try:
                with sweep_parallel.sigterm_as_ctrl_c():
                    sweep_parallel.start_workers(self.argv or [], plan, slots, procs)
                    self._watch(procs, planned)
            except KeyboardInterrupt:
                sweep_parallel.stop_workers(procs)
                failed = self._collect(plan, procs, planned)
                plan.remove()
                self._interrupted(len(cells), failed)
            failed = self._collect(plan, procs, planned)
            plan.remove()
        return self._finish(failed)

    def _watch(self, procs: list, planned: list[Planned], every_s: float = 0.5) -> None:
        """Until every worker ended: one live line per running run (method, bits, seed, epoch e/E, loss, elapsed,
        ETA, from its progress.json), which gives way to the run's result line when its result.json appears."""
        from callbacks.run_progress import ProgressBoard

        board = ProgressBoard()
        pending = {item.run_dir.name: item for item in planned}
        started = time.time() - 1  # a result.json older than this is a --force run's old one, about to be removed
        try:
            while pending:
                ended = all(proc.poll() is not None for proc in procs)
                for name, item in list(pending.items()):
                    result = item.run_dir / "result.json"
                    try:
                        fresh = result.stat().st_mtime >= started
                    except OSError:  # not there (yet), or removed by a --force rerun meanwhile
                        fresh = False
                    if fresh:
                        row = json.loads(result.read_text())  # written atomically by the worker
                        board.finish(name, f"{item.head} {result_line(row)}")
                        del pending[name]
                        continue
                    progress = board.read(item.run_dir)
                    if progress and progress.get("state") in ("running", "testing"):
                        board.update(name, progress)
                if ended:
                    break
                time.sleep(every_s)
        finally:
            board.clear()
        sweep_parallel.wait_all(procs)  # every run shown: the workers are still writing their reports

    def _collect(self, plan: SharedPlan, procs: list, planned: list[Planned]) -> list[dict]:
        """The workers' failed runs and W&B use; a worker that died says which runs it left untrained."""
        failed: list[dict] = []
        for k, proc in enumerate(procs):
            report = plan.read_report(k)
            failed += report.get("failed", [])
            self.uses_wandb |= bool(report.get("uses_wandb"))
            self.wandb_mode = report.get("wandb_mode") or self.wandb_mode
            if proc.returncode not in (0, 130) and not report:
                self.say(f"worker {k} (pid {proc.pid}) exited with code {proc.returncode} (its output is above)")
        self.done += sum((p.run_dir / "result.json").is_file() for p in planned)
        crashed = [proc.returncode for proc in procs if proc.returncode not in (0, 130)]
        if crashed:  # not an interruption: what no worker finished is a failed run (the rerun trains it)
            for item in planned:
                cell = item.cell
                if not (item.run_dir / "result.json").is_file() and not any(
                        (f["method"], f["bits"], f["seed"]) == (cell.method, cell.bits, cell.seed) for f in failed):
                    failed.append({"method": cell.method, "bits": cell.bits, "seed": cell.seed, "status": "failed",
                                   "error": f"not trained: a worker exited with code {crashed[0]}",
                                   **self.code.as_row(), "config_hash": item.digest})
        return failed

    def _main_worker(self) -> list[dict]:
        """A worker compare of --parallel: train the plan's runs it takes; the leader writes the tables."""
        worker = int(os.environ.get(WORKER_ENV, "0"))
        self.decisions = Decisions(self.out, leader=self.writer)
        failed: list[dict] = []
        code = 0
        try:
            if self.writer:
                self._train_all([Planned.from_json(d) for d in self.plan.items()], failed, take=self.plan.claim)
            else:
                self._follow(failed)
        except KeyboardInterrupt:
            code = 130
        finally:
            self.decisions.publish({"action": "end"})
            self.decisions.close(followers=self.followed)
        if self.writer:
            self.plan.write_report(worker, {"failed": failed, "uses_wandb": self.uses_wandb,
                                            "wandb_mode": self.wandb_mode})
        if code:
            raise SystemExit(code)
        return failed
