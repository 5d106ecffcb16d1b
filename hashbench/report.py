"""Turn sweep rows into a results folder a person can read without W&B: CSV, JSON, markdown, PNG plots."""
from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

IDENTITY = ("method", "bits", "seed")


def write_rows(out: Path, rows: list[dict]) -> None:
    """Machine-readable tables: ``runs.json`` (everything) and ``runs.csv`` (scalars), rewritten after each run
    so a crash or Ctrl-C in run N keeps runs 1..N-1."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(json.dumps(rows, indent=1))
    scalar_keys: list[str] = []
    for row in rows:
        for k, v in row.items():
            if k not in scalar_keys and not isinstance(v, (dict, list)):
                scalar_keys.append(k)
    with open(out / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=scalar_keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in scalar_keys})


def _mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


def summary_markdown(rows: list[dict], metrics: list[str]) -> str:
    """Mean ± std over seeds per method × bits, one table per metric (sample std; ± 0 with one seed)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    methods = sorted({r["method"] for r in ok})
    bits = sorted({int(r["bits"]) for r in ok})
    lines = []
    for metric in metrics:
        if not any(metric in r for r in ok):
            continue
        lines += [f"### {metric}", "", "| method | " + " | ".join(f"{b} bits" for b in bits) + " |",
                  "|---|" + "---|" * len(bits)]
        for m in methods:
            cells = []
            for b in bits:
                vals = [float(r[metric]) for r in ok if r["method"] == m and int(r["bits"]) == b and metric in r]
                if vals:
                    mean, sd = _mean_std(vals)
                    cells.append(f"{mean:.4f} ± {sd:.4f} (n={len(vals)})")
                else:
                    cells.append("–")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed:
        lines += ["### failed runs", ""] + [f"- {r['method']} {r['bits']} bits seed {r['seed']}: {r.get('error')}"
                                             for r in failed]
    return "\n".join(lines)


def plot_all(out: Path, rows: list[dict], headline: str) -> list[Path]:
    """PNG plots: PR curve by Hamming radius per code length, headline mAP vs bits, per-bit +1 rate."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    paths: list[Path] = []
    by_method_bits = defaultdict(list)
    for r in ok:
        by_method_bits[(r["method"], int(r["bits"]))].append(r)
    bits_all = sorted({b for _, b in by_method_bits})
    methods = sorted({m for m, _ in by_method_bits})

    fig, axes = plt.subplots(1, len(bits_all), figsize=(4.5 * len(bits_all), 4), squeeze=False)
    for ax, b in zip(axes[0], bits_all):
        for m in methods:
            runs = by_method_bits.get((m, b), [])
            curves = [r["curves"] for r in runs if r.get("curves") and "radius_precision" in r["curves"]]
            if curves:  # first seed's curve: curves of different seeds are not averaged point-wise
                ax.plot(curves[0]["radius_recall"], curves[0]["radius_precision"], marker=".", label=m)
        ax.set(title=f"{b} bits: PR by Hamming radius", xlabel="recall", ylabel="precision")
        ax.grid(alpha=0.3)
        ax.legend()
    paths.append(_save(fig, out / "pr_curves.png"))

    fig, ax = plt.subplots(figsize=(5, 4))
    for m in methods:
        xs, ys, es = [], [], []
        for b in bits_all:
            vals = [float(r[headline]) for r in by_method_bits.get((m, b), []) if headline in r]
            if vals:
                mean, sd = _mean_std(vals)
                xs.append(b), ys.append(mean), es.append(sd)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=m)
    ax.set(title=f"{headline} vs code length", xlabel="bits", ylabel=headline, xticks=bits_all)
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(_save(fig, out / "map_vs_bits.png"))

    fig, axes = plt.subplots(len(methods), len(bits_all), figsize=(3.5 * len(bits_all), 2.2 * len(methods)),
                             squeeze=False)
    for i, m in enumerate(methods):
        for j, b in enumerate(bits_all):
            ax = axes[i][j]
            runs = by_method_bits.get((m, b), [])
            if runs and runs[0].get("bit_plus_rate"):
                rate = runs[0]["bit_plus_rate"]
                ax.bar(range(len(rate)), rate)
                ax.axhline(0.5, color="k", lw=0.8)
            ax.set(ylim=(0, 1), title=f"{m}, {b} bits", xticks=[])
            if j == 0:
                ax.set_ylabel("+1 rate")
    paths.append(_save(fig, out / "bit_balance.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path
