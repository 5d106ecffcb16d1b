"""``hashbench compare … --status``: the grid of this command as a table, from the results folder alone.

Each run of the grid is found by its run folder (config hash + code, as compare names it) and shown as

* finished   ``result.json`` is there: the headline mAP and the run's time;
* running    ``progress.json`` (``callbacks/run_progress.py``) of a live process or job: epoch e/E, loss, elapsed, ETA;
* queued     a submitted job (``jobs.json``) that has not started training;
* failed     a job that ended without a result, or a run a compare recorded as failed: the error and the log path;
* stopped    a run whose process is gone mid-training (killed, Ctrl-C): the same command resumes it;
* not started.

It reads files only (plus ``squeue`` for SLURM jobs when it is on PATH), so it works for runs of other processes,
other machines sharing the folder, and SLURM jobs.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

from callbacks.run_progress import PROGRESS_FILE, duration, progress_text

from .sweep_locks import alive_pid

JOBS_FILE = "jobs.json"
STATES = ("finished", "running", "queued", "failed", "stopped", "not started")


def read_jobs(out: Path) -> list[dict]:
    try:
        return list(json.loads((out / JOBS_FILE).read_text()).get("jobs", []))
    except (OSError, ValueError, AttributeError):
        return []


def latest_jobs(jobs: list[dict]) -> dict[str, dict]:
    """The newest job of every run folder."""
    latest: dict[str, dict] = {}
    for job in jobs:
        latest[job["run_dir"]] = job
    return latest


def plan(runner, cells, config_hash) -> list[dict]:
    """Every cell with its run folder (config hash + code, as compare names it; ``config_hash``: compare's)."""
    planned = []
    for cell in cells:
        digest = config_hash(runner.cli_args(cell))
        planned.append({"cell": cell, "run_dir": runner.run_dir(cell, digest)})
    return planned


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _log(job: dict) -> str:
    return job.get("stderr") or job.get("stdout") or "?"


def _expand(task_spec: str) -> list[str]:
    """squeue's ``[0-3,7%2]`` (pending array tasks) → ['0', '1', '2', '3', '7']."""
    tasks = []
    for part in task_spec.split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit():
            tasks += [str(i) for i in range(int(lo), int(hi or lo) + 1)]
    return tasks


def slurm_queue(job_ids: list[str]) -> Optional[dict[str, str]]:
    """SLURM's state (PENDING, RUNNING, ...) of every listed job still in the queue; None without squeue."""
    if not job_ids or shutil.which("squeue") is None:
        return None
    bases = sorted({j.split("_")[0] for j in job_ids})
    try:
        out = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(bases)], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    states = {}
    for line in out.splitlines():
        job, _, state = line.strip().partition(" ")
        base, _, task = job.partition("_")
        if task.startswith("["):
            for t in _expand(task.strip("[]")):
                states[f"{base}_{t}"] = state
        else:
            states[job] = state
    return states


def job_state(job: dict, queue: Optional[dict] = None) -> tuple[str, str]:
    """(queued | running | failed | ended | unknown, detail) of one submitted job."""
    result = Path(job.get("result", ""))
    if result.is_file():
        try:
            import submitit
            outcome, value = submitit.core.utils.pickle_load(result)[:2]
        except Exception as err:  # noqa: BLE001 - an unreadable result is reported, not a traceback
            return "failed", f"unreadable job result {result} ({type(err).__name__}); log {_log(job)}"
        if outcome == "success":
            return "ended", ""
        lines = [ln for ln in str(value).strip().splitlines() if ln.strip()]
        return "failed", f"{lines[-1].strip() if lines else 'error'}; log {_log(job)}"
    if job.get("launcher") == "slurm":
        if queue is None:
            queue = slurm_queue([job["job_id"]])
        if queue is None:
            return "unknown", f"job {job['job_id']} (squeue not available here)"
        state = queue.get(job["job_id"])
        if state is None:
            return "failed", (f"job {job['job_id']} left the queue without a result (cancelled, out of memory or a "
                              f"node failure?); log {_log(job)}")
        return ("queued" if state in ("PENDING", "CONFIGURING", "REQUEUED") else "running"), f"job {job['job_id']} {state}"
    alive = alive_pid(job.get("host"), job.get("job_id"))
    if alive is None:
        return "unknown", f"job {job['job_id']} on {job.get('host')}"
    if alive:
        return "running", f"job {job['job_id']}"
    return "failed", f"job {job['job_id']} ended without a result (killed?); log {_log(job)}"


