"""Two `hashbench compare` processes on one results folder (console, started at once): every run is trained
exactly once, nobody resumes another's in-flight checkpoint, both exit cleanly with complete tables."""
import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.data_fixtures import write_cifar
from tests.test_cli import EXP, REPO

TINY = ["--data.download", "false", "--data.scale", "0.01", "--data.image_size", "32", "--data.num_workers", "0",
        "--data.batch_size", "8", "--model.backbone", "tiny_cnn", "--model.pretrained", "false",
        "--trainer.logger", "false", "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu"]
HASHBENCH = str(Path(sys.executable).parent / "hashbench")


def test_two_compares_on_one_folder_train_each_run_once(tmp_path):
    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)
    log = tmp_path / "fit_starts.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
           "FIT_MARKER_LOG": str(log)}
    cmd = [HASHBENCH, "compare", "--config", str(EXP / "data" / "cifar.yaml"), "--methods", "bihalf",
           "--baselines", "", "--bits", "8,16", "--seeds", "2", "--name", "c", "--out", str(tmp_path / "results"),
           "--examples", "0", "--data.root", str(tmp_path / "cifar"), *TINY,
           "--trainer.callbacks+=tests.fit_markers.FitStarts"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
    starts = Counter(line.split()[1] for line in log.read_text().splitlines())
    assert len(starts) == 4 and set(starts.values()) == {1}, starts  # 4 runs, each trained once
    # the second process met a run the first was training (skipped, said so), or, when it started late under load,
    # found it finished: either way it said why it did not train it
    assert any("is being trained by another compare (pid" in out or "finished earlier" in out for out, _ in outs)
    out = tmp_path / "results" / "c"
    for result in (out / "runs").glob("*/result.json"):
        assert json.loads(result.read_text())["resumed_from"] is None  # never from the other's checkpoint
    rows = list(csv.DictReader(open(out / "runs.csv")))
    assert sorted((r["bits"], r["seed"]) for r in rows) == [("16", "0"), ("16", "1"), ("8", "0"), ("8", "1")]
    assert json.loads((out / "runs.json").read_text()) and "BiHalfNet" in (out / "summary.md").read_text()


def test_the_lock_of_a_killed_compare_does_not_block_the_run(tmp_path):
    """A compare killed while training (kill -9, a preempted SLURM job) leaves no lock behind that blocks reruns."""
    from hashbench.sweep_locks import RunLock

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from hashbench.sweep_locks import RunLock; "
         "lock = RunLock(Path(sys.argv[1]), 'run'); assert lock.acquire(wait=False); print('held', flush=True); "
         "time.sleep(600)",
         str(tmp_path)], env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = RunLock(tmp_path, "run")
        assert not lock.acquire(wait=False)  # held by a live process
        assert lock.owner() == f"pid {holder.pid}"
    finally:
        holder.kill()
        holder.wait()
    assert lock.acquire(wait=False)  # the dead process' lock is gone with it
    lock.release()
