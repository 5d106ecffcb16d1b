"""``hashbench compare`` one run at a time vs ``--parallel N``, on the embedded MNIST with the demo's settings, and
the wall time of a 36-run CIFAR-10 grid on 8 GPUs projected from the measured per-run costs.

Measured, on this machine: the wall time of the same 12-run grid (default: 4 methods × 3 code lengths, one seed,
``experiments/demo_mnist.yaml`` + ``experiments/demo_methods.yaml``) sequential and with ``--parallel N``, each into
its own results folder, both reading a feature cache warmed beforehand (so neither pays for MobileNetV2); whether the
two runs.csv hold the same rows (all columns but the timings); each run's fit and test seconds.
Estimated (printed as such): a CIFAR-10 grid (DCH protocol: 5,000 train images, 1,000 queries, 54,000 database
items; the methods' official epochs from hashbench/paper_settings.py; 3 seeds) as 36 runs, each costing the measured
MNIST seconds per (epoch × train image) for its fit and per (query × database item) for its test, scheduled
longest-first on 8 slots, plus the measured start-up of one worker process. The backbone's feature extraction
(VGG16 over 60,000 images, once for the grid) and GPU speed are not measured here.

    OMP_NUM_THREADS=1 python benchmarks/bench_sweep_parallel.py --parallel 2
"""
from __future__ import annotations

import argparse
import csv
import heapq
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TIMING = ("fit_seconds", "total_seconds", "finished", "run_dir")
DEMO_TRAIN = 1000  # experiments/demo_mnist.yaml: train_size 100 per class
CIFAR = {"train": 5000, "query": 1000, "database": 54000, "seeds": 3, "slots": 8}


def compare(workdir: Path, name: str, args: argparse.Namespace, methods: str, bits: str, *extra: str) -> float:
    cmd = [str(Path(sys.executable).parent / "hashbench"), "compare", "--config", str(REPO / "experiments" /
           "demo_mnist.yaml"), "--method-config", str(REPO / "experiments" / "demo_methods.yaml"), "--methods", methods,
           "--baselines=", "--bits", bits, "--seeds", "1", "--examples", "0", "--name", name, "--out",
           str(workdir / "results"), "--trainer.logger", "false", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    print(f"$ {shlex.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"compare failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    for line in done.stdout.splitlines():
        if line.startswith("[") or "at a time" in line:
            print("   ", line)
    return wall


def rows(folder: Path) -> list[dict]:
    return sorted(csv.DictReader(open(folder / "runs.csv")), key=lambda r: (r["method"], int(r["bits"])))


def without_timing(table: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in table]


def makespan(costs: list[float], slots: int) -> float:
    """Longest-first list scheduling: each run goes to the slot that frees first."""
    free = [0.0] * slots
    for c in sorted(costs, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + c)
    return max(free)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="bihalf,greedy,lsh,itq")
    p.add_argument("--bits", default="16,32,64")
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--workdir", default=None, help="default: a new temporary folder")
    a = p.parse_args()
    from benchmarks.machine import machine_info
    from hashbench import paper_settings

    print(machine_info("cpu"), flush=True)
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="bench_sweep_parallel_"))
    workdir.mkdir(parents=True, exist_ok=True)
    n_runs = len(a.methods.split(",")) * len(a.bits.split(","))
    warm = compare(workdir, "warmup", a, a.methods.split(",")[-1], a.bits.split(",")[0])
    print(f"feature cache warmed ({warm:.0f} s, not counted)")
    seq = compare(workdir, "sequential", a, a.methods, a.bits)
    par = compare(workdir, "parallel", a, a.methods, a.bits, "--parallel", str(a.parallel))
    seq_rows, par_rows = rows(workdir / "results" / "sequential"), rows(workdir / "results" / "parallel")
    same = without_timing(seq_rows) == without_timing(par_rows)
    load = tuple(round(x, 2) for x in os.getloadavg())

    print(f"\n## measured: {n_runs}-run grid ({a.methods} × {a.bits} bits), embedded MNIST, demo settings")
    print("| mode | wall time (s) | sum of per-run times (s) |\n|---|---:|---:|")
    for mode, wall, table in (("sequential", seq, seq_rows), (f"--parallel {a.parallel}", par, par_rows)):
        print(f"| {mode} | {wall:.1f} | {sum(float(r['total_seconds']) for r in table):.1f} |")
    print(f"speed-up: {seq / par:.2f}x with {a.parallel} runs at a time on {os.cpu_count()} cores")
    print(f"identical results (runs.csv minus {', '.join(TIMING)}): {'yes' if same else 'no'}")
    print(f"load average at the end (1, 5, 15 min): {load}")
    # what one compare process spends outside its runs (start-up, config hashing, tables)
    overhead = max(0.0, seq - sum(float(r["total_seconds"]) for r in seq_rows))

    print("\n## estimated: 36-run CIFAR-10 grid on 8 GPUs, from the per-run costs above")
    print("| method | MNIST fit s per epoch·image (measured) | MNIST test s per query·item (measured) | CIFAR epochs "
          "| est. s per CIFAR run |\n|---|---:|---:|---:|---:|")
    costs = []
    for method in a.methods.split(","):
        mine = [r for r in seq_rows if r["method"] == method]
        fit = sum(float(r["fit_seconds"]) / max(1, int(r["epochs"])) / DEMO_TRAIN for r in mine) / len(mine)
        test = sum((float(r["total_seconds"]) - float(r["fit_seconds"])) / (int(r["num_query"]) *
                   int(r["num_database"])) for r in mine) / len(mine)
        per_bits = []
        for bits in (int(b) for b in a.bits.split(",")):
            epochs = paper_settings.epochs_for(method, bits)
            per_bits.append(fit * epochs * CIFAR["train"] + test * CIFAR["query"] * CIFAR["database"])
            costs += [per_bits[-1]] * CIFAR["seeds"]
        epochs_text = "/".join(str(paper_settings.epochs_for(method, int(b))) for b in a.bits.split(","))
        print(f"| {method} | {fit:.2e} | {test:.2e} | {epochs_text} | {sum(per_bits) / len(per_bits):.0f} |")
    one_at_a_time = sum(costs) + overhead
    eight = makespan(costs, CIFAR["slots"]) + overhead
    print(f"{len(costs)} runs one at a time: {one_at_a_time / 3600:.1f} h; {CIFAR['slots']} at a time "
          f"(--parallel {CIFAR['slots']}): {eight / 3600:.1f} h ({one_at_a_time / eight:.1f}x), with this machine's "
          "CPU seconds per run and one compare process' start-up and bookkeeping of "
          f"{overhead:.0f} s (measured); GPU speed and the VGG16 feature extraction are not in it")
    print(f"results: {workdir}/results/")


if __name__ == "__main__":
    main()
