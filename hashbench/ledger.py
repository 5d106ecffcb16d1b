"""The reproduction ledger: numbers the papers report (experiments/reported/*.yaml) and how a sweep cell is held
against them. Pure logic, no Lightning.

A cell is (method, dataset, protocol, metric, bits, backbone) plus the per-seed values of that metric. It is
*compared* with a ledger row only when method, dataset, metric and bits agree and protocol and backbone agree
too; when only protocol or backbone differ the cell is shown as "not comparable (<why>)", never compared.

Verdict rule (values as fractions; the paper's percent is divided by 100):
* one seed: "one seed: no verdict" (Δ is still shown);
* ≥ 2 seeds: the standard error se = std/√n; "agrees" when |Δ| ≤ 2·se, or |Δ| ≤ the row's ``official_spread``
  (the seed-to-seed spread of the official code, where known); otherwise "above paper"/"below paper".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

LEDGER_DIR = Path(__file__).resolve().parent.parent / "experiments" / "reported"
REQUIRED = ("paper", "table", "method", "dataset", "protocol", "metric", "bits", "backbone", "value", "unit",
            "config", "source")
UNITS = {"percent": 100.0, "fraction": 1.0}


class LedgerError(ValueError):
    """A ledger file is malformed (names the file and the row)."""


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
        missing = [k for k in REQUIRED if row.get(k) in (None, "")]
        if missing:
            raise LedgerError(f"{where} lacks {missing}; every ledger row needs {', '.join(REQUIRED)}")
        unit = str(row["unit"])
        official = row.get("official")
        spread = row.get("official_spread")
        rows.append(Reported(
            str(row["paper"]), str(row["table"]), str(row["method"]), str(row["dataset"]), str(row["protocol"]),
            str(row["metric"]), int(row["bits"]), str(row["backbone"]), _fraction(row["value"], unit, where),
            str(row["config"]), str(row["source"]),
            None if official is None else _fraction(official, unit, where),
            None if spread is None else float(spread) / UNITS[unit]))
    return rows


def load(folder: Path = LEDGER_DIR) -> list[Reported]:
    return [r for p in sorted(Path(folder).glob("*.yaml")) for r in load_file(p)]


def select(rows: list[Reported], spec: str) -> list[Reported]:
    """'paper' or 'paper:table' (e.g. 'bihalf:table1')."""
    paper, _, table = spec.partition(":")
    return [r for r in rows if r.paper == paper and (not table or r.table == table)]


def _same(a, b) -> bool:
    return str(a).strip().lower() == str(b).strip().lower()


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
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    tolerance = max(2 * std / math.sqrt(n), row.official_spread or 0.0)
    verdict = "agrees" if abs(delta) <= tolerance else ("above paper" if delta > 0 else "below paper")
    return Comparison(row, mean, delta, f"{verdict} (|Δ| {abs(delta):.4f} vs tolerance {tolerance:.4f}, {n} seeds)")
