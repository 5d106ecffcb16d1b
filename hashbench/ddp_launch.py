"""A multi-process launch that cannot work stops within seconds with one message instead of waiting forever.

Under ``--trainer.strategy ddp`` rank 0 starts the other ranks as child processes and then waits in the process-group
rendezvous. A child that exits before it joins (its own error, a command line that does not reproduce the run) or a
group that never completes (``--trainer.num_nodes 2`` with no second node) would leave rank 0 waiting for torch's
30-minute timeout. Lightning's own watcher only reacts to a child's non-zero exit, every 5 s, and then kills rank 0
without a word. This watcher polls faster, also catches a child that exits 0 before joining, bounds the rendezvous
(``HASHBENCH_DDP_JOIN_TIMEOUT`` seconds, default 300) and says what happened.
"""
from __future__ import annotations

import os
import shlex
import sys
import threading
import time

from .runs import is_global_zero

JOIN_TIMEOUT_ENV = "HASHBENCH_DDP_JOIN_TIMEOUT"
DEFAULT_JOIN_TIMEOUT_S = 300.0
POLL_S = 0.2
_started = threading.Event()  # one watcher per process: compare builds one Trainer per run on the same ranks


def join_timeout_s() -> float:
    try:
        return float(os.environ.get(JOIN_TIMEOUT_ENV, DEFAULT_JOIN_TIMEOUT_S))
    except ValueError:
        return DEFAULT_JOIN_TIMEOUT_S


def _group_formed() -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized()


def _children(trainer) -> list:
    """The ranks this process started (``subprocess.Popen`` objects of Lightning's script launcher; empty for
    ``ddp_spawn``'s multiprocessing children, which Lightning joins itself, and under torchrun/SLURM)."""
    launcher = getattr(trainer.strategy, "launcher", None)
    return [p for p in getattr(launcher, "procs", None) or [] if hasattr(p, "poll")]


def _spawned_here(trainer) -> bool:
    """ddp_spawn: this process only spawns workers and never joins a group itself."""
    launcher = getattr(trainer.strategy, "launcher", None)
    procs = getattr(launcher, "procs", None) or []
    return bool(procs) and not any(hasattr(p, "poll") for p in procs)


def _stop(message: str, code: int, children: list) -> None:
    if message and is_global_zero():
        print(message, file=sys.stderr, flush=True)
    for proc in children:
        if proc.poll() is None:
            proc.kill()
    os._exit(code)  # the main thread is blocked inside the rendezvous: nothing else can end it


def _started_externally(trainer) -> bool:
    """torchrun, SLURM, or a rank Lightning's launcher started: this process's rendezvous begins about now."""
    env = getattr(trainer.strategy, "cluster_environment", None)
    return bool(getattr(env, "creates_processes_externally", False))


def _watch(trainer, timeout_s: float) -> None:
    # the rendezvous clock starts when this process begins it: now if it was started by a launcher, else when it has
    # started its own children (rank 0 of `--trainer.strategy ddp`)
    start = time.monotonic() if _started_externally(trainer) else None
    joined, world = False, trainer.world_size
    while True:
        time.sleep(POLL_S)
        if trainer.state.fn is None:
            continue  # built but not run (yet): encode/compare build their Trainer first, a test may never run it
        if _spawned_here(trainer):
            return
        joined = joined or _group_formed()
        children = _children(trainer)
        if start is None and children:
            start = time.monotonic()
        for rank, proc in enumerate(children, 1):
            code = proc.poll()
            if code is None or (code == 0 and joined):
                continue
            cmd = shlex.join(str(a) for a in proc.args)
            if code == 2:  # the child printed its own `hashbench: error:` line
                _stop(f"hashbench: stopping all {world} DDP processes: rank {rank} exited with code 2 (its message is "
                      "above).", 2, children)
            when = "after the run started" if joined else "before joining the other ranks"
            _stop(f"hashbench: error: DDP rank {rank} exited with code {code} {when}, so the run cannot go on; it was "
                  f"started as `{cmd}`. Its own output is above; start the run from the hashbench command itself "
                  "(`hashbench fit --config … --trainer.devices N --trainer.strategy ddp`).", code or 2, children)
        if not joined and start is not None and time.monotonic() - start > timeout_s:
            nodes = getattr(trainer, "num_nodes", 1)
            _stop(f"hashbench: error: the {world} DDP processes (--trainer.num_nodes {nodes} × "
                  f"--trainer.devices {trainer.num_devices}) did not all start within {timeout_s:g} s, so training "
                  "cannot begin. Check that num_nodes and devices match the processes really started (every node "
                  f"runs the same command with its NODE_RANK), or wait longer with {JOIN_TIMEOUT_ENV}=<seconds>.",
                  2, children)
        if joined and all(p.poll() is not None for p in children):
            return


def watch_launch(trainer) -> None:
    """Start the watcher for ``trainer``'s launch when it runs several processes (once per process); it waits until
    the Trainer runs (``fit``/``validate``/``test``/``predict`` set ``trainer.state.fn``) before it times anything."""
    if trainer.world_size < 2 or _started.is_set():
        return
    _started.set()
    threading.Thread(target=_watch, args=(trainer, join_timeout_s()), name="hashbench-ddp-launch",
                     daemon=True).start()
