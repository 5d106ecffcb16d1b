"""SLURM preemption / time limit: Lightning's auto-requeue writes ``hpc_ckpt_N.ckpt`` into the run folder; the suite's
resume (``--ckpt_path last``, compare, a requeued ``fit``) continues from whichever of it and ``last.ckpt`` got
further (by the saved step/epoch, not the file time), in the same run folder and W&B run. The signal is simulated the
way Lightning's own tests do: the SLURM environment variables set, SIGUSR1 sent, ``scontrol`` replaced."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hashbench.runs import find_checkpoint, has_checkpoints, newest_checkpoint
from tests.data_fixtures import write_mnist_idx
from tests.test_checkpoint_safety import RUN, tiny

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _ckpt(path: Path, step: int, epoch: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "epoch": epoch, "state_dict": {}}, path)
    return path


def test_resolver_takes_the_hpc_checkpoint_that_got_further(tmp_path):
    last = _ckpt(tmp_path / "checkpoints" / "last.ckpt", step=30, epoch=2)
    hpc = _ckpt(tmp_path / "hpc_ckpt_1.ckpt", step=37, epoch=3)
    assert newest_checkpoint(tmp_path) == hpc and find_checkpoint(tmp_path, "last") == hpc


def test_resolver_goes_by_saved_progress_not_file_time(tmp_path):
    last = _ckpt(tmp_path / "checkpoints" / "last.ckpt", step=40, epoch=3)
    hpc = _ckpt(tmp_path / "hpc_ckpt_1.ckpt", step=37, epoch=3)  # an older requeue's, copied or touched later
    os.utime(last, (time.time() - 3600,) * 2)
    assert find_checkpoint(tmp_path, "last") == last


def test_resolver_closed_form_methods_by_epoch_then_time(tmp_path):
    last = _ckpt(tmp_path / "checkpoints" / "last.ckpt", step=0, epoch=1)  # no optimiser step: the epoch decides
    hpc = _ckpt(tmp_path / "hpc_ckpt_2.ckpt", step=0, epoch=0)
    assert find_checkpoint(tmp_path, "last") == last
    os.utime(hpc, (time.time() + 60,) * 2)
    _ckpt(last, step=0, epoch=0)
    os.utime(last, (time.time() - 60,) * 2)
    assert find_checkpoint(tmp_path, "last") == hpc  # equal progress: the later file


def test_an_hpc_checkpoint_alone_is_a_run_to_resume(tmp_path):
    assert not has_checkpoints(tmp_path)
    hpc = _ckpt(tmp_path / "hpc_ckpt_1.ckpt", step=3, epoch=0)
    assert has_checkpoints(tmp_path) and find_checkpoint(tmp_path, "last") == hpc


def test_an_unreadable_hpc_checkpoint_never_wins(tmp_path):
    last = _ckpt(tmp_path / "checkpoints" / "last.ckpt", step=3, epoch=0)
    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"truncated")
    assert find_checkpoint(tmp_path, "last") == last


# ---- the real thing: Lightning's SLURM signal handler writes the checkpoint, the requeued command resumes it ------
# (the signal: tests.run_helpers.RequeueAt)
def slurm_env(tmp_path: Path, restart_count: int) -> dict:
    """One task of a SLURM job (Lightning detects SLURMEnvironment from these) and an ``scontrol`` that logs."""
    fake = tmp_path / "fake_bin"
    fake.mkdir(exist_ok=True)
    scontrol = fake / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    return {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "WANDB_MODE": "disabled",
            "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "hashbench",
            "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
            "SLURM_NODEID": "0", "SLURM_NODELIST": "node1", "SLURM_JOB_NUM_NODES": "1",
            "SLURM_RESTART_COUNT": str(restart_count)}


def lightning_fit(args, env, cwd) -> subprocess.CompletedProcess:
    exe = BIN / "lightning"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "hashbench"]
    return subprocess.run([*cmd, "fit", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("resume_with", [["--ckpt_path", "last"], []], ids=["ckpt_path_last", "requeued_fit"])
def test_requeued_job_resumes_from_lightnings_hpc_checkpoint_in_the_same_run(tmp_path, resume_with):
    write_mnist_idx(str(tmp_path / "mnist"), train_per_class=12, test_per_class=4)
    args = ["--config", "mnist_dch.yaml", *tiny(tmp_path / "mnist"), "--model.bits", "16",
            "--trainer.max_epochs", "2", "--trainer.default_root_dir", tmp_path / "runs"]
    signal_at = '{"class_path": "tests.run_helpers.RequeueAt", "init_args": {"epoch": 1, "step": 1}}'
    first = lightning_fit([*args, f"--trainer.callbacks+={signal_at}"], slurm_env(tmp_path, 0), tmp_path)
    assert first.returncode == -9, first.stderr[-3000:]
    run = tmp_path / "runs" / RUN
    hpc = run / "hpc_ckpt_1.ckpt"
    assert hpc.is_file() and (run / "hpc_ckpt_1.ckpt.sha256").is_file()  # through the suite's checkpoint plugin
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    saved = torch.load(hpc, weights_only=True)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (saved["global_step"], saved["epoch"]) > (last["global_step"], last["epoch"])  # mid-epoch 1 vs end of 0
    wandb_id = (run / "wandb_id").read_text()

    again = lightning_fit([*args, *resume_with], slurm_env(tmp_path, 1), tmp_path)  # the requeued job's command
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr and "from hpc_ckpt_1.ckpt" in again.stderr, again.stderr[-3000:]
    assert (run / "wandb_id").read_text() == wandb_id  # the same W&B run
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["epoch"] == 1 and final["global_step"] > saved["global_step"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [RUN]  # no second run folder
