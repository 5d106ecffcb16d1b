"""``hashbench compare … --launcher slurm``: the grid as SLURM jobs through submitit, collected by the same command.

    hashbench compare --config experiments/data/cifar.yaml --methods cib,dch --bits 16,32,64 --seeds 3 --name cifar \\
        --launcher slurm --slurm-partition gpu --slurm-time 4:00:00 --slurm-gpus 1 --slurm-cpus 8 --slurm-mem 32

submits one job per run that is not finished yet (a SLURM job array: ``executor.batch()``), each running the
suite's own per-run path: the same ``hashbench compare`` command restricted to its cell (hidden ``--job-cell``), so
run folders, locks, resume from ``last.ckpt`` and ``result.json`` are exactly a local sweep's. The jobs are listed
in ``<results>/jobs.json`` (job id, cell, run folder, log paths) and submitit keeps their logs under
``<results>/jobs/``. ``--status`` shows the grid; running the same command again submits what is neither finished
nor queued/running (a failed job is resubmitted, its log named), and once every run finished it collects them:
runs.csv, runs.json, summary.md and the figures, as a local sweep writes them. A job that is preempted or reaches
its time limit is requeued by submitit (the job is ``Checkpointable``) and its run resumes from its last epoch.

``--launcher local-submitit`` is submitit's ``LocalExecutor``: the same path with the jobs as local background
processes (the tests use it; handy on a box without SLURM). Why submitit and not another engine: docs/sweeps.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from .errors import ConfigError
from .sweep_locks import atomic_write_text, results_lock
from .sweep_status import JOBS_FILE, job_state, latest_jobs, plan, read_jobs, show_status

LAUNCHERS = ("slurm", "local-submitit")
JOBS_DIR = "jobs"
#: the options that choose and shape the submission; a job's own command is the user's minus these
_SUBMIT_OPTIONS = {"--launcher": 1, "--launcher-config": 1, "--slurm-partition": 1, "--slurm-time": 1,
                   "--slurm-gpus": 1, "--slurm-cpus": 1, "--slurm-mem": 1, "--status": 0, "--job-cell": 1}


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """compare's options for SLURM and for watching a sweep (one block, so compare.py keeps one call)."""
    g = p.add_argument_group("cluster and status (docs/sweeps.md)")
    g.add_argument("--status", action="store_true",
                   help="show the grid instead of running it: finished (mAP), running (epoch e/E, loss, elapsed, "
                        "ETA), queued, failed (log path), from the run folders and jobs.json; for runs of any "
                        "process, machine or SLURM job writing into this results folder")
    g.add_argument("--launcher", choices=LAUNCHERS, default=None,
                   help="submit every unfinished run as a job through submitit instead of training here: 'slurm' "
                        "(sbatch, a job array) or 'local-submitit' (submitit's LocalExecutor: local background "
                        "processes). Run the same command again when the jobs ended: it collects the results")
    g.add_argument("--launcher-config", default=None, metavar="YAML",
                   help="submitit executor parameters, e.g. slurm_partition: gpu, timeout_min: 240, gpus_per_node: 1, "
                        "cpus_per_task: 8, mem_gb: 32, slurm_setup: [module load cuda], slurm_additional_parameters: "
                        "{account: proj}, slurm_array_parallelism: 16; the --slurm-* options override it")
    g.add_argument("--slurm-partition", default=None, help="SLURM partition of every job")
    g.add_argument("--slurm-time", default=None, metavar="TIME",
                   help="time limit per job: minutes, HH:MM:SS or D-HH:MM:SS (requeued and resumed when reached)")
    g.add_argument("--slurm-gpus", type=int, default=None, metavar="N", help="GPUs per job (per run)")
    g.add_argument("--slurm-cpus", type=int, default=None, metavar="N", help="CPU cores per job")
    g.add_argument("--slurm-mem", type=float, default=None, metavar="GB", help="memory per job in GB")
    g.add_argument("--job-cell", default=None, help=argparse.SUPPRESS)  # method,bits,seed: the one run of a job


def dispatch(args: argparse.Namespace, overrides: list[str], argv: list[str], runner_class, config_hash):
    """What ``hashbench compare`` does with these arguments: show the status, submit, run one job's cell, or sweep.
    ``runner_class``/``config_hash``: compare's (handed over, so this module never imports compare)."""
    if args.status:
        return show_status(args, overrides, runner_class, config_hash)
    if args.job_cell:
        return run_job_cell(args, overrides, runner_class)
    if args.launcher:
        return submit(args, overrides, argv, runner_class, config_hash)
    return runner_class(args, overrides).main()


