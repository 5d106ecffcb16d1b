"""A run killed mid-epoch resumes with ``--ckpt_path last`` into its own run directory and ends with exactly the
metrics of the uninterrupted run (CPU, same seed); without a checkpoint to resume, the CLI says so and stops."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hashbench.cli import main, run_cli
from tests.data_fixtures import write_cifar
from tests.test_cli import EXP, FAST, REPO

EPOCHS = ["--trainer.check_val_every_n_epoch", "1", "--trainer.limit_train_batches", "3"]
# CIBHash: two random augmentations per image and a checkpoint selected on its validation queries
CONFIG = ["fit", "--config", str(EXP / "cifar_cib.yaml"), *FAST, *EPOCHS]


@pytest.fixture()
def cifar(tmp_path):
    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)
    return ["--data.root", str(tmp_path / "cifar"), "--trainer.default_root_dir", str(tmp_path / "runs")]


def _final(cli) -> dict:
    m = cli.trainer.callback_metrics
    return {k: float(m[k]) for k in ("val/mAP", "val/mAP@1000", "train/loss_epoch", "train/contrastive_epoch")}


def test_killed_run_resumes_and_ends_with_the_uninterrupted_metrics(cifar, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    whole = _final(run_cli([*CONFIG, *cifar, "--trainer.max_epochs", "3", "--run_name", "whole"]))

    kill = json.dumps({"class_path": "tests.run_helpers.KillAt", "init_args": {"epoch": 1, "step": 1}})
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    killed = subprocess.run([sys.executable, "-m", "hashbench", *CONFIG, *cifar, "--trainer.max_epochs", "3",
                             "--run_name", "killed", f"--trainer.callbacks+={kill}"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL in epoch 1, step 1
    run = tmp_path / "runs" / "killed"
    assert (run / "checkpoints" / "last.ckpt").is_file()  # written at the end of epoch 0

    resumed = run_cli([*CONFIG, *cifar, "--trainer.max_epochs", "3", "--run_name", "killed", "--ckpt_path", "last"])
    assert resumed.trainer.current_epoch == 3
    assert _final(resumed) == whole  # bit for bit: same order, same augmentations, same dropout


def test_ckpt_path_last_without_a_checkpoint_stops_with_exit_2(cifar, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([*CONFIG, *cifar, "--trainer.max_epochs", "1", "--run_name", "never", "--ckpt_path", "last"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "hashbench: error: --ckpt_path last: run 'never' has no checkpoint to resume" in err
    assert "Traceback" not in err


def test_a_fresh_fit_never_overwrites_an_earlier_run(cifar, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli = run_cli([*CONFIG, *cifar, "--trainer.max_epochs", "1"])
    run = Path(cli.trainer.default_root_dir)
    assert run.name == "cifar10-cibhash-cib-64b-seed0" and (run / "checkpoints" / "last.ckpt").is_file()
    assert any((run / "checkpoints").glob("best-*.ckpt"))  # selected on the validation queries
    with pytest.raises(SystemExit) as info:
        main([*CONFIG, *cifar, "--trainer.max_epochs", "1"])
    assert info.value.code == 2
    assert "already holds checkpoints" in capsys.readouterr().err


def test_resumed_run_continues_the_same_wandb_run(cifar, tmp_path, monkeypatch, wandb_offline):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(EXP / "cifar_greedy.yaml"), *[a for a in FAST if "logger" not in a and a != "logs"],
            *cifar, "--data.val_queries", "6", "--trainer.limit_train_batches", "2", "--run_name", "wb"]
    first = run_cli([*args, "--trainer.max_epochs", "1"])
    run_id = first.trainer.logger.experiment.id
    first.trainer.logger.experiment.finish()
    again = run_cli([*args, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert again.trainer.logger.experiment.id == run_id and again.trainer.current_epoch == 2
    again.trainer.logger.experiment.finish()
    fresh = run_cli([*args[:-1], "wb2", "--trainer.max_epochs", "1"])
    assert fresh.trainer.logger.experiment.id != run_id  # a new run is a new W&B run
    fresh.trainer.logger.experiment.finish()