def cell_status(run_dir: Path, digest: str, cell, job: Optional[dict], queue: Optional[dict],
                failed_rows: dict) -> tuple[str, str]:
    """(state, detail) of one cell of the grid."""
    row = _read_json(run_dir / "result.json")
    if row is not None:
        key = row.get("headline", "mAP")
        score = f"{key} {row[key]:.4f}" if isinstance(row.get(key), (int, float)) else "no score"
        return "finished", f"{score} ({duration(row.get('total_seconds'))})"
    js = job_state(job, queue) if job else None
    progress = _read_json(run_dir / PROGRESS_FILE)
    if progress and progress.get("state") in ("running", "testing"):
        alive = js[0] in ("running", "unknown") if js else alive_pid(progress.get("host"), progress.get("pid"))
        age = time.time() - float(progress.get("updated", time.time()))
        where = f"job {job['job_id']}" if job else f"pid {progress.get('pid')} on {progress.get('host')}"
        if js and js[0] == "failed":
            return "failed", f"at epoch {progress.get('epoch')}/{progress.get('max_epochs')}: {js[1]}"
        if js and js[0] == "queued":  # requeued (preempted, time limit): it resumes from its last epoch
            return "queued", f"requeued at epoch {progress.get('epoch')}/{progress.get('max_epochs')} ({js[1]})"
        if alive is False:
            return "stopped", (f"at epoch {progress.get('epoch')}/{progress.get('max_epochs')} ({where} is gone); the "
                               "same command resumes it from its last epoch")
        testing = ", testing" if progress["state"] == "testing" else ""
        return "running", f"{progress_text(progress)}{testing} ({where}, updated {duration(age)} ago)"
    if js:
        state, detail = js
        if state == "running":
            return "running", f"starting ({detail})"
        if state in ("queued", "failed"):
            return state, detail
        if state == "ended":
            return "failed", f"job {job['job_id']} ended but wrote no result.json; log {_log(job)}"
        return "queued", detail  # unknown: submitted from here, state not visible
    if progress and progress.get("state") in ("failed", "interrupted"):
        return ("failed" if progress["state"] == "failed" else "stopped"), progress.get("error") or progress["state"]
    failed = failed_rows.get((cell.method, cell.bits, cell.seed, digest))
    if failed:
        return "failed", f"{failed.get('error', '')} (run folder {run_dir})"
    return "not started", ""


def status_rows(runner, config_hash) -> list[dict]:
    """One dict per cell of the runner's grid: method, bits, seed, state, detail, run_dir."""
    jobs = latest_jobs(read_jobs(runner.out))
    slurm_ids = [j["job_id"] for j in jobs.values() if j.get("launcher") == "slurm"]
    queue = slurm_queue(slurm_ids) if slurm_ids else None
    try:
        recorded = json.loads((runner.out / "runs.json").read_text())
    except (OSError, ValueError):
        recorded = []
    failed_rows = {(r.get("method"), int(r.get("bits", 0)), int(r.get("seed", 0)), r.get("config_hash")): r
                   for r in recorded if isinstance(r, dict) and r.get("status") == "failed"}
    rows = []
    for item in plan(runner, runner.grid(), config_hash):
        cell, run_dir = item["cell"], item["run_dir"]
        digest = run_dir.name[len(cell.label) + 1:].split("-")[0]
        state, detail = cell_status(run_dir, digest, cell, jobs.get(run_dir.name), queue, failed_rows)
        rows.append({"method": cell.method, "bits": cell.bits, "seed": cell.seed, "state": state, "detail": detail,
                     "run_dir": str(run_dir)})
    return rows


def table(rows: list[dict]) -> str:
    width = max([len(r["method"]) for r in rows] + [6])
    lines = [f"  {'method':{width}s} {'bits':>5s} {'seed':>5s}  {'state':11s} detail"]
    for r in rows:
        lines.append(f"  {r['method']:{width}s} {r['bits']:5d} {r['seed']:5d}  {r['state']:11s} {r['detail']}".rstrip())
    return "\n".join(lines)


def show_status(args, overrides, runner_class, config_hash) -> list[dict]:
    runner = runner_class(args, overrides)
    rows = status_rows(runner, config_hash)
    counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
    said = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    print(f"{runner.shown}/: {len(rows)} runs: {said}", flush=True)
    print(table(rows), flush=True)
    return rows
