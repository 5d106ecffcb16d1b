"""Benchmark: evaluation scoring time per rank with 1 and 2 processes (gloo on CPU), and identical results.

RetrievalEvaluation gives every rank the whole database and scores only that rank's contiguous share of
the queries (``callbacks.retrieval.score_queries_sharded``); the per-query values are all-gathered and
reduced in query order.  This runs exactly that function, with the callback's default metrics (mAP@k,
P@k, the radius-2 ball re-ranked by continuous scores, PR curves), on the same seeded problem at each
world size, and prints per rank: the scoring time (its share against the whole database), the gather
time, and the reduction time; then whether every world size gave bit-for-bit the same metrics.

    python benchmarks/bench_eval_ranks.py                       # 10,000 x 50,000 x 64 bits, worlds 1,2
    python benchmarks/bench_eval_ranks.py --queries 2000 --database 10000

Threads per rank default to cores // world (what Lightning's DDP sets on CPU); ``--threads`` fixes them.
The codes' all-gather before scoring (done once per evaluation by the callback) is not timed here.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine_info  # noqa: E402
from hashcore import retrieval_metrics as rm  # noqa: E402
from callbacks.retrieval import score_queries_sharded  # noqa: E402
from hashcore.distributed import shard_bounds  # noqa: E402


def make_problem(args):
    """Seeded, identical on every rank: codes = a class centre with each bit flipped with probability
    ``--flip`` (so classes cluster and Hamming balls are not empty, as with trained codes), continuous
    scores with the codes' signs, single-label classes."""
    g = torch.Generator().manual_seed(args.seed)
    centres = torch.randint(0, 2, (args.classes, args.bits), generator=g).float() * 2 - 1

    def draw(n):
        labels = torch.randint(0, args.classes, (n,), generator=g)
        flips = torch.where(torch.rand(n, args.bits, generator=g) < args.flip, -1.0, 1.0)
        scores = centres[labels] * flips * torch.rand(n, args.bits, generator=g).add_(0.01)
        return rm.to_signed_codes(scores), labels, scores

    q, ql, qs = draw(args.queries)
    db, dl, dbs = draw(args.database)
    return q, ql, db, dl, qs, dbs


def _worker(rank: int, world: int, port: int, args, out):
    threads = args.threads or max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    q, ql, db, dl, qs, dbs = make_problem(args)
    kw = dict(top_ks=[args.top_k], radius=args.radius, tie_average=False, curves=True)
    # warm-up on a few queries (thread pools, allocator); every rank joins the collectives
    score_queries_sharded(q[:8 * world], ql[:8 * world], db, dl, qs[:8 * world], dbs, **kw)
    best = None
    for _ in range(args.repeats):
        if world > 1:
            dist.barrier()
        timings: dict = {}
        per_query = score_queries_sharded(q, ql, db, dl, qs, dbs, timings, **kw)
        t0 = time.perf_counter()
        metrics = rm.summarize(per_query)
        curves = rm.summarize_curves(per_query)
        timings["reduce_seconds"] = time.perf_counter() - t0
        if best is None or timings["score_seconds"] < best[0]["score_seconds"]:
            best = (timings, metrics, curves)
    timings, metrics, curves = best
    share = shard_bounds(args.queries, rank, world)
    record = {"rank": rank, "threads": threads, "share": share, **timings}
    records = [None] * world
    if world > 1:
        dist.all_gather_object(records, record)
        dist.destroy_process_group()
    else:
        records = [record]
    if rank == 0:
        out.put((records, metrics, {k: v.tolist() for k, v in curves.items()}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--database", type=int, default=50_000)
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--top-k", type=int, default=1000)
    p.add_argument("--radius", type=int, default=2)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--flip", type=float, default=0.1, help="probability that a bit differs from its class centre")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worlds", default="1,2", help="comma list of process counts")
    p.add_argument("--threads", type=int, default=None, help="torch threads per rank (default cores // world)")
    p.add_argument("--repeats", type=int, default=1, help="runs per world size; the fastest scoring is shown")
    args = p.parse_args()
    print(machine_info("cpu"))
    print(f"command: {' '.join(sys.argv)}")
    print(f"problem: {args.queries} queries x {args.database} database x {args.bits} bits, mAP@{args.top_k}, "
          f"P@{args.top_k}, radius {args.radius} ball re-ranked by scores, PR curves; {args.classes} classes, "
          f"bits flipped from the class centre with p={args.flip}, seed {args.seed}")
    ctx = mp.get_context("spawn")
    results = {}
    for world in [int(w) for w in args.worlds.split(",")]:
        out = ctx.Queue()
        port = _free_port()
        procs = [ctx.Process(target=_worker, args=(r, world, port, args, out)) for r in range(world)]
        t0 = time.perf_counter()
        for proc in procs:
            proc.start()
        records, metrics, curves = out.get()
        for proc in procs:
            proc.join()
            if proc.exitcode:
                raise SystemExit(f"rank process failed with exit code {proc.exitcode}")
        wall = time.perf_counter() - t0
        results[world] = (metrics, curves)
        print(f"\n== {world} process(es), load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} ==")
        for r in records:
            print(f"rank {r['rank']}: {r['threads']} thread(s), queries {r['share'][0]}:{r['share'][1]} "
                  f"({r['share'][1] - r['share'][0]}), scoring {r['score_seconds']:.2f} s, "
                  f"gather {r['gather_seconds']:.3f} s, reduce {r['reduce_seconds']:.3f} s")
        slowest = max(r["score_seconds"] + r["gather_seconds"] for r in records)
        print(f"evaluation time (slowest rank's scoring + gather): {slowest:.2f} s; process wall incl. start "
              f"and data generation {wall:.1f} s")
        print("metrics: " + ", ".join(f"{k} {v:.6f}" for k, v in metrics.items()))
    worlds = list(results)
    for w in worlds[1:]:
        same = results[w][0] == results[worlds[0]][0] and results[w][1] == results[worlds[0]][1]
        print(f"\n{w} processes vs {worlds[0]}: metrics and curves bit-for-bit identical: {same}")
        if not same:
            raise SystemExit("MISMATCH between world sizes")


if __name__ == "__main__":
    main()
