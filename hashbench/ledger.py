"""The reproduction ledger: numbers the papers report (experiments/reported/*.yaml) and how a sweep cell is held
against them. Pure logic, no Lightning.

A cell is (method, dataset, protocol, metric, bits, backbone) plus the per-seed values of that metric. It is
*compared* with a ledger row only when method, dataset, metric and bits agree and protocol and backbone agree
too; when only protocol or backbone differ the cell is shown as "not comparable (<why>)", never compared.

Verdict rule (values as fractions; the paper's percent is divided by 100):
* one seed: "one seed: no verdict" (Δ is still shown);
* ≥ 2 seeds, a row with one printed value (a paper's table): the standard error se = std/√n; "agrees" when
  |Δ| ≤ 2·se, or |Δ| ≤ the row's ``official_spread`` (the seed-to-seed spread of the official code, where known);
  otherwise "above paper"/"below paper";
* ≥ 2 seeds, a row with per-seed values (``per_seed``: runs of the official code, ``kind: official code run``): two
  samples of runs, so "agrees" when |Δ| ≤ 2·√(se_ours² + se_ref²), se_ref = std_ref/√n_ref; with a single reference
  seed its spread is unknown and taken to be ours (std_ours), which the verdict says. Else "above/below official".
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import ConfigError

LEDGER_DIR = Path(__file__).resolve().parent.parent / "experiments" / "reported"
REQUIRED = ("paper", "table", "method", "dataset", "protocol", "metric", "bits", "backbone", "value", "unit",
            "config", "source")
UNITS = {"percent": 100.0, "fraction": 1.0}


class LedgerError(ConfigError):
    """A ledger file is malformed (names the file and the row): a user error, exit 2."""


@dataclass(frozen=True)
class Reported:
    paper: str
    table: str
    method: str
    dataset: str
    protocol: str
    metric: str
    bits: int
    backbone: str
    value: float  # as a fraction in [0, 1], whatever the unit the paper printed
    config: str
    source: str
    official: float | None = None  # the official code's number, as a fraction, where known
    official_spread: float | None = None  # its seed-to-seed spread (fraction), where known
    # "paper table", "official code run" (the row's values are runs of the official code), or "reimplementation …"
    kind: str = "paper table"
    per_seed: tuple[float, ...] = ()  # the reference's per-seed values (fractions); value is their mean

    @property
    def reference(self) -> str:
        """What Δ is measured against, for the verdict ('paper', 'official' or 'reimplementation')."""
        for name in ("official", "reimplementation"):
            if self.kind.startswith(name):
                return name
        return "paper"


def _fraction(value, unit: str, where: str) -> float:
    if unit not in UNITS:
        raise LedgerError(f"{where}: unit {unit!r} is not one of {sorted(UNITS)}")
    v = float(value) / UNITS[unit]
    if not 0.0 <= v <= 1.0:
        raise LedgerError(f"{where}: value {value} {unit} is not a retrieval metric between 0 and 1")
    return v


def load_file(path: Path) -> list[Reported]:
    doc = yaml.safe_load(Path(path).read_text()) or {}
    rows = []
    for i, raw in enumerate(doc.get("rows") or []):
        row = {"paper": doc.get("paper"), **raw}
        where = f"{path}: row {i + 1}"
        per_seed = _per_seed(row, where)
        if per_seed and row.get("value") in (None, ""):
            row["value"] = sum(per_seed) / len(per_seed)
        missing = [k for k in REQUIRED if row.get(k) in (None, "")]
        if missing:
            raise LedgerError(f"{where} lacks {missing}; every ledger row needs {', '.join(REQUIRED)} "
                              "(value may be given as per_seed: {seed: value, ...} instead)")
        unit = str(row["unit"])
        official = row.get("official")
        spread = row.get("official_spread")
        rows.append(Reported(
            str(row["paper"]), str(row["table"]), str(row["method"]), str(row["dataset"]), str(row["protocol"]),
            str(row["metric"]), int(row["bits"]), str(row["backbone"]), _fraction(row["value"], unit, where),
            str(row["config"]), str(row["source"]),
            None if official is None else _fraction(official, unit, where),
            None if spread is None else float(spread) / UNITS[unit], str(row.get("kind") or "paper table"),
            tuple(_fraction(v, unit, where) for v in per_seed)))
    return rows


def _per_seed(row: dict, where: str) -> list[float]:
    """The row's ``per_seed`` values ({seed: value} or a list), in seed order; [] when it has none."""
    raw = row.get("per_seed")
    if raw in (None, "", [], {}):
        return []
    if isinstance(raw, dict):
        raw = [raw[k] for k in sorted(raw)]
    if not isinstance(raw, list) or not all(isinstance(v, (int, float)) for v in raw):
        raise LedgerError(f"{where}: per_seed must map each seed to its value, e.g. per_seed: {{0: 0.4606, 1: 0.45}}")
    if row.get("value") not in (None, ""):
        raise LedgerError(f"{where}: give either value or per_seed (value is then their mean), not both")
    return [float(v) for v in raw]