# ------------------------------------------------------------------------------------------------ inside a job
def run_job_cell(args, overrides, runner_class):
    """The cell of one submitted job, through compare's own path (lock, resume, result.json); no tables: the
    command that submitted the jobs writes them once they all finished."""
    wanted = args.job_cell

    class OneCell(runner_class):
        def grid(self):
            cells = [c for c in super().grid() if f"{c.method},{c.bits},{c.seed}" == wanted]
            if not cells:
                raise ConfigError(f"--job-cell {wanted!r} is not a run of this command's grid (it is set by --launcher "
                                  "to method,bits,seed of one run, not by hand)")
            return cells

        def _finish(self, failed):  # no tables, no W&B summary run: the command that submitted the jobs writes them
            if failed:
                raise SystemExit(1)
            return failed

    return OneCell(args, overrides).main()


class CellJob:
    """What a job runs: compare on one cell, as a child process (Lightning's DDP launcher re-runs its command line,
    so a run must be a real ``hashbench compare`` command). Requeued on preemption or time limit (submitit calls
    :meth:`checkpoint`): the rerun resumes the run from its ``last.ckpt``."""

    def __init__(self, command: list[str], cwd: str, label: str):
        self.command, self.cwd, self.label = command, cwd, label

    def __call__(self) -> str:
        print(f"hashbench job: {self.label}: {' '.join(self.command)}", flush=True)
        code = subprocess.run(self.command, cwd=self.cwd).returncode
        if code != 0:
            raise RuntimeError(f"run {self.label} failed: hashbench compare exited with code {code} (its messages are "
                               "above in this job's log)")
        return self.label

    def checkpoint(self, *args, **kwargs):
        import submitit
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def job_command(argv: list[str], cell) -> list[str]:
    """The user's compare command without the submission options, restricted to ``cell``."""
    rest, i = [], 0
    while i < len(argv):
        name = argv[i].split("=", 1)[0]
        if name in _SUBMIT_OPTIONS:
            i += 1 + (_SUBMIT_OPTIONS[name] if "=" not in argv[i] else 0)
            continue
        rest.append(argv[i])
        i += 1
    return [sys.executable, "-m", "hashbench", "compare", *rest, "--job-cell", f"{cell.method},{cell.bits},{cell.seed}"]


