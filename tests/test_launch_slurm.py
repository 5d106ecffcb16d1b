"""`hashbench compare … --launcher slurm|local-submitit`: the grid submitted through submitit, one job per run, each
running compare's own per-run path; the same command again collects the results. End to end with submitit's
LocalExecutor (local processes) always, and with a real SLURM (sbatch) where one answers."""
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hashbench import compare, sweep_grid
from hashbench.errors import ConfigError
from hashbench.launch_slurm import job_command, minutes
from tests.data_fixtures import write_cifar
from tests.test_cli import EXP, REPO
from tests.test_compare import TINY

HASHBENCH = str(Path(sys.executable).parent / "hashbench")


def _slurm_answers() -> bool:
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _submit_wait_collect(tmp_path, launcher: list[str]):
    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [HASHBENCH, "compare", "--config", str(EXP / "data" / "cifar.yaml"), "--methods", "bihalf", "--baselines",
           "lsh", "--bits", "8", "--seeds", "1", "--name", "j", "--out", "results", "--examples", "0",
           "--data.root", "cifar", *TINY, "--trainer.max_epochs", "2"]

    def hashbench(*extra):
        done = subprocess.run([*cmd, *extra], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    out = tmp_path / "results" / "j"
    submitted = hashbench(*launcher)
    jobs = json.loads((out / "jobs.json").read_text())["jobs"]
    assert sorted(j["method"] for j in jobs) == ["bihalf", "lsh"] and not (out / "runs.csv").exists()
    assert all(f"job {j['job_id']}" in submitted for j in jobs), submitted
    deadline = time.time() + 600
    while not all(Path(j["result"]).is_file() for j in jobs):  # submitit writes it when a job ends
        assert time.time() < deadline, [Path(j["stdout"]).read_text()[-2000:] for j in jobs if Path(j["stdout"]).exists()]
        time.sleep(2)
    status = hashbench("--status")
    assert "2 runs: 2 finished" in status and "mAP@1000 0." in status, status
    log = Path(jobs[0]["stdout"]).read_text()
    assert "--job-cell" in log and "mAP@1000" in log  # the job ran compare's own per-run path, its log says so
    collected = hashbench(*launcher)  # the same command again: collects, submits nothing
    assert "every run of this grid finished (2 of 2): collecting" in collected and "finished earlier, kept" in collected
    assert len(json.loads((out / "jobs.json").read_text())["jobs"]) == 2
    rows = list(csv.DictReader(open(out / "runs.csv")))
    assert sorted((r["method"], r["status"]) for r in rows) == [("bihalf", "ok"), ("lsh", "ok")]
    assert "BiHalfNet" in (out / "summary.md").read_text() and (out / "map_vs_bits.png").is_file()
    return jobs


def test_local_submitit_jobs_run_each_cell_and_the_rerun_collects_the_results(tmp_path):
    jobs = _submit_wait_collect(tmp_path, ["--launcher", "local-submitit"])
    assert {j["launcher"] for j in jobs} == {"local-submitit"}


@pytest.mark.skipif(not _slurm_answers(), reason="no SLURM controller answers here (sbatch/sinfo)")
def test_slurm_job_array_runs_each_cell_and_the_rerun_collects_the_results(tmp_path):
    jobs = _submit_wait_collect(tmp_path, ["--launcher", "slurm", "--slurm-time", "10", "--slurm-cpus", "1",
                                           "--slurm-mem", "2"])
    assert len({j["job_id"].split("_")[0] for j in jobs}) == 1  # one job array


def test_a_bad_launcher_config_is_one_error_line_before_anything_is_submitted(tmp_path):
    (tmp_path / "launcher.yaml").write_text("slurm_partition: gpu\ngpus_per_nod: 1\n")
    done = subprocess.run([HASHBENCH, "compare", "--config", str(EXP / "data" / "cifar.yaml"), "--methods", "bihalf",
                           "--baselines", "", "--bits", "8", "--name", "e", "--launcher", "local-submitit",
                           "--launcher-config", "launcher.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hashbench: error: --launcher-config launcher.yaml") \
        and "gpus_per_nod" in err[0], done.stderr
    assert not (tmp_path / "results" / "e" / "jobs.json").exists()


def test_slurm_without_sbatch_says_where_to_submit_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(ConfigError, match="sbatch is not on PATH.*--launcher local-submitit"):
        compare.main(["--config", str(EXP / "data" / "cifar.yaml"), "--methods", "bihalf", "--baselines", "",
                      "--bits", "8", "--launcher", "slurm"])


def test_slurm_time_formats():
    assert [minutes(t) for t in ("90", "4:00:00", "1-12", "1-12:00:00", "30:30", "0:00:30")] == \
        [90, 240, 2160, 2160, 31, 1]
    with pytest.raises(ConfigError, match="--slurm-time"):
        minutes("4h")


def test_a_job_runs_the_users_command_minus_the_submission_options_restricted_to_its_cell():
    cell = sweep_grid.Cell("dch", 32, 2)
    cmd = job_command(["--config", "c.yaml", "--launcher", "slurm", "--slurm-gpus=1", "--launcher-config", "l.yaml",
                       "--bits", "16,32", "--slurm-partition", "gpu", "--trainer.max_epochs", "5"], cell)
    assert cmd[1:] == ["-m", "hashbench", "compare", "--config", "c.yaml", "--bits", "16,32",
                       "--trainer.max_epochs", "5", "--job-cell", "dch,32,2"]


@pytest.mark.skipif(not _slurm_answers(), reason="no SLURM controller answers here (sbatch/sinfo)")
def test_a_preempted_slurm_job_is_requeued_and_its_run_resumes_from_its_last_epoch(tmp_path):
    """SLURM signals a job before preempting it or at its time limit (USR2, submitit's --signal); submitit requeues
    the job and the requeued job's compare resumes the run folder's last.ckpt."""
    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [HASHBENCH, "compare", "--config", str(EXP / "data" / "cifar.yaml"), "--methods", "bihalf", "--baselines", "",
         "--bits", "8", "--seeds", "1", "--name", "q", "--out", "results", "--examples", "0", "--data.root", "cifar",
         *TINY, "--trainer.max_epochs", "150", "--launcher", "slurm", "--slurm-time", "15", "--slurm-cpus", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (job,) = json.loads((tmp_path / "results" / "q" / "jobs.json").read_text())["jobs"]
    run_dir = tmp_path / "results" / "q" / "runs" / job["run_dir"]
    deadline = time.time() + 600
    while True:  # preempt it once it trained a couple of epochs
        try:
            if json.loads((run_dir / "progress.json").read_text())["epoch"] >= 2:
                break
        except (OSError, ValueError):
            pass
        assert time.time() < deadline and not (run_dir / "result.json").exists()
        time.sleep(0.3)
    subprocess.run(["scancel", "--signal=USR2", job["job_id"]], check=True)
    while not (run_dir / "result.json").is_file():
        assert time.time() < deadline, Path(job["stderr"]).read_text()[-2000:]
        time.sleep(2)
    row = json.loads((run_dir / "result.json").read_text())
    assert row["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt") and row["epochs"] == 150
    assert Path(job["stdout"]).read_text().count("hashbench job: bihalf_8b_seed0") == 2  # started twice: requeued
