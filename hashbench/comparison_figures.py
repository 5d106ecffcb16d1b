"""The comparison figures of ``results/<name>/``; each names its dataset, protocol, metric and seeds, so a
PNG pasted alone into a paper draft or a chat still says what it shows.

Matplotlib's object API (``Figure``) is used instead of pyplot: no global figure state, no GUI backend.
"""
from __future__ import annotations

import textwrap

import numpy as np

from .comparison_rows import MethodInfo, ReportInputError, ComparisonRows, TitleInfo

DPI = 120
FIGURES = ("map_vs_bits.png", "pr_curves.png", "precision_at_n.png", "bit_balance.png", "retrieval_examples.png")
# Baselines in grey and dashed, so they read as references, not as methods under study; ITQ, the reference
# the summary compares against, gets the darkest.
_BASELINE_STYLES = [("0.2", "--", "s"), ("0.55", "-.", "^"), ("0.7", ":", "v")]


def line_styles(methods: list[MethodInfo]) -> dict[str, dict]:
    """Learned methods in colour with solid lines; baselines in grey, dashed; labels carry the role."""
    from matplotlib import colormaps

    colours = colormaps["tab10"].colors
    styles, learned, baselines = {}, 0, 0
    for m in sorted(methods, key=lambda m: not m.is_itq):
        if m.baseline:
            colour, ls, marker = _BASELINE_STYLES[baselines % len(_BASELINE_STYLES)]
            baselines += 1
        else:
            colour, ls, marker = colours[learned % len(colours)], "-", "D" if m.supervised else "o"
            learned += 1
        styles[m.method] = {"color": colour, "linestyle": ls, "marker": marker, "label": m.label}
    return styles


def new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def title(fig, *lines: str, fontsize: float = 10) -> None:
    """Figure title, each line wrapped to the figure's width (constrained layout makes room, it does not wrap)."""
    chars = int(fig.get_figwidth() * 120 / fontsize)  # ~ characters per line at this size
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in lines), fontsize=fontsize)


def averaged(info: TitleInfo, how: str) -> str:
    """'mean ± std over 2 seeds (0, 1)', or 'one run each, seed 0' for a single-seed sweep."""
    return f"one run each, seed {info.seeds[0]}" if len(info.seeds) == 1 else f"{how} over {info.seeds_text}"


def seeds_note(sweep: ComparisonRows, info: TitleInfo) -> str:
    """'' when every shown cell has all seeds, else a pointer to the failed runs."""
    full = len(info.seeds)
    short = any(0 < len(sweep.runs(m.method, b)) < full for m in sweep.methods for b in sweep.bits)
    return "; fewer where a run failed (summary.md)" if short else ""


def map_vs_bits_figure(sweep: ComparisonRows, info: TitleInfo, styles: dict):
    h = sweep.headline
    fig = new_figure(8.0, 4.6)
    ax = fig.subplots()
    step = 0.015  # nudge methods apart (in log2 units) so their error bars do not hide each other
    for i, m in enumerate(sweep.methods):
        points = [(b, s) for b in sweep.bits if (s := sweep.stat(m.method, b, h))]
        if not points:
            continue
        nudge = 2 ** (step * (i - (len(sweep.methods) - 1) / 2))
        xs = [b * nudge for b, _ in points]
        ax.errorbar(xs, [s.mean for _, s in points], yerr=[0 if s.n == 1 else s.std for _, s in points],
                    capsize=3, markersize=5, **styles[m.method])
    ax.set_xscale("log", base=2)
    ax.set_xlim(min(sweep.bits) / 1.4, max(sweep.bits) * 1.4)  # also keeps a single length from zooming in
    ax.set_xticks(sweep.bits, [str(b) for b in sweep.bits])
    ax.minorticks_off()
    ax.set_xlabel("code length (bits)")
    ax.set_ylabel(h if len(info.seeds) == 1 else f"{h} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="method")
    title(fig, info.setting, f"{h} vs code length, {averaged(info, 'mean ± std')}{seeds_note(sweep, info)}")
    return fig


def mean_curve(runs: list[dict], x_key: str, y_keys: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """Point-wise mean and std over seeds of curves sampled at the same x (radii 0..K, the same ranks)."""
    runs = [r for r in runs if r.get("curves") and all(k in r["curves"] for k in (x_key, *y_keys))]
    curves = [r["curves"] for r in runs]
    if not curves:
        return None
    x = np.asarray(curves[0][x_key], dtype=float)
    for c, r in zip(curves, runs):
        if not np.array_equal(np.asarray(c[x_key], dtype=float), x):
            raise ReportInputError(f"{x_key} of {r['method']} {r['bits']} bits seed {r['seed']} differs from "
                                   "the other seeds, so the curves cannot be averaged point-wise: were they "
                                   "evaluated on different query/database splits?")
    out = {"x": x, "n": np.asarray(len(curves))}
    for k in y_keys:
        ys = np.asarray([c[k] for c in curves], dtype=float)
        out[k], out[k + "_std"] = ys.mean(0), (ys.std(0, ddof=1) if len(curves) > 1 else np.zeros_like(x))
    return out


def _figure_legend(fig, axes, title: str | None = "method") -> None:
    """One legend for all panels, below them: every panel shows the same methods."""
    handles = {}
    for ax in np.ravel(axes):
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncols=min(len(handles), 4), title=title)


def pr_curves_figure(sweep: ComparisonRows, info: TitleInfo, styles: dict):
    cols = len(sweep.bits)
    fig = new_figure(max(4.0 * cols, 7.0), 8.2)
    axes = fig.subplots(2, cols, squeeze=False)
    kinds = [("rank", "by Hamming ranking (top N)", {}), ("radius", "by Hamming radius r", {"markersize": 3})]
    for row, (kind, kind_text, extra) in enumerate(kinds):
        for col, b in enumerate(sweep.bits):
            ax = axes[row][col]
            for m in sweep.methods:
                c = mean_curve(sweep.runs(m.method, b), f"{kind}_{kind}", (f"{kind}_precision", f"{kind}_recall"))
                if c is None:
                    continue
                style = dict(styles[m.method], marker=styles[m.method]["marker"] if kind == "radius" else None)
                ax.plot(c[f"{kind}_recall"], c[f"{kind}_precision"], **style, **extra)
            ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
                   title=f"{b} bits, {kind_text}" + (f" = 0..{b}" if kind == "radius" else ""))
            ax.title.set_fontsize(9)
            ax.grid(alpha=0.3)
    _figure_legend(fig, axes)
    title(fig, info.setting, f"precision–recall curves, {averaged(info, 'point-wise mean')}"
          f"{seeds_note(sweep, info)}", "(by radius: a query with nothing within radius r counts as precision 0)")
    return fig


