"""A comparison's results folder: every run's ``result.json``, and the tables built from them (runs.csv, runs.json,
summary.md, figures, the W&B summary run), rebuilt from the folder under its results lock by any compare process."""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Callable, Optional

from . import comparison
from .provenance import row_code_text
from .sweep_grid import Cell
from .sweep_locks import atomic_write_text, results_lock
from .sweep_run import first_line


class ResultsStore:
    def __init__(self, args: argparse.Namespace, overrides: list[str], out: Path, code,
                 say: Callable[[str], None], writer: bool):
        self.args, self.overrides, self.out, self.code, self.say, self.writer = args, overrides, out, code, say, writer
        self.runs_dir = out / "runs"
        self.summary_text, self.info = "", None
        self.left_out: list[dict] = []

    # -- runs -----------------------------------------------------------------------------------------
    def run_dir(self, cell: Cell, digest: str) -> Path:
        """A run's folder: its config hash and the code that trains it (other code never resumes its checkpoint)."""
        return self.runs_dir / f"{cell.label}-{digest}-{self.code.code_id[:8]}"

    def _results(self, pattern: str = "*") -> list[dict]:
        rows = []
        for path in sorted(self.runs_dir.glob(f"{pattern}/result.json")):
            with contextlib.suppress(OSError, ValueError):
                rows.append({**json.loads(path.read_text()), "run_dir": path.parent.name})
        return rows

    def _ours(self, row: dict) -> bool:
        return row.get("code_id") == self.code.code_id

    def finished_rows(self) -> list[dict]:
        """Every finished run of this code in the folder, the newest per (method, bits, seed); with
        ``--keep-old-code`` also the newest run of other code where this code has none, marked ``other_code``."""
        newest: dict[tuple, dict] = {}
        self.left_out = []  # finished runs of other code not in the tables (named once by write_report)
        rows = self._results()
        for ours in (True, False):
            for row in (r for r in rows if self._ours(r) == ours):
                key = (row.get("method"), int(row.get("bits", 0)), int(row.get("seed", 0)))
                if not ours and not self.args.keep_old_code:
                    self.left_out.append(row)
                elif key not in newest or (newest[key]["other_code"] == (not ours)
                                           and row.get("finished", "") >= newest[key].get("finished", "")):
                    newest[key] = {**row, "other_code": not ours}
        self.left_out = [r for r in self.left_out
                         if (r.get("method"), int(r.get("bits", 0)), int(r.get("seed", 0))) not in newest]
        return list(newest.values())

    def previous(self, cell: Cell, digest: str) -> tuple[Optional[dict], Optional[dict]]:
        """The finished runs of this cell's config: (by this code, by other code), the newest of each."""
        rows = sorted(self._results(f"{cell.label}-{digest}*"), key=lambda r: r.get("finished", ""))
        ours = [r for r in rows if self._ours(r)]
        other = [r for r in rows if not self._ours(r)]
        return (ours[-1] if ours else None), (other[-1] if other else None)

    def write_result(self, run_dir: Path, row: dict) -> None:
        if not self.writer:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "result.json", json.dumps(row, indent=1, default=str))

    # -- tables ---------------------------------------------------------------------------------------
    def summary(self, rows: list[dict], info) -> str:
        """summary.md: what was compared (configs, overrides, code), then the report's tables; rows kept from
        other code (``--keep-old-code``) are announced under the head and listed in a footnote."""
        old = [r for r in rows if r.get("other_code")]
        head = (f"# {self.args.name}\n\n{self.code.text}; configs {', '.join(self.args.config)}; overrides "
                f"{' '.join(self.overrides) or 'none'}\n\n")
        if old:
            head += (f"**{len(old)} of {len(rows)} runs were trained by other code than {self.code.text} "
                     "(kept with --keep-old-code; listed at the end \u2020).**\n\n")
        if info is None:
            body = "No run finished.\n\n" + "\n".join(f"- {r['method']}, {r['bits']} bits, seed {r['seed']}: "
                                                      f"{r.get('error')}" for r in rows)
        else:
            body = comparison.summary_markdown(rows, info)
        if old:
            body = body.rstrip("\n") + "\n\n\u2020 Runs of other code (not " + self.code.text + "):\n\n" + "\n".join(
                f"- {r['method']}, {r['bits']} bits, seed {r['seed']}: {row_code_text(r)} ({r.get('run_dir', '')})"
                for r in sorted(old, key=lambda r: (r["method"], r["bits"], r["seed"]))) + "\n"
        return head + body

    def write_report(self, failed: list[dict]) -> list[dict]:
        """runs.csv/json, summary.md and the figures, from every finished run in the folder (+ this sweep's
        failures). Figures are a courtesy: a plotting problem is reported, never loses the tables."""
        if not self.writer:
            return self.finished_rows() + failed
        with results_lock(self.out):  # another compare on this folder may be writing them too
            rows = self.finished_rows() + [{**r, "other_code": False} for r in failed]
            if self.left_out:
                codes = sorted({row_code_text(r) for r in self.left_out})
                self.say(f"{len(self.left_out)} finished runs of other code ({'; '.join(codes)}) are left out of the "
                         f"tables, which hold {self.code.text} only (--keep-old-code keeps them, marked)")
            comparison.write_rows(self.out, rows)
            try:  # a report problem is said, never loses the finished runs (they are on disk already)
                self.info = comparison.TitleInfo.from_rows(rows) if any(r.get("status") == "ok" for r in rows) else None
                self.summary_text = self.summary(rows, self.info)
                atomic_write_text(self.out / "summary.md", self.summary_text + "\n")
                if self.info is not None:
                    comparison.plot_all(self.out, rows, self.info)
            except Exception as err:  # noqa: BLE001
                self.say(f"summary/figures not written: {type(err).__name__}: {first_line(err)} (runs.csv and "
                         "runs.json are complete)")
        return rows

    def wandb_summary(self, rows: list[dict], wandb_mode: Optional[str]) -> None:
        """One W&B run holding the comparison table and figures (call it when this sweep's runs logged to W&B)."""
        info = self.info
        if wandb_mode == "disabled" or info is None:
            return
        try:
            comparison.log_wandb_summary(rows, self.out, info, project="hashbench",
                                         group=f"{info.dataset}-{info.protocol}-comparison",
                                         name=f"compare-{self.args.name}", mode=wandb_mode)
        except Exception as err:  # noqa: BLE001 - the results folder is complete; W&B is a copy
            self.say(f"W&B summary run not written: {type(err).__name__}: {first_line(err)}")


def headline_section(summary: str) -> str:
    """The part of summary.md printed at the end of a sweep: everything up to its second section."""
    parts = summary.split("\n## ")
    return "\n## ".join(parts[:3]).strip() if len(parts) > 1 else summary.strip()


def result_line(row: dict) -> str:
    """The line a sweep prints when a run ends."""
    if row.get("status") != "ok":
        return f"FAILED {row.get('error', '')}"
    keys = [row["headline"]] + [k for k in row if k.startswith("mAP@") and k != row["headline"] and "_" not in k
                                and "H<=" not in k]
    shown = ", ".join(f"{k} {row[k]:.4f}" for k in keys if k in row)
    return f"{shown}  ({row.get('total_seconds', 0):.0f} s)"
