"""Benchmark: exact mAP@k of hashcore.retrieval_metrics vs a per-query NumPy loop (CalcTopMap style).

Default problem: 10,000 queries x 50,000 database items x 64 bits, random codes, 10-class labels
(seeded).  The reference is the per-query loop of DeepHash-pytorch ``CalcTopMap`` (``tests/oracles.py``) with a
*stable* argsort, so both rank ties by database index and must give the same number (to ~1e-9).

    python benchmarks/bench_map.py                          # full reference loop (slow: minutes)
    python benchmarks/bench_map.py --reference-queries 500  # loop timed on 500 queries, extrapolated

Peak memory is the process high-water mark (``ru_maxrss``) measured right after each step; the fast
path runs first, so its line is its own peak (inputs included).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from hashcore.retrieval_metrics import mean_average_precision  # noqa: E402
from tests.oracles import calc_top_map_loop  # noqa: E402  (DeepHash-pytorch CalcTopMap, stable argsort)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_data(args):
    g = torch.Generator().manual_seed(args.seed)
    q = torch.randint(0, 2, (args.queries, args.bits), generator=g, dtype=torch.uint8).float() * 2 - 1
    db = torch.randint(0, 2, (args.database, args.bits), generator=g, dtype=torch.uint8).float() * 2 - 1
    ql = torch.randint(0, args.classes, (args.queries,), generator=g)
    dl = torch.randint(0, args.classes, (args.database,), generator=g)
    return q, ql, db, dl


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--database", type=int, default=50_000)
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--top-k", type=int, default=1000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--reference-queries", type=int, default=None,
                   help="time the NumPy loop on the first N queries only and extrapolate (labelled)")
    p.add_argument("--repeats", type=int, default=1, help="time the fast path this many times, report the best")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print("== machine ==")
    print(f"cpu count {os.cpu_count()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"numpy {np.__version__}, python {platform.python_version()}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"== problem: {args.queries} queries x {args.database} database x {args.bits} bits, "
          f"top_k={args.top_k}, {args.classes} classes, seed {args.seed} ==")

    q, ql, db, dl = make_data(args)
    print(f"peak RSS after building inputs: {peak_rss_mib():.0f} MiB")

    dev = torch.device(args.device)
    qd, qld, dbd, dld = (t.to(dev) for t in (q, ql, db, dl))
    mean_average_precision(qd[:8], qld[:8], dbd, dld, top_k=args.top_k)  # warm-up (thread pools, kernels)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    fast_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fast = mean_average_precision(qd, qld, dbd, dld, top_k=args.top_k, chunk_size=args.chunk_size)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        fast_times.append(time.perf_counter() - t0)
    fast_time = min(fast_times)
    print(f"[fast]      mean_average_precision: mAP@{args.top_k} = {fast:.12f}   time {fast_time:.3f} s"
          + (f" (best of {args.repeats}: {', '.join(f'{t:.2f}' for t in fast_times)})" if args.repeats > 1 else ""))
    print(f"[fast]      peak RSS (process, inputs included): {peak_rss_mib():.0f} MiB"
          + (f"; peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if dev.type == "cuda" else ""))

    n_ref = args.queries if args.reference_queries is None else min(args.reference_queries, args.queries)
    qB, rB = q[:n_ref].numpy(), db.numpy()
    eye = np.eye(args.classes, dtype=np.float32)
    qL, rL = eye[ql[:n_ref].numpy()], eye[dl.numpy()]
    t0 = time.perf_counter()
    ref = calc_top_map_loop(rB, qB, rL, qL, args.top_k)
    ref_time = time.perf_counter() - t0
    if n_ref < args.queries:
        fast_subset = mean_average_precision(q[:n_ref], ql[:n_ref], db, dl, top_k=args.top_k)
        ref_full = ref_time * args.queries / n_ref
        print(f"[reference] NumPy CalcTopMap loop (stable argsort) on the first {n_ref} queries: "
              f"mAP@{args.top_k} = {ref:.12f}   time {ref_time:.3f} s")
        print(f"[fast]      same {n_ref} queries: mAP@{args.top_k} = {fast_subset:.12f}   "
              f"|diff| = {abs(ref - fast_subset):.2e}")
        print(f"[reference] EXTRAPOLATED to {args.queries} queries: {ref_full:.1f} s  "
              f"(x{args.queries / n_ref:.1f}, not measured)")
        diff, ratio_label = abs(ref - fast_subset), "speed ratio (extrapolated reference / fast)"
    else:
        ref_full = ref_time
        print(f"[reference] NumPy CalcTopMap loop (stable argsort): mAP@{args.top_k} = {ref:.12f}   "
              f"time {ref_time:.3f} s")
        diff, ratio_label = abs(ref - fast), "speed ratio (reference / fast)"
        print(f"|fast - reference| = {diff:.2e}")
    print(f"{ratio_label}: {ref_full / fast_time:.1f}x")
    print(f"peak RSS at the end (process): {peak_rss_mib():.0f} MiB")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if diff > 1e-9:
        raise SystemExit(f"MISMATCH: fast and reference mAP differ by {diff:.3e}")


if __name__ == "__main__":
    main()
