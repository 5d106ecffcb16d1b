"""`hashbench compare`: method × bits × seed (+ LSH/ITQ baselines) into one results folder that survives reruns,
crashes, Ctrl-C and DDP."""
import csv
import json
import os
import subprocess
import sys

import pytest

from hashbench import compare, sweep_runner
from tests.data_fixtures import write_cifar
from tests.test_cli import EXP, REPO

TINY = ["--data.download", "false", "--data.scale", "0.01", "--data.image_size", "32", "--data.num_workers", "0",
        "--data.batch_size", "8", "--model.backbone", "tiny_cnn", "--model.pretrained", "false",
        "--trainer.logger", "false", "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu"]


@pytest.fixture()
def sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)

    def run(*extra, methods="bihalf,greedy", bits="8", seeds="2"):
        return compare.main(["--config", str(EXP / "data" / "cifar.yaml"), "--methods", methods, "--bits", bits,
                             "--seeds", seeds, "--name", "t", "--out", str(tmp_path / "results"), "--examples", "2",
                             "--data.root", str(tmp_path / "cifar"), *TINY, *extra])
    return run, tmp_path / "results" / "t"


def _rows(out):
    return list(csv.DictReader(open(out / "runs.csv")))


def test_sweep_writes_tables_and_figures_with_baselines_and_keeps_going_after_a_failure(sweep, monkeypatch, capsys):
    run, out = sweep
    real_run = sweep_runner.SweepRunner.run

    def flaky(self, cell, *args):
        if cell.method == "greedy" and cell.seed == 1:
            raise RuntimeError("simulated crash")
        return real_run(self, cell, *args)

    monkeypatch.setattr(sweep_runner.SweepRunner, "run", flaky)
    with pytest.raises(SystemExit) as exit_info:  # non-zero exit because one run failed
        run()
    assert exit_info.value.code == 1
    rows = _rows(out)
    got = sorted((r["method"], r["seed"], r["status"]) for r in rows)
    assert got == [("bihalf", "0", "ok"), ("bihalf", "1", "ok"), ("greedy", "0", "ok"), ("greedy", "1", "failed"),
                   ("itq", "0", "ok"), ("itq", "1", "ok"), ("lsh", "0", "ok"), ("lsh", "1", "ok")]
    assert all(r["git_commit"] and float(r["total_seconds"]) > 0 for r in rows if r["status"] == "ok")
    assert {r["baseline"] for r in rows if r["method"] in ("lsh", "itq")} == {"True"}
    summary = (out / "summary.md").read_text()
    assert "ITQ" in summary and "simulated crash" in summary
    for png in ("pr_curves.png", "map_vs_bits.png", "bit_balance.png", "precision_at_n.png", "retrieval_examples.png"):
        assert (out / png).stat().st_size > 1000, png
    printed = capsys.readouterr().out
    lines = [ln for ln in printed.splitlines() if ln.startswith("[")]
    assert len(lines) == 8 and printed.count("hashbench compare:") == 1
    assert "GPU available" not in printed and "Tip" not in printed and "DataLoader 0" not in printed
    full = json.loads((out / "runs.json").read_text())
    ok = next(r for r in full if r["status"] == "ok" and r["method"] == "bihalf")
    assert ok["curves"]["radius_precision"] and len(ok["bit_plus_rate"]) == 8 and len(ok["examples"]) == 2


def test_rerun_keeps_what_finished_skips_it_and_force_reruns(sweep, capsys):
    run, out = sweep
    run("--baselines", "", methods="bihalf", seeds="1")
    first = {r["method"]: r for r in _rows(out)}
    capsys.readouterr()
    run("--baselines", "", methods="bihalf,greedy", seeds="1")
    printed = capsys.readouterr().out
    assert "bihalf" in printed and "finished earlier, kept" in printed
    rows = {r["method"]: r for r in _rows(out)}
    assert set(rows) == {"bihalf", "greedy"} and rows["bihalf"]["finished"] == first["bihalf"]["finished"]
    run("--baselines", "", "--force", methods="bihalf", seeds="1")
    rows = {r["method"]: r for r in _rows(out)}
    assert rows["bihalf"]["finished"] != first["bihalf"]["finished"] and "greedy" in rows  # still summarised
    run("--baselines", "", "--trainer.max_epochs", "2", methods="bihalf", seeds="1")  # another config: a new run
    assert len(list((out / "runs").glob("bihalf_8b_seed0-*/result.json"))) == 2


def test_ctrl_c_keeps_finished_rows_writes_the_summary_and_says_how_to_continue(sweep, monkeypatch, capsys):
    run, out = sweep
    real_run = sweep_runner.SweepRunner.run

    def interrupted(self, cell, *args):
        if cell.method == "greedy":
            raise KeyboardInterrupt
        return real_run(self, cell, *args)

    monkeypatch.setattr(sweep_runner.SweepRunner, "run", interrupted)
    with pytest.raises(SystemExit) as info:
        run("--baselines", "", methods="bihalf,greedy", seeds="1")
    assert info.value.code == 130
    printed = capsys.readouterr().out
    assert "interrupted after 1 of 2 runs" in printed and "Run the same command again to continue" in printed
    assert [r["method"] for r in _rows(out)] == ["bihalf"] and (out / "summary.md").is_file()
    monkeypatch.setattr(sweep_runner.SweepRunner, "run", real_run)
    run("--baselines", "", methods="bihalf,greedy", seeds="1")
    assert sorted(r["method"] for r in _rows(out)) == ["bihalf", "greedy"]


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_ddp_sweep_prints_and_writes_once(strategy, tmp_path):
    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "hashbench", "compare", "--config", str(EXP / "data" / "cifar.yaml"),
         "--methods", "bihalf", "--baselines", "", "--bits", "8", "--seeds", "1", "--name", "d",
         "--out", str(tmp_path / "results"), "--data.root", str(tmp_path / "cifar"), *TINY,
         "--trainer.devices", "2", "--trainer.strategy", strategy],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("hashbench compare:") == 1 and out.stdout.count("[1/1] bihalf") == 1
    rows = _rows(tmp_path / "results" / "d")
    assert len(rows) == 1 and rows[0]["status"] == "ok" and float(rows[0]["mAP@1000"]) > 0
