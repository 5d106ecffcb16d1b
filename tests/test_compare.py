"""`hashbench compare`: every method × bits × seed through the CLI configs into one readable results folder."""
import csv
import json

import pytest

from hashbench import compare
from tests.data_fixtures import write_cifar
from tests.test_cli import EXP

TINY = ["--data.download", "false", "--data.scale", "0.01", "--data.image_size", "32", "--data.num_workers", "0",
        "--data.batch_size", "8", "--model.backbone", "tiny_cnn", "--model.pretrained", "false",
        "--trainer.logger", "false", "--trainer.callbacks", "[RetrievalEvaluation]", "--trainer.max_epochs", "1",
        "--trainer.check_val_every_n_epoch", "1", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false"]


def test_sweep_writes_tables_and_plots_and_keeps_going_after_a_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)
    real_run_one = compare.run_one

    def flaky(method, bits, seed, *args):
        if method == "greedy" and seed == 1:
            raise RuntimeError("simulated crash")
        return real_run_one(method, bits, seed, *args)

    monkeypatch.setattr(compare, "run_one", flaky)
    with pytest.raises(SystemExit) as exit_info:  # non-zero exit because one run failed
        compare.main(["--config", str(EXP / "data" / "cifar.yaml"), "--methods", "bihalf,greedy", "--bits", "8",
                      "--seeds", "2", "--name", "t", "--out", str(tmp_path / "results"),
                      "--data.root", str(tmp_path / "cifar"), *TINY])
    assert exit_info.value.code == 1
    out = tmp_path / "results" / "t"
    rows = list(csv.DictReader(open(out / "runs.csv")))
    assert [(r["method"], r["seed"], r["status"]) for r in rows] == [
        ("bihalf", "0", "ok"), ("bihalf", "1", "ok"), ("greedy", "0", "ok"), ("greedy", "1", "failed")]
    assert all(r["git_commit"] and float(r["total_seconds"]) > 0 for r in rows if r["status"] == "ok")
    maps = [float(r["mAP@1000"]) for r in rows if r["method"] == "bihalf"]
    mean = sum(maps) / 2
    std = (sum((m - mean) ** 2 for m in maps)) ** 0.5  # sample std of 2 values: |a-b|/sqrt(2)
    summary = (out / "summary.md").read_text()
    assert f"| bihalf | {mean:.4f} ± {std:.4f} (n=2) |" in summary
    assert "greedy 8 bits seed 1: RuntimeError: simulated crash" in summary
    for png in ("pr_curves.png", "map_vs_bits.png", "bit_balance.png"):
        assert (out / png).stat().st_size > 1000
    full = json.loads((out / "runs.json").read_text())
    assert full[0]["curves"]["radius_precision"] and len(full[0]["bit_plus_rate"]) == 8
    assert "[4/4] greedy    8 bits seed 1: failed" in capsys.readouterr().out
