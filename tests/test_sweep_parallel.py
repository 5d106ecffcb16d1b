"""`hashbench compare --parallel N` (console, the way users type it, on the embedded MNIST in miniature): the same
rows as the same sweep run one at a time, a stopped parallel sweep resumes to the same rows, bad values are one
clear error."""
import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from tests.test_cli import EXP, REPO

HASHBENCH = str(Path(sys.executable).parent / "hashbench")
TIMING = ("fit_seconds", "total_seconds", "finished", "run_dir")  # differ between any two sweeps
GRID = ["--methods", "bihalf,itq", "--baselines=", "--bits", "8,16", "--seeds", "1", "--examples", "0"]
MINIATURE = ["--data.query_size", "2", "--data.train_size", "5", "--data.database_size", "10",
             "--data.image_size", "32", "--data.batch_size", "16", "--model.backbone", "tiny_cnn",
             "--model.pretrained", "false", "--trainer.max_epochs", "1", "--trainer.logger", "false",
             "--trainer.callbacks+=tests.fit_markers.FitStarts",
             "--trainer.callbacks+=tests.test_sweep_parallel.HoldLongRuns"]


class HoldLongRuns(Callback):
    """With ``$HOLD_DIR`` set, a 16-bit run waits at the start of its first epoch (a file ``<pid>`` in that folder says
    so) until the test stops the sweep: the "long" runs of a sweep that the test interrupts mid-way, their progress
    (epoch 0) already written. A no-op otherwise."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        folder = os.environ.get("HOLD_DIR")
        if not folder or int(pl_module.hparams.get("bits", 0)) != 16:
            return
        (Path(folder) / str(os.getpid())).touch()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(0.1)


def _env(tmp_path, **extra):
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
            "FIT_MARKER_LOG": str(tmp_path / "fit_starts.log"), **extra}


def _cmd(out: Path, name: str, *extra: str) -> list:
    return [HASHBENCH, "compare", "--config", str(EXP / "demo_mnist.yaml"), *GRID, "--name", name, "--out", str(out),
            *MINIATURE, *extra]


def _compare(tmp_path, name, *extra, **env):
    done = subprocess.run(_cmd(tmp_path / "results", name, *extra), cwd=tmp_path, env=_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _rows(folder: Path) -> list:
    rows = [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(open(folder / "runs.csv"))]
    return sorted(rows, key=lambda r: (r["method"], int(r["bits"]), int(r["seed"])))


def _run_folders(folder: Path) -> set:
    return {p.name for p in (folder / "runs").iterdir() if p.is_dir()}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The reference: the grid run one at a time."""
    tmp = tmp_path_factory.mktemp("sequential")
    _compare(tmp, "seq")
    out = tmp / "results" / "seq"
    assert len(_rows(out)) == 4 and {r["status"] for r in _rows(out)} == {"ok"}
    return out


def test_parallel_sweep_writes_the_rows_of_a_sequential_one(sequential, tmp_path):
    printed = _compare(tmp_path, "par", "--parallel", "2")
    out = tmp_path / "results" / "par"
    assert _rows(out) == _rows(sequential)
    assert _run_folders(out) == _run_folders(sequential)  # same config hashes, same code: same folders
    starts = Counter(line.split()[1] for line in (tmp_path / "fit_starts.log").read_text().splitlines())
    assert len(starts) == 4 and set(starts.values()) == {1}, starts  # every run trained once
    result_lines = [ln for ln in printed.splitlines() if ln.startswith("[")]
    assert len(result_lines) == 4 and all("mAP@all" in ln for ln in result_lines), printed  # one line per run
    assert "Trainer(" not in printed and "GPU available" not in printed  # no framework chatter


def test_parallel_sweep_stopped_mid_way_resumes_to_the_same_rows(sequential, tmp_path):
    hold = tmp_path / "hold"
    hold.mkdir()
    leader = subprocess.Popen(_cmd(tmp_path / "results", "par", "--parallel", "2"), cwd=tmp_path,
                              env=_env(tmp_path, HOLD_DIR=str(hold)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    out = tmp_path / "results" / "par"
    deadline = time.monotonic() + 900
    # mid-way: the 8-bit runs finished, both 16-bit runs training at once, one in each worker
    while not (len(list(out.glob("runs/*/result.json"))) == 2 and len(list(hold.iterdir())) == 2):
        assert leader.poll() is None and time.monotonic() < deadline, leader.communicate()
        time.sleep(0.2)
    time.sleep(2)  # the leader looks at its runs' progress every 0.5 s: let it draw the held runs' live lines
    leader.send_signal(signal.SIGTERM)
    stdout, stderr = leader.communicate(timeout=1200)
    assert leader.returncode == 130, stdout[-3000:] + stderr[-3000:]
    assert "interrupted after 2 of 4 runs" in stdout and "Run the same command again" in stdout, stdout
    for method in ("bihalf", "itq"):  # the leader showed each running run's live line (from its progress.json)
        assert f"  {method} 16 bits seed 0: epoch 0/1" in stdout, stdout
    workers = [int(p.name) for p in hold.iterdir()]
    assert len(set(workers)) == 2
    for pid in workers:  # the leader stopped its workers before exiting
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert len(_rows(out)) == 2  # the finished runs' tables were written

    printed = _compare(tmp_path, "par", "--parallel", "2")
    assert printed.count("finished earlier, kept") == 2, printed
    assert _rows(out) == _rows(sequential)
    assert _run_folders(out) == _run_folders(sequential)


@pytest.mark.parametrize("extra, env, message", [
    (["--parallel", "0"], {}, "--parallel takes a whole number of at least 1, got '0'"),
    (["--parallel", "two"], {}, "--parallel takes a whole number of at least 1, got 'two'"),
    (["--parallel", "2", "--gpus-per-run", "0"], {}, "--gpus-per-run takes a whole number of at least 1, got '0'"),
    (["--parallel", "3"], {"CUDA_VISIBLE_DEVICES": "0,1"},
     "--parallel 3 --gpus-per-run 1 needs 3 GPUs, but this machine shows 2 (0, 1); lower --parallel or --gpus-per-run"),
])
def test_bad_parallel_values_are_one_clear_error(tmp_path, extra, env, message):
    done = subprocess.run(_cmd(tmp_path / "results", "bad", *extra), cwd=tmp_path, env=_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hashbench: error: {message}"), done.stderr
    assert not (tmp_path / "results" / "bad" / "runs").exists()  # refused before any run started


@pytest.mark.parametrize("slots, preset, expected", [
    ([None, None], None, "2"),             # 4 cores, 2 CPU runs: 2 threads each
    ([None, None, None], None, "1"),       # never below one
    ([None, None], "3", "3"),              # the user's own setting is kept
    (["0", "1"], None, None),              # GPU runs: torch's default, nothing set
])
def test_cpu_workers_share_the_cores(monkeypatch, tmp_path, slots, preset, expected):
    from hashbench import sweep_parallel
    from hashbench.sweep_locks import SharedPlan
    started = []
    monkeypatch.setattr(sweep_parallel.subprocess, "Popen", lambda cmd, env, **kw: started.append(env) or object())
    monkeypatch.setattr(sweep_parallel.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    if preset is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", preset)
    procs = []
    plan = SharedPlan(tmp_path)
    sweep_parallel.start_workers(["--config", "x.yaml"], plan, slots, procs)
    assert len(procs) == len(slots)
    assert [env.get("OMP_NUM_THREADS") for env in started] == [expected] * len(slots)
