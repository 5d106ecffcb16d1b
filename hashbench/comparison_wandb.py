"""One W&B run (job_type "summary") that holds a sweep's comparison: the mean ± std table of every
method × code length, the results folder's figures, and headline-vs-bits as a native W&B line plot."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from . import ledger
from .comparison_figures import FIGURES
from .comparison_rows import ComparisonRows, TitleInfo


def comparison_table(sweep: ComparisonRows, keys: list[str]) -> tuple[list[str], list[list]]:
    """Columns and rows of the comparison: one row per method × bits with finished runs; std is None for a
    single seed; ``vs ITQ`` is the headline gap to ITQ at that length (None without ITQ)."""
    h, itq = sweep.headline, sweep.itq
    columns = ["method", "label", "baseline", "supervised", "bits", "n_seeds", "seeds"]
    columns += [f"{k} {part}" for k in [h, *keys] for part in ("mean", "std")] + [f"{h} vs ITQ"]
    data = []
    for m in sweep.methods:
        for b in sweep.bits:
            runs = sweep.runs(m.method, b)
            if not runs:
                continue
            row = [m.method, m.label, m.baseline, m.supervised, b, len(runs),
                   ", ".join(str(r["seed"]) for r in runs)]
            for k in [h, *keys]:
                s = sweep.stat(m.method, b, k)
                row += [s.mean if s else None, s.std if s and s.n > 1 else None]
            ref = sweep.stat(itq.method, b, h) if itq and not m.is_itq else None
            row.append(sweep.stat(m.method, b, h).mean - ref.mean if ref else None)
            data.append(row)
    return columns, data


def log_wandb_summary(rows: list[dict], out: Path, title_info: TitleInfo | Mapping, project: str, group: str,
                      name: str, mode: str | None = None) -> None:
    """Log the comparison of ``rows`` and the PNGs already in ``out`` (run ``plot_all`` first) as one new
    W&B run; it never reuses or finishes a run that is still open in this process (``reinit="create_new"``).
    ``mode``: None follows ``WANDB_MODE``; "offline" writes it under ``$WANDB_DIR`` or ``out``."""
    import wandb

    info, sweep, out = TitleInfo.coerce(title_info), ComparisonRows(rows), Path(out)
    figures = [out / f for f in FIGURES if (out / f).is_file()]
    if not figures:
        raise FileNotFoundError(f"no figures in {out}: call hashbench.comparison.plot_all(out, rows, title_info) "
                                "before log_wandb_summary")
    constant = sweep.constant_keys()
    keys = [k for k in sweep.metric_keys() if k != sweep.headline and k not in constant]
    columns, data = comparison_table(sweep, keys)
    config = {"dataset": info.dataset, "protocol": info.protocol, "num_query": info.num_query,
              "num_database": info.num_database, "seeds": list(info.seeds), "headline": sweep.headline,
              "methods": [m.method for m in sweep.methods], "bits": sweep.bits,
              "constant_metrics": constant, "failed_runs": len(sweep.failed)}
    # reinit="create_new" (wandb >= 0.19.10): the default in a script returns a run still open in this process,
    # e.g. the sweep's last WandbLogger run, and the summary would land inside it
    run = wandb.init(project=project, group=group, name=name, job_type="summary", mode=mode, config=config,
                     dir=os.environ.get("WANDB_DIR", str(out)), reinit="create_new")
    try:
        h = sweep.headline
        payload = {"comparison": wandb.Table(columns=columns, data=data)}
        if against := ledger.table(rows):  # reported / ours / Δ / verdict where a ledger row matches
            payload["against_papers"] = wandb.Table(columns=ledger.TABLE_COLUMNS, data=against)
        for path in figures:
            payload[f"figures/{path.stem}"] = wandb.Image(str(path), caption=f"{info.setting}: {path.stem}")
        lines = [(m, [(b, s.mean) for b in sweep.bits if (s := sweep.stat(m.method, b, h))]) for m in sweep.methods]
        lines = [(m, pts) for m, pts in lines if pts]
        payload[f"{h}_vs_bits"] = wandb.plot.line_series(
            xs=[[b for b, _ in pts] for _, pts in lines], ys=[[v for _, v in pts] for _, pts in lines],
            keys=[m.label for m, _ in lines], title=f"{info.setting}: {h} vs code length (mean over seeds)",
            xname="bits")
        run.log(payload)
        for m, pts in lines:
            for b, v in pts:
                run.summary[f"{h}/{m.method}/{b}bits"] = v
    finally:
        run.finish()
