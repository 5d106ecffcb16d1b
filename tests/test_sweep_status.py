"""`hashbench compare … --status`: the grid from the results folder alone (run folders, progress.json, jobs.json),
for runs of this process, others, other machines and SLURM jobs."""
import json
import os
import socket
import subprocess
import sys
import time

from hashbench import compare
from hashbench.sweep_status import plan
from tests.test_cli import EXP

ARGS = ["--config", str(EXP / "data" / "cifar.yaml"), "--methods", "bihalf", "--baselines", "", "--bits", "8,16,32,64",
        "--seeds", "2", "--name", "s", "--data.root", "cifar", "--trainer.max_epochs", "10"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_status_shows_finished_running_queued_failed_stopped_and_not_started(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [*ARGS, "--out", str(tmp_path / "results")]
    args, overrides = compare.parse(argv)
    runner = compare.SweepRunner(args, overrides)
    dirs = {(it["cell"].bits, it["cell"].seed): it["run_dir"] for it in plan(runner, runner.grid(), compare.config_hash)}
    for d in dirs.values():
        d.mkdir(parents=True)
    host, now = socket.gethostname(), time.time()
    # finished
    (dirs[8, 0] / "result.json").write_text(json.dumps({"headline": "mAP@1000", "mAP@1000": 0.61234,
                                                         "total_seconds": 125.0}))
    # running in a live process here (this test), and in a process of another machine
    progress = {"method": "bihalf", "bits": 8, "seed": 1, "state": "running", "epoch": 3, "max_epochs": 10,
                "loss": 0.4321, "elapsed_s": 62, "eta_s": 145, "updated": now, "host": host, "pid": os.getpid()}
    (dirs[8, 1] / "progress.json").write_text(json.dumps(progress))
    (dirs[16, 0] / "progress.json").write_text(json.dumps({**progress, "bits": 16, "seed": 0, "host": "node7",
                                                           "pid": 1, "epoch": 9}))
    # stopped: its process is gone mid-training
    (dirs[16, 1] / "progress.json").write_text(json.dumps({**progress, "bits": 16, "pid": _dead_pid()}))
    # SLURM jobs: one pending in the queue, one that failed (submitit's result file holds the error)
    jobs_dir = tmp_path / "results" / "s" / "jobs"
    jobs_dir.mkdir()
    import submitit
    submitit.core.utils.cloudpickle_dump(("error", "Traceback ...\nRuntimeError: CUDA out of memory"),
                                         jobs_dir / "41_1_0_result.pkl")

    def job(task, bits, seed):
        return {"job_id": f"41_{task}", "launcher": "slurm", "method": "bihalf", "bits": bits, "seed": seed,
                "run_dir": dirs[bits, seed].name, "stdout": str(jobs_dir / f"41_{task}_0_log.out"),
                "stderr": str(jobs_dir / f"41_{task}_0_log.err"), "result": str(jobs_dir / f"41_{task}_0_result.pkl"),
                "host": "login1"}
    # a job requeued after preemption: pending again, its progress.json from the killed attempt
    (dirs[64, 0] / "progress.json").write_text(json.dumps({**progress, "bits": 64, "seed": 0, "pid": _dead_pid()}))
    jobs = [job(0, 32, 0), job(1, 32, 1), job(2, 64, 0)]
    (tmp_path / "results" / "s" / "jobs.json").write_text(json.dumps({"jobs": jobs}))
    bin_dir = tmp_path / "bin"  # squeue as SLURM prints it: pending array tasks as a range
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\necho '41_[0,2-3] PENDING'\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    rows = compare.main([*argv, "--status"])
    printed = capsys.readouterr().out
    states = {(r["bits"], r["seed"]): r["state"] for r in rows}
    assert states == {(8, 0): "finished", (8, 1): "running", (16, 0): "running", (16, 1): "stopped",
                      (32, 0): "queued", (32, 1): "failed", (64, 0): "queued", (64, 1): "not started"}, printed
    lines = {(int(ln.split()[1]), int(ln.split()[2])): ln for ln in printed.splitlines() if ln.startswith("  bihalf")}
    assert "mAP@1000 0.6123 (2m05s)" in lines[8, 0]
    assert f"epoch 3/10, loss 0.4321, 1m02s, ETA 2m25s (pid {os.getpid()} on {host}" in lines[8, 1]
    assert "epoch 9/10" in lines[16, 0] and "on node7" in lines[16, 0]
    assert "same command resumes it" in lines[16, 1]
    assert "job 41_0 PENDING" in lines[32, 0]
    assert "RuntimeError: CUDA out of memory; log " + str(jobs_dir / "41_1_0_log.err") in lines[32, 1]
    assert "requeued at epoch 3/10 (job 41_2 PENDING)" in lines[64, 0]
    assert "8 runs: 1 finished, 2 running, 2 queued, 1 failed, 1 stopped, 1 not started" in printed
    assert not (tmp_path / "results" / "s" / "runs.csv").exists()  # --status trains and writes nothing


def test_status_of_a_grid_nothing_ran_for(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rows = compare.main([*ARGS, "--out", str(tmp_path / "results"), "--status"])
    assert {r["state"] for r in rows} == {"not started"} and len(rows) == 8
    assert "8 runs: 8 not started" in capsys.readouterr().out