# ------------------------------------------------------------------------------------------------ submitting
def minutes(text: str) -> int:
    """SLURM's time formats in whole minutes: ``90`` → 90, ``4:00:00`` → 240, ``1-12`` / ``1-12:00:00`` → 2160."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+(?::\d+){0,2})", str(text).strip())
    if not m:
        raise ConfigError(f"--slurm-time {text!r}: give minutes (240), HH:MM:SS (4:00:00) or D-HH:MM:SS (1-12:00:00)")
    fields = [int(v) for v in m.group(2).split(":")]
    if m.group(1) is not None:  # days-hours[:minutes[:seconds]]
        h, mins, s = (fields + [0, 0])[:3]
        total = int(m.group(1)) * 1440 + h * 60 + mins + (s > 0)
    elif len(fields) == 3:  # hours:minutes:seconds
        total = fields[0] * 60 + fields[1] + (fields[2] > 0)
    else:  # minutes[:seconds]
        total = fields[0] + (len(fields) == 2 and fields[1] > 0)
    if total < 1:
        raise ConfigError(f"--slurm-time {text!r}: a job needs at least one minute")
    return int(total)


def executor_parameters(args) -> dict:
    """submitit parameters: the --launcher-config YAML, then the --slurm-* options."""
    params: dict = {}
    if args.launcher_config:
        from .config_files import resolve
        path = Path(resolve(args.launcher_config))
        try:
            params = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"--launcher-config {path}: not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(params, dict):
            raise ConfigError(f"--launcher-config {path}: expected a mapping of submitit parameters "
                              "(slurm_partition: gpu, timeout_min: 240, ...)")
    given = {"slurm_partition": args.slurm_partition, "gpus_per_node": args.slurm_gpus,
             "cpus_per_task": args.slurm_cpus, "mem_gb": args.slurm_mem,
             "timeout_min": minutes(args.slurm_time) if args.slurm_time else None}
    params.update({k: v for k, v in given.items() if v is not None})
    return params


def make_executor(args, folder: Path):
    import submitit

    params = executor_parameters(args)
    if args.launcher == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("--launcher slurm: sbatch is not on PATH (SLURM's commands are on the cluster's login "
                          "nodes). Submit from there, or run here with --launcher local-submitit (local background "
                          "jobs) or without --launcher")
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm" if args.launcher == "slurm" else "local")
    try:
        executor.update_parameters(name=f"hashbench-{args.name}", **params)
    except (NameError, ValueError, TypeError) as err:
        source = f"--launcher-config {args.launcher_config}" if args.launcher_config else "the --slurm-* options"
        raise ConfigError(f"{source}: submitit refused a parameter: {' '.join(str(err).split())[:400]}") from None
    return executor, params


def _add_jobs(out: Path, new: list[dict]) -> None:
    with results_lock(out):
        jobs = read_jobs(out) + new
        atomic_write_text(out / JOBS_FILE, json.dumps({"jobs": jobs}, indent=1))


def submit(args, overrides, argv, runner_class, config_hash):
    """Submit the unfinished runs (or collect them when all finished)."""
    if args.force:
        raise ConfigError("--force with --launcher: the command that collects the results is this one again, so it "
                          "would submit every run again; delete the run folders to retrain (results/<name>/runs/...), "
                          "or use a new --name")
    runner = runner_class(args, overrides)
    executor, params = make_executor(args, runner.out / JOBS_DIR)  # bad parameters: an error before anything runs
    cells = runner.grid()
    latest = latest_jobs(read_jobs(runner.out))
    todo, waiting, resubmitted, finished = [], [], {}, 0
    for item in plan(runner, cells, config_hash):
        run_dir = item["run_dir"]
        job = latest.get(run_dir.name)
        state = job_state(job) if job else None
        if (run_dir / "result.json").is_file():
            finished += 1
        elif state and state[0] in ("queued", "running", "unknown"):
            waiting.append((item["cell"], job, state))
        else:
            if job and state and state[0] == "failed":
                resubmitted[run_dir.name] = (job, state)
            todo.append(item)
    if not todo and not waiting:
        runner.say(f"every run of this grid finished ({finished} of {len(cells)}): collecting the results")
        return runner_class(args, overrides).main()
    shown = runner.shown
    where = "SLURM" if args.launcher == "slurm" else "local background processes (submitit LocalExecutor)"
    runner.say(f"hashbench compare: {len(cells)} runs → {shown}/; {finished} finished, {len(waiting)} queued or "
               f"running, {len(todo)} to submit to {where}{_describe(params)}")
    for cell, job, state in waiting:
        runner.say(f"  {cell.label}: job {job['job_id']} {state[0]} (not submitted again)")
    entries = []
    if todo:
        cwd = os.getcwd()
        with executor.batch():  # one SLURM job array
            jobs = [executor.submit(CellJob(job_command(argv, it["cell"]), cwd, it["cell"].label)) for it in todo]
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        for it, job in zip(todo, jobs):
            cell = it["cell"]
            entry = {"job_id": str(job.job_id), "launcher": args.launcher, "method": cell.method, "bits": cell.bits,
                     "seed": cell.seed, "run_dir": it["run_dir"].name, "stdout": str(job.paths.stdout),
                     "stderr": str(job.paths.stderr), "result": str(job.paths.result_pickle), "submitted": now,
                     "host": socket.gethostname()}
            entries.append(entry)
            again = resubmitted.get(entry["run_dir"])
            note = f" (job {again[0]['job_id']} failed: {again[1][1]})" if again else ""
            runner.say(f"  {cell.label}: job {entry['job_id']}, log {_rel(entry['stdout'])}{note}")
        _add_jobs(runner.out, entries)
    runner.say(f"\njobs listed in {shown}/{JOBS_FILE}. Watch them: the same command with --status. When they ended, "
               "run this same command again: it submits what failed and, once every run finished, writes runs.csv, "
               "summary.md and the figures.")
    return entries


def _describe(params: dict) -> str:
    parts = [f"partition {params['slurm_partition']}" if params.get("slurm_partition") else "",
             f"{params['timeout_min']} min" if params.get("timeout_min") else "",
             f"{params['gpus_per_node']} GPU" if params.get("gpus_per_node") else "",
             f"{params['cpus_per_task']} CPUs" if params.get("cpus_per_task") else "",
             f"{params['mem_gb']:g} GB" if params.get("mem_gb") else ""]
    parts = [p for p in parts if p]
    return f" ({', '.join(parts)} per run)" if parts else ""


def _rel(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path
