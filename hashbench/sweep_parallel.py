"""``compare --parallel N``: N worker compares of the same command on this machine, each pinned to its own GPU(s)
(``CUDA_VISIBLE_DEVICES``), sharing one plan (``sweep_locks.SharedPlan``); the leader starts them, waits, and on
Ctrl-C or SIGTERM stops them (each stops its run as Ctrl-C does: finished runs are kept, the rerun resumes)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Iterator, Optional

from .errors import ConfigError
from .sweep_locks import PLAN_ENV, TOKEN_ENV, WORKER_ENV, SharedPlan

STOP_WAIT_S = 300  # a stopped worker ends its run's test/teardown first; after this it is killed


def gpu_slots(workers: int, per_run: int) -> list[Optional[str]]:
    """Each worker's ``CUDA_VISIBLE_DEVICES``: disjoint groups of ``per_run`` of the GPUs this process sees; all None
    without a GPU (the runs use the CPU)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
    else:
        import torch

        ids = [str(i) for i in range(torch.cuda.device_count())]
    if not ids:
        return [None] * workers
    if workers * per_run > len(ids):
        raise ConfigError(f"--parallel {workers} --gpus-per-run {per_run} needs {workers * per_run} GPUs, but this "
                          f"machine shows {len(ids)} ({', '.join(ids)}); lower --parallel or --gpus-per-run")
    return [",".join(ids[k * per_run:(k + 1) * per_run]) for k in range(workers)]


def cpu_threads_per_worker(workers: int) -> int:
    """The CPU cores this process may use, shared out between ``workers`` CPU runs (at least one each): without it
    every run's torch starts one thread per core and N runs fight over the same cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // workers)


def start_workers(argv: list[str], plan: SharedPlan, slots: list[Optional[str]], procs: list) -> None:
    """``hashbench compare <argv>`` once per slot, appended to ``procs`` as each starts (so an interruption meanwhile
    stops those already started). Each in its own session: Ctrl-C reaches the leader only, which stops every worker
    once (a second Ctrl-C in a worker would break its clean stop). CPU workers share the cores (``OMP_NUM_THREADS``,
    unless it is set already)."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    for k, slot in enumerate(slots):
        worker_env = {**env, PLAN_ENV: str(plan.dir), WORKER_ENV: str(k),
                      TOKEN_ENV: f"{plan.dir.name}-w{k}"}  # its own DDP decisions, if its runs use DDP
        if slot is not None:
            worker_env["CUDA_VISIBLE_DEVICES"] = slot
        elif "OMP_NUM_THREADS" not in env:
            worker_env["OMP_NUM_THREADS"] = str(cpu_threads_per_worker(len(slots)))
        procs.append(subprocess.Popen([sys.executable, "-m", "hashbench", "compare", *argv], env=worker_env,
                                      start_new_session=True))


def wait_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.wait()


def stop_workers(procs: list[subprocess.Popen]) -> None:
    """Ctrl-C to every running worker, then wait for each to stop cleanly (killed after STOP_WAIT_S)."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler) stops the leader the way Ctrl-C does, so its workers are stopped too."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
