"""Turn sweep rows into a results folder a person can read without W&B: runs.csv / runs.json, summary.md and
PNG figures; optionally one W&B "summary" run holding the same comparison.

Public API (the pieces live in ``comparison_*.py``):

* ``write_rows(out, rows)``: runs.json (everything) and runs.csv (every scalar column);
* ``summary_markdown(rows, title_info) -> str``;
* ``plot_all(out, rows, title_info) -> list[Path]``;
* ``save_thumbnails(out, images) -> list[Path]``: images for ``retrieval_examples.png``;
* ``log_wandb_summary(rows, out, title_info, project, group, name, mode=None)``;
* ``TitleInfo`` (or a dict with its fields; ``TitleInfo.from_rows(rows)`` reads it from the rows).
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path

from .ledger import annotate as against_papers
from .comparison_examples import retrieval_examples_figure, save_thumbnails
from .comparison_figures import (DPI, FIGURES, bit_balance_figure, line_styles, map_vs_bits_figure,
                             precision_at_n_figure, pr_curves_figure)
from .comparison_rows import ReportInputError, ComparisonRows, TitleInfo
from .comparison_summary import summary_markdown
from .comparison_wandb import log_wandb_summary
from .sweep_locks import atomic_write_text

__all__ = ["write_rows", "summary_markdown", "plot_all", "save_thumbnails", "log_wandb_summary", "TitleInfo",
           "ReportInputError", "FIGURES"]


def write_rows(out: Path, rows: list[dict]) -> None:
    """Machine-readable tables: ``runs.json`` (everything) and ``runs.csv`` (scalars, constant columns too),
    rewritten after each run so a crash or Ctrl-C in run N keeps runs 1..N-1."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = against_papers(rows)  # reported / delta / verdict columns where a ledger row matches
    atomic_write_text(out / "runs.json", json.dumps(rows, indent=1))  # a reader never sees half a table
    scalar_keys: list[str] = []
    for row in rows:
        for k, v in row.items():
            if k not in scalar_keys and not isinstance(v, (dict, list)):
                scalar_keys.append(k)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=scalar_keys)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in scalar_keys})
    atomic_write_text(out / "runs.csv", text.getvalue())


def plot_all(out: Path, rows: list[dict], title_info: TitleInfo | Mapping) -> list[Path]:
    """Write every figure into ``out`` and return their paths. ``retrieval_examples.png`` is drawn when the rows
    carry ``examples`` (its thumbnails must be in ``out/thumbs/``: ``save_thumbnails``). A figure not drawn
    this time is deleted, so no stale PNG of an earlier sweep in the same folder stays behind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info, sweep = TitleInfo.coerce(title_info), ComparisonRows(rows)
    styles = line_styles(sweep.methods)
    figures = {}
    if any(r.get("examples") for r in sweep.ok):  # first: it fails fast when thumbnails are missing
        figures["retrieval_examples.png"] = retrieval_examples_figure(out, sweep, info)
    figures["map_vs_bits.png"] = map_vs_bits_figure(sweep, info, styles)
    if any(r.get("curves") for r in sweep.ok):
        figures["pr_curves.png"] = pr_curves_figure(sweep, info, styles)
        figures["precision_at_n.png"] = precision_at_n_figure(sweep, info, styles)
    if any(r.get("bit_plus_rate") for r in sweep.ok):
        figures["bit_balance.png"] = bit_balance_figure(sweep, info, styles)
    paths = []
    for name in FIGURES:
        if name in figures:
            figures[name].savefig(out / name, dpi=DPI)
            paths.append(out / name)
    for name in FIGURES:
        if out / name not in paths:
            (out / name).unlink(missing_ok=True)
    return paths