def load(folder: Path | None = None) -> list[Reported]:
    """Every row of every ``*.yaml`` in ``folder`` (default: $HASHBENCH_LEDGER, else experiments/reported/)."""
    folder = Path(folder or os.environ.get("HASHBENCH_LEDGER") or LEDGER_DIR)
    return [r for p in sorted(folder.glob("*.yaml")) for r in load_file(p)]


def select(rows: list[Reported], spec: str) -> list[Reported]:
    """'paper' or 'paper:table' (e.g. 'bihalf:table1')."""
    paper, _, table = spec.partition(":")
    return [r for r in rows if r.paper == paper and (not table or r.table == table)]


def _same(a, b) -> bool:
    """Names agree up to case and punctuation ('CIFAR-10' is 'cifar10', 'mAP@All' is 'map@all')."""
    def norm(x):
        return "".join(ch for ch in str(x).lower() if ch.isalnum() or ch == "@")
    return norm(a) == norm(b)


@dataclass(frozen=True)
class Comparison:
    row: Reported
    ours: float | None  # mean over seeds, fraction
    delta: float | None  # ours − reported
    verdict: str


def compare_cell(cell: dict, values: list[float], ledger: list[Reported]) -> Comparison | None:
    """The ledger row this cell is held against (or shown as not comparable with), or None when no row is
    about the same method, dataset, metric and bits. ``values`` are the cell's per-seed metric values."""
    candidates = [r for r in ledger if _same(r.method, cell.get("method")) and _same(r.dataset, cell.get("dataset"))
                  and _same(r.metric, cell.get("metric")) and int(r.bits) == int(cell.get("bits", -1))]
    if not candidates:
        return None
    exact = [r for r in candidates if _same(r.protocol, cell.get("protocol")) and _same(r.backbone, cell.get("backbone"))]
    if not exact:
        r = candidates[0]
        why = []
        if not _same(r.protocol, cell.get("protocol")):
            why.append(f"protocol {cell.get('protocol')} vs paper's {r.protocol}")
        if not _same(r.backbone, cell.get("backbone")):
            why.append(f"backbone {cell.get('backbone') or 'unrecorded'} vs paper's {r.backbone}")
        return Comparison(r, None, None, f"not comparable ({'; '.join(why)})")
    row = exact[0]
    if not values:
        return Comparison(row, None, None, "no finished run")
    n = len(values)
    mean = sum(values) / n
    delta = mean - row.value
    if n == 1:
        return Comparison(row, mean, delta, "one seed: no verdict")
    std = _std(values)
    if row.per_seed:  # two samples of runs: ours and the reference's seeds
        m = len(row.per_seed)
        ref_se = _std(row.per_seed) / math.sqrt(m) if m > 1 else std
        tolerance = 2 * math.sqrt(std ** 2 / n + ref_se ** 2)
        seeds = f"{n} seeds vs {m} {row.reference} seed{'s' if m > 1 else ''}" + (
            f"; the {row.reference} spread taken as ours" if m == 1 else "")
    else:
        tolerance = max(2 * std / math.sqrt(n), row.official_spread or 0.0)
        seeds = f"{n} seeds"
    side = "above" if delta > 0 else "below"
    verdict = "agrees" if abs(delta) <= tolerance else f"{side} {row.reference}"
    return Comparison(row, mean, delta, f"{verdict} (Δ {delta:+.4f}, tolerance ±{tolerance:.4f}, {seeds})")