def precision_at_n_figure(sweep: ComparisonRows, info: TitleInfo, styles: dict):
    cols = len(sweep.bits)
    fig = new_figure(max(4.0 * cols, 7.0), 4.6)
    axes = fig.subplots(1, cols, squeeze=False)[0]
    for ax, b in zip(axes, sweep.bits):
        for m in sweep.methods:
            c = mean_curve(sweep.runs(m.method, b), "rank_rank", ("rank_precision",))
            if c is None:
                continue
            ax.plot(c["x"], c["rank_precision"], **dict(styles[m.method], marker=None))
            if c["n"] > 1:
                ax.fill_between(c["x"], c["rank_precision"] - c["rank_precision_std"],
                                c["rank_precision"] + c["rank_precision_std"], color=styles[m.method]["color"],
                                alpha=0.15, linewidth=0)
        ax.set(ylim=(0, 1.02), xlim=(0, None), xlabel="N (database items retrieved)", ylabel="precision@N",
               title=f"{b} bits")
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes)
    title(fig, info.setting, f"precision@N by Hamming ranking, {averaged(info, 'mean (line) ± std (band)')}"
          f"{seeds_note(sweep, info)}")
    return fig


def bit_balance_figure(sweep: ComparisonRows, info: TitleInfo, styles: dict):
    from matplotlib.ticker import MaxNLocator

    methods = [m for m in sweep.methods if any(r.get("bit_plus_rate") for b in sweep.bits
                                               for r in sweep.runs(m.method, b))]
    cols = len(sweep.bits)
    fig = new_figure(max(3.6 * cols, 7.0), 1.75 * len(methods) + 1.3)
    axes = fig.subplots(len(methods), cols, squeeze=False, sharey=True)
    for i, m in enumerate(methods):
        for j, b in enumerate(sweep.bits):
            ax = axes[i][j]
            run = next((r for r in sweep.runs(m.method, b) if r.get("bit_plus_rate")), None)
            if run is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{m.label}, {b} bits:\nno finished run", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8)
                continue
            rate = np.asarray(run["bit_plus_rate"], dtype=float)
            # bars grow from 0.5, so an unbalanced bit stands out by its length
            ax.bar(range(len(rate)), rate - 0.5, bottom=0.5, width=0.85, color=styles[m.method]["color"])
            ax.axhline(0.5, color="k", lw=0.8, ls="--", label="0.5 = balanced bit (half the database is +1)")
            ax.set(ylim=(0, 1), xlim=(-0.8, len(rate) - 0.2), xlabel="bit", yticks=[0, 0.25, 0.5, 0.75, 1])
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
            entropy = f", bit entropy {run['bit_entropy']:.3f}" if "bit_entropy" in run else ""
            ax.set_title(f"{m.label}, {b} bits (seed {run['seed']}{entropy})", fontsize=8.5)
            if j == 0:
                ax.set_ylabel("share of +1")
    _figure_legend(fig, axes, title=None)
    title(fig, info.setting, "share of +1 per bit over the database codes, one seed per panel",
          "(bits of different seeds are different functions, so they are not averaged)")
    return fig
