"""Benchmark: exact Hamming top-k search over 1,000,000 database codes — faiss vs the torch engine vs NumPy.

For each code length and method a fresh process builds the same seeded random database (bit-packed, as in a
codes folder), builds the index (timed apart), warms up, then searches the queries and reports queries per second
and the peak RSS over the process's baseline (RSS after the data is generated), sampled every 10 ms during the
build and the search. Every method must return the same neighbours (ties by database index): the parent checks
it on the queries all methods ran.

* ``faiss``: ``hashbench.search.HammingIndex`` with faiss ``IndexBinaryFlat`` (+ the exact tie resolution);
* ``torch``: the same class on the pure-torch engine (``hashcore.retrieval_metrics.hamming_topk``);
* ``numpy``: a plain per-query loop: XOR, popcount by a 256-entry table, stable argsort.

    python benchmarks/bench_search.py --threads 1                      # 300 queries (NumPy 30), 32/64/128 bits
    python benchmarks/bench_search.py --database 100000 --queries 50   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.memory import PeakRSS, rss_mib  # noqa: E402

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def numpy_topk(db_packed: np.ndarray, q_packed: np.ndarray, k: int):
    idx, dist = [], []
    for q in q_packed:
        d = _POPCOUNT[np.bitwise_xor(db_packed, q)].sum(1, dtype=np.int64)
        order = np.argsort(d, kind="stable")[:k]
        idx.append(order)
        dist.append(d[order])
    return np.stack(idx), np.stack(dist)


def child(method: str, bits: int, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from hashbench.search import HammingIndex
    if method == "faiss":
        import faiss
        faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed + bits)
    db = rng.integers(0, 256, (args.database, bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (args.queries, bits // 8), dtype=np.uint8)
    n_q = args.numpy_queries if method == "numpy" else args.queries
    q_codes = np.unpackbits(queries[:n_q], axis=1).astype(np.int8) * 2 - 1
    base = rss_mib()
    with PeakRSS() as build_peak:
        t0 = time.perf_counter()
        index = None if method == "numpy" else HammingIndex.from_packed(db, bits, method)
        build = time.perf_counter() - t0
    search = (lambda q: numpy_topk(db, pack(q), args.k)) if method == "numpy" else (lambda q: index.search(q, args.k))
    search(q_codes[:2])  # warm-up
    with PeakRSS() as search_peak:
        t0 = time.perf_counter()
        idx, dist = search(q_codes)
        elapsed = time.perf_counter() - t0
    return {"method": method, "bits": bits, "queries": n_q, "seconds": elapsed, "qps": n_q / elapsed,
            "build_seconds": build, "baseline_mib": base, "peak_build_mib": build_peak.peak - base,
            "peak_search_mib": search_peak.peak - base, "indices": idx.tolist(), "distances": dist.tolist()}


def pack(codes: np.ndarray) -> np.ndarray:
    return np.packbits(codes > 0, axis=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--numpy-queries", type=int, default=30, help="queries for the (slow) NumPy loop")
    p.add_argument("--bits", default="32,64,128")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--methods", default="faiss,torch,numpy")
    p.add_argument("--threads", type=int, default=1, help="threads per method (torch and faiss)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", nargs=2, metavar=("METHOD", "BITS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args)))
        return
    from benchmarks.machine import machine_info
    print(machine_info("cpu"))
    print(f"command: {' '.join(sys.argv)}")
    print(f"problem: {args.database:,} random database codes, top {args.k}, {args.queries} queries "
          f"({args.numpy_queries} for NumPy), {args.threads} thread(s), seed {args.seed}")
    print(f"{'bits':>4} {'method':>6} {'queries':>7} {'q/s':>10} {'search s':>9} {'build s':>8} "
          f"{'peak build MiB':>15} {'peak search MiB':>16}  load")
    for bits in [int(b) for b in args.bits.split(",")]:
        rows = []
        for method in args.methods.split(","):
            cmd = [sys.executable, __file__, "--child", method, str(bits), *sys.argv[1:]]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if out.returncode:
                print(f"{bits:>4} {method:>6} FAILED: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"{bits:>4} {method:>6} {r['queries']:>7} {r['qps']:>10.1f} {r['seconds']:>9.2f} "
                  f"{r['build_seconds']:>8.2f} {r['peak_build_mib']:>15.0f} {r['peak_search_mib']:>16.0f}  "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
        for i, a in enumerate(rows):  # every pair, on the queries both ran
            for b in rows[i + 1:]:
                n = min(a["queries"], b["queries"])
                same = a["indices"][:n] == b["indices"][:n] and a["distances"][:n] == b["distances"][:n]
                print(f"     {a['method']} vs {b['method']}: identical neighbours and distances on {n} queries: {same}")
                if not same:
                    raise SystemExit("MISMATCH between methods")


if __name__ == "__main__":
    main()