def _std(values) -> float:
    values = list(values)
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


LEDGER_COLUMNS = ("reported", "reported_metric", "delta", "verdict", "reported_source")


def annotate(rows: list[dict], ledger_rows: list[Reported] | None = None) -> list[dict]:
    """Copies of ``rows`` where every finished run of a (method, bits) cell that has a ledger row carries the
    paper's number next to ours: reported, reported_metric, delta (mean over the cell's seeds − reported),
    verdict and reported_source. Rows without a ledger row come back unchanged."""
    out = [dict(r) for r in rows]
    if ledger_rows is None:
        try:
            ledger_rows = load()
        except LedgerError as err:  # a broken ledger file must not cost the sweep its runs.csv / summary.md
            print(f"hashbench: warning: {err} (reported numbers left out)", file=sys.stderr)
            return out
    ok = [r for r in out if r.get("status") == "ok"]
    cells: dict[tuple, list[dict]] = {}
    for r in ok:
        cells.setdefault((r.get("method"), r.get("bits")), []).append(r)
    for (method, bits), runs in cells.items():
        first = runs[0]
        metrics = [first.get("headline")] + [k for k in first if str(k).startswith("mAP@") and k != first.get("headline")]
        for metric in metrics:
            cell = {"method": method, "bits": bits, "metric": metric, "dataset": first.get("dataset"),
                    "protocol": first.get("protocol"), "backbone": first.get("backbone")}
            values = [float(r[metric]) for r in runs if isinstance(r.get(metric), (int, float))]
            found = compare_cell(cell, values, ledger_rows)
            if found is None:
                continue
            for r in runs:
                r.update(reported=round(found.row.value, 4), reported_metric=found.row.metric,
                         delta="" if found.delta is None else round(found.delta, 4), verdict=found.verdict,
                         reported_source=found.row.source)
            break
    return out


TABLE_COLUMNS = ["method", "bits", "metric", "reported", "ours (mean)", "delta", "verdict", "source"]


def table(rows: list[dict]) -> list[list]:
    """One line per (method, bits) cell with a ledger row, for summary.md and the W&B summary run."""
    annotated, seen, data = annotate(rows), set(), []
    for r in annotated:
        key = (r.get("method"), r.get("bits"))
        if "verdict" not in r or key in seen:
            continue
        seen.add(key)
        metric = r["reported_metric"]
        vals = [float(x[metric]) for x in annotated if (x.get("method"), x.get("bits")) == key
                and x.get("status") == "ok" and isinstance(x.get(metric), (int, float))]
        compared = vals and not str(r["verdict"]).startswith("not comparable")
        data.append([r["method"], r["bits"], metric, r["reported"], round(sum(vals) / len(vals), 4) if compared
                     else None, r["delta"] if isinstance(r["delta"], float) else None, r["verdict"],
                     r["reported_source"]])
    return data


def markdown_section(rows: list[dict]) -> str:
    """summary.md's 'Against the papers' table ('' when no cell has a ledger row)."""
    data = table(rows)
    if not data:
        return ""
    lines = [f"| {m} | {b} | {k} | {rep:.4f} | {'–' if ours is None else f'{ours:.4f}'} | "
             f"{'–' if d is None else f'{d:+.4f}'} | {v} | {src} |" for m, b, k, rep, ours, d, v, src in data]
    return "\n".join(["## Against the papers (experiments/reported/)", "",
                      "| " + " | ".join(TABLE_COLUMNS) + " |", "|---" * len(TABLE_COLUMNS) + "|", *lines, "",
                      "Verdict: 'agrees' when |Δ| ≤ 2 standard errors of the seeds (or the official code's spread); "
                      "against a row of per-seed official runs, 2 standard errors of the difference of the two means; "
                      "one seed gives no verdict; another protocol or backbone is never compared (docs/ledger.md)."])
