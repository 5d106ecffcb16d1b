"""Benchmark: memory of exact mAP@k stays bounded at 100,000 queries x 1,000,000 database x 64 bits.

Queries are processed in chunks and the database is streamed in blocks, so the working memory is
O(chunk x block + chunk x top_k), independent of the number of queries (a dense Q x N float32
distance matrix would need Q * N * 4 bytes: 400 GB here).

The full problem takes a long time on a small CPU, so ``--queries`` runs the first N queries of it
(against the full database) and extrapolates the time to ``--total-queries``; extrapolated numbers
are labelled as such.  Memory is sampled every 20 ms (VmRSS) during each call, for an increasing
number of queries, to show that the peak does not grow with it.  On glibc it also prints the heap's
bytes in use and the bytes free but kept by the allocator after each call (``mallinfo2``): RSS growth
with the number of queries that shows up only as "free but held" is allocator retention, not live data;
``MALLOC_MMAP_THRESHOLD_=131072`` turns glibc's adaptive threshold off and keeps RSS flat.

    python benchmarks/bench_map_memory.py --queries 2000
    MALLOC_MMAP_THRESHOLD_=131072 python benchmarks/bench_map_memory.py
"""

from __future__ import annotations

import argparse
import ctypes
import os
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from hashcore import retrieval_metrics as rm  # noqa: E402
from hashcore.retrieval_metrics import engine, inputs  # noqa: E402
from benchmarks.memory import PeakRSS, rss_mib  # noqa: E402


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_report() -> str:
    """glibc heap: bytes in use vs free but held by the allocator ('' where mallinfo2 is unavailable)."""
    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return ""
    fn.restype = _MallInfo2
    m = fn()
    return (f"; glibc heap {m.arena / 2**20:.0f} MiB = in use {m.uordblks / 2**20:.0f} + free but held "
            f"{m.fordblks / 2**20:.0f}, mmapped {m.hblkhd / 2**20:.0f} MiB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--total-queries", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=None,
                   help="run only the first N queries and extrapolate the time (default: all)")
    p.add_argument("--database", type=int, default=1_000_000)
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--top-k", type=int, default=1000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run_q = args.total_queries if args.queries is None else min(args.queries, args.total_queries)

    print(f"cpu count {os.cpu_count()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"device {args.device}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"problem: {args.total_queries} queries x {args.database} database x {args.bits} bits, "
          f"top_k={args.top_k}, {args.classes} classes")
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(args.seed)
    # bits as uint8 (0/1): the metric converts them to ±1 float32 itself
    db = torch.randint(0, 2, (args.database, args.bits), generator=g, dtype=torch.uint8).to(dev)
    dl = torch.randint(0, args.classes, (args.database,), generator=g).to(dev)
    q = torch.randint(0, 2, (run_q, args.bits), generator=g, dtype=torch.uint8).to(dev)
    ql = torch.randint(0, args.classes, (run_q,), generator=g).to(dev)
    prob = inputs._prepare(q, ql, db, dl)
    chunk = engine._chunk_size(args.chunk_size, prob, args.top_k)  # what mean_average_precision will use
    del prob
    dense_gb = args.total_queries * args.database * 4 / 1e9
    print(f"automatic chunk: {chunk} queries; database block: {engine._block_size(chunk, args.database)} items; "
          f"a dense {args.total_queries} x {args.database} float32 distance matrix would be {dense_gb:.0f} GB")
    rm.mean_average_precision(q[:4], ql[:4], db, dl, top_k=args.top_k)  # warm-up
    base = rss_mib()
    print(f"RSS after inputs + warm-up (baseline): {base:.0f} MiB{heap_report()}; "
          f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')}")

    sizes = sorted({max(1, run_q // 4), max(1, run_q // 2), run_q})
    for n in sizes:
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with PeakRSS() as sampler:
            t0 = time.perf_counter()
            value = rm.mean_average_precision(q[:n], ql[:n], db, dl, top_k=args.top_k, chunk_size=args.chunk_size)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - t0
        cuda = f", peak CUDA {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if dev.type == "cuda" else ""
        print(f"{n:>7} queries: mAP@{args.top_k} = {value:.6f}  time {elapsed:8.2f} s  "
              f"({elapsed / n * 1e3:.2f} ms/query)  peak RSS {sampler.peak:.0f} MiB "
              f"(+{sampler.peak - base:.0f} MiB over baseline){cuda}")
        print(f"         after the call: RSS +{rss_mib() - base:.0f} MiB{heap_report()}")
    if run_q < args.total_queries:
        print(f"EXTRAPOLATED (not measured) time for all {args.total_queries} queries: "
              f"{elapsed / run_q * args.total_queries / 60:.1f} min, from {run_q} queries")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
