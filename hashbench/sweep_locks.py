"""Several ``hashbench compare`` processes on one results folder: each run is trained once, tables stay whole.

* A run is trained only while its compare holds ``runs/<run>.lock`` (an OS file lock: it dies with its process,
  so a killed compare never blocks the folder). Another compare skips a locked run, and waits for it at the end
  of its own sweep so its summary is complete; ``runs/<run>.owner.json`` names the holder for the messages.
* runs.csv, runs.json and summary.md are written under ``.results.lock`` and replaced atomically.
* Under DDP the launching process (rank 0) decides, cell by cell, what happens (keep, train, skip); the other
  ranks follow its decisions (``.sweep/<token>/<n>.json``) instead of looking at locks held by their own rank 0.
* ``--parallel N``: the leader writes the runs to train (``.sweep/<plan>/plan.json``) and starts N worker compares;
  a worker takes a run by creating ``claims/<n>`` (exclusive create: one worker per run), then holds the run's lock
  as above while it trains it, and leaves what the leader needs for the tables in ``worker-<k>.json``.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator, Optional

from filelock import FileLock, Timeout

TOKEN_ENV = "HASHBENCH_SWEEP_TOKEN"
PLAN_ENV = "HASHBENCH_SWEEP_PLAN"  # set in the worker compares of ``--parallel``: the folder of their plan
WORKER_ENV = "HASHBENCH_SWEEP_WORKER"  # which worker (0..N-1)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` so a reader sees the old file or the new one, never half of it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def results_lock(out: Path) -> Iterator[None]:
    """Held while the results tables are rebuilt (by any compare process on this folder)."""
    out.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out / ".results.lock")):
        yield


class RunLock:
    """The lock of one run folder; ``acquire(wait=False)`` says whether this process got it."""

    def __init__(self, runs_dir: Path, name: str):
        runs_dir.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(runs_dir / f"{name}.lock"))
        self.owner_file = runs_dir / f"{name}.owner.json"

    def acquire(self, wait: bool) -> bool:
        try:
            self.lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            return False
        with contextlib.suppress(OSError):
            atomic_write_text(self.owner_file, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                           "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        return True

    def release(self) -> None:
        if self.lock.is_locked:
            self.lock.release()

    def owner(self) -> str:
        """``pid N`` (``on host``) of the process holding the lock, as far as it wrote it."""
        try:
            info = json.loads(self.owner_file.read_text())
        except (OSError, ValueError):
            return "pid unknown"
        host = "" if info.get("host") == socket.gethostname() else f" on {info.get('host')}"
        return f"pid {info.get('pid')}{host}"


def sweep_token() -> str:
    """What the ranks of one DDP compare share: inherited from rank 0 (Lightning's launcher copies its environment),
    else derived from the launcher's rendezvous (torchrun, SLURM), else new (a compare on one process)."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    launched = [os.environ.get(k, "") for k in ("SLURM_JOB_ID", "SLURM_STEP_ID", "TORCHELASTIC_RUN_ID",
                                                "MASTER_ADDR", "MASTER_PORT")]
    if any(launched) and ("RANK" in os.environ or "SLURM_PROCID" in os.environ):
        token = "job-" + "-".join(v.replace("/", "_") for v in launched if v)
    else:
        token = uuid.uuid4().hex[:12]
    os.environ[TOKEN_ENV] = token  # the ranks Lightning's DDP launcher starts inherit it
    return token


class Decisions:
    """Rank 0 publishes what it does with each cell, in order; the other ranks read and follow them."""

    POLL_S = 0.2

    def __init__(self, out: Path, leader: bool):
        self.dir = out / ".sweep" / sweep_token()
        self.leader, self.n = leader, 0
        if leader:
            self.dir.mkdir(parents=True, exist_ok=True)
            for stale in self.dir.glob("*.json"):  # a reused launcher id: no follower may read an old decision
                stale.unlink(missing_ok=True)
            atomic_write_text(self.dir / "leader.json", json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))

    def publish(self, decision: dict) -> None:
        if self.leader:  # the folder is made again if something removed it meanwhile (seen with two compares at once)
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.dir / f"{self.n}.json", json.dumps(decision))
        self.n += 1

    def next(self) -> dict:
        """The leader's next decision (a follower waits for it; it stops if the leader died)."""
        path = self.dir / f"{self.n}.json"
        while not path.is_file():
            if not self._leader_alive():
                return {"action": "end"}
            time.sleep(self.POLL_S)
        self.n += 1
        return json.loads(path.read_text())

    def _leader_alive(self) -> bool:
        try:
            info = json.loads((self.dir / "leader.json").read_text())
        except (OSError, ValueError):
            return True  # not written yet
        return alive_pid(info.get("host"), info.get("pid")) is not False

    def close(self, followers: bool) -> None:
        """The leader removes its decisions when no rank follows them (else they may still be reading: those are
        removed by a later compare, a day on), and those of earlier days."""
        if not self.leader:
            return
        cutoff = time.time() - 86400
        for old in self.dir.parent.glob("*"):
            with contextlib.suppress(OSError):
                if (old == self.dir and not followers) or (old != self.dir and old.stat().st_mtime < cutoff):
                    for f in old.iterdir():
                        f.unlink()
                    old.rmdir()


def alive_pid(host: Optional[str], pid) -> Optional[bool]:
    """Whether a process lives (None: on another host, cannot tell from here; True when the record is unreadable)."""
    if host and host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, TypeError):
        return True
    return True


class SharedPlan:
    """The runs a ``--parallel`` compare trains, shared by its leader and its worker compares (one folder)."""

    def __init__(self, folder: Path):
        self.dir = Path(folder)

    @classmethod
    def create(cls, out: Path, items: list[dict]) -> "SharedPlan":
        plan = cls(out / ".sweep" / f"parallel-{uuid.uuid4().hex[:12]}")
        (plan.dir / "claims").mkdir(parents=True)
        atomic_write_text(plan.dir / "plan.json", json.dumps({"leader": {"pid": os.getpid(),
                                                                         "host": socket.gethostname()},
                                                              "items": items}))
        return plan

    @classmethod
    def from_env(cls) -> "SharedPlan | None":
        """This process' plan when it is a worker compare, else None."""
        folder = os.environ.get(PLAN_ENV)
        return cls(Path(folder)) if folder else None

    def items(self) -> list[dict]:
        return json.loads((self.dir / "plan.json").read_text())["items"]

    def claim(self, n: int) -> bool:
        """Take run ``n`` for this worker; False when another worker has it or the leader is gone (a worker left
        behind by a killed leader starts nothing new)."""
        if not self._leader_alive():
            return False
        try:
            os.close(os.open(self.dir / "claims" / str(n), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def _leader_alive(self) -> bool:
        try:
            leader = json.loads((self.dir / "plan.json").read_text())["leader"]
        except (OSError, ValueError, KeyError):
            return True  # cannot tell
        return alive_pid(leader.get("host"), leader.get("pid")) is not False

    def report_path(self, worker: int) -> Path:
        return self.dir / f"worker-{worker}.json"

    def write_report(self, worker: int, report: dict) -> None:
        atomic_write_text(self.report_path(worker), json.dumps(report, default=str))

    def read_report(self, worker: int) -> dict:
        try:
            return json.loads(self.report_path(worker).read_text())
        except (OSError, ValueError):
            return {}

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
