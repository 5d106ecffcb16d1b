"""Synthetic sweep rows in compare's row schema for the report tests: four learned methods (one supervised),
the LSH and ITQ baselines, two seeds, two code lengths, one failed run.

Every value is a plain formula of (method, bits, seed), so a test can recompute any mean or std itself.
CIBHash beats ITQ at both lengths, GreedyHash is below it at both, BiHalfNet is below at 32 bits and above at
16 by a gap between 1 and 2 standard errors (not conclusive), and DCH is well within the seed noise at 32 bits.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

BITS = (16, 32)
SEEDS = (0, 1)
HEADLINE = "mAP@1000"
METHODS = [  # method, display, supervised, baseline; baselines run first, as a sweep may order them
    ("itq", "ITQ", False, True), ("cibhash", "CIBHash", False, False), ("lsh", "LSH", False, True),
    ("bihalf", "BiHalfNet", False, False), ("dch", "DCH", True, False), ("greedy", "GreedyHash", False, False)]
# headline mAP per (method, bits), and the seed-1 offset (seed 0 gets - offset, seed 1 + offset)
HEADLINE_MEAN = {("cibhash", 16): 0.62, ("cibhash", 32): 0.70, ("bihalf", 16): 0.457, ("bihalf", 32): 0.44,
                 ("dch", 16): 0.80, ("dch", 32): 0.505, ("greedy", 16): 0.40, ("greedy", 32): 0.43,
                 ("lsh", 16): 0.21, ("lsh", 32): 0.25, ("itq", 16): 0.45, ("itq", 32): 0.50}
SPREAD = {"cibhash": 0.010, "bihalf": 0.004, "dch": 0.030, "greedy": 0.006, "lsh": 0.020, "itq": 0.002}
FAILED = ("greedy", 32, 1)
NUM_DB = 300
QUERIES = (3, 8, 11)


def headline_value(method: str, bits: int, seed: int) -> float:
    return HEADLINE_MEAN[(method, bits)] + (SPREAD[method] if seed else -SPREAD[method])


def curves(method: str, bits: int, seed: int) -> dict:
    """Monotone toy curves on the shared grid (radii 0..bits, ranks 30..300) that differ by method and seed."""
    q = headline_value(method, bits, seed)
    radius = np.arange(bits + 1)
    r_recall = 1 - np.exp(-radius / (0.3 * bits))
    ranks = np.linspace(30, NUM_DB, 10)
    k_recall = ranks / NUM_DB
    return {"radius_radius": radius.tolist(), "radius_recall": r_recall.tolist(),
            "radius_precision": (0.1 + (q - 0.1) * (1 - r_recall)).tolist(),
            "rank_rank": ranks.tolist(), "rank_recall": k_recall.tolist(),
            "rank_precision": (0.1 + (q - 0.1) * (1 - k_recall)).tolist()}


def examples(method: str, seed: int) -> list[dict]:
    """Top 10 of each fixed query; better methods have more relevant items (query q's class = q % 3)."""
    good = {"cibhash": 8, "bihalf": 6, "dch": 9, "greedy": 5, "lsh": 3, "itq": 6}[method]
    out = []
    for q in QUERIES:
        retrieved = [(q * 7 + 13 * j + seed) % NUM_DB for j in range(10)]
        out.append({"query": q, "retrieved": retrieved, "relevant": [j < good for j in range(10)],
                    "distance": sorted(j // 2 for j in range(10))})
    return out


def make_rows(seeds=SEEDS, failed=FAILED, methods=METHODS) -> list[dict]:
    rows = []
    for bits in BITS:
        for method, display, supervised, baseline in methods:
            for seed in seeds:
                if (method, bits, seed) == failed:
                    rows.append({"method": method, "bits": bits, "seed": seed, "status": "failed",
                                 "error": "RuntimeError: boom", "git_commit": "abc1234"})
                    continue
                h = headline_value(method, bits, seed)
                rate = (0.5 + 0.3 * np.sin(np.arange(bits) + seed) * (0.2 if baseline else 1)).tolist()
                rows.append({
                    "method": method, "display": display, "bits": bits, "seed": seed, "status": "ok",
                    "dataset": "MNIST", "protocol": "cifar_like", "headline": HEADLINE,
                    "supervised": supervised, "baseline": baseline,
                    HEADLINE: h, "mAP@1000_tie_avg": h - 0.003, "P@1000": h - 0.05 + 0.001 * seed,
                    "P@all": 0.1, "mAP@H<=2": h + 0.1, "P@H<=2": h + 0.05, "R@H<=2": 0.2 + 0.01 * seed,
                    "bit_entropy": 0.99 - 0.01 * seed - (0.05 if supervised else 0.0), "distinct_codes": 1.0,
                    "fit_seconds": 10.0 + seed, "total_seconds": 12.0 + seed, "epochs": 5,
                    "num_query": 30, "num_database": NUM_DB, "git_commit": "abc1234", "config_hash": "f00d",
                    "curves": curves(method, bits, seed), "bit_plus_rate": rate,
                    "examples": examples(method, seed)})
    return rows


def thumbnails(rows: list[dict]) -> dict:
    """A distinct grey level per image, like the (split, index) images compare saves."""
    images = {}
    for r in rows:
        for e in r.get("examples", []):
            images[("query", e["query"])] = Image.new("L", (28, 28), 40 + 5 * e["query"])
            for d in e["retrieved"]:
                images[("database", d)] = Image.fromarray(
                    np.full((32, 32, 3), (d % 256, 128, 255 - d % 256), dtype=np.uint8))
    return images
