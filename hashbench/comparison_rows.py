"""What every part of the report reads from sweep rows: who is who (labels, baselines, supervised methods),
the headline metric, mean ± std over seeds per method × bits, and which metrics carry information."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

# Scalars of a row that describe the run rather than measure retrieval.
METADATA_KEYS = frozenset({
    "method", "display", "bits", "seed", "status", "error", "dataset", "protocol", "headline", "supervised",
    "baseline", "fit_seconds", "total_seconds", "epochs", "num_query", "num_database", "git_commit",
    "config_hash", "backbone", "reported", "reported_metric", "delta", "verdict", "reported_source"})
ITQ = "itq"


class ReportInputError(ValueError):
    """Rows or title information the report cannot be built from."""


@dataclass(frozen=True)
class TitleInfo:
    """What every table and figure names: dataset, protocol, evaluation sizes and the seeds of the sweep."""
    dataset: str
    protocol: str
    num_query: int
    num_database: int
    seeds: tuple[int, ...]

    @classmethod
    def coerce(cls, value: "TitleInfo | Mapping") -> "TitleInfo":
        if isinstance(value, TitleInfo):
            return value
        if not isinstance(value, Mapping):
            raise ReportInputError(f"title_info must be a TitleInfo or a dict, got {type(value).__name__}")
        missing = [k for k in ("dataset", "protocol", "num_query", "num_database", "seeds") if k not in value]
        if missing:
            raise ReportInputError(f"title_info lacks {missing}; give dataset, protocol, num_query, "
                                   "num_database and seeds (or use TitleInfo.from_rows(rows))")
        return cls(str(value["dataset"]), str(value["protocol"]), int(value["num_query"]),
                   int(value["num_database"]), tuple(int(s) for s in value["seeds"]))

    @classmethod
    def from_rows(cls, rows: list[dict]) -> "TitleInfo":
        """Read from the finished rows (they must agree); seeds are those of every row, failed ones too."""
        ok = ok_rows(rows)
        if not ok:
            raise ReportInputError("no run finished (status 'ok'), so there is no dataset/protocol to name")
        found = {}
        for key in ("dataset", "protocol", "num_query", "num_database"):
            values = sorted({str(r.get(key)) for r in ok})
            if len(values) != 1:
                raise ReportInputError(f"the rows mix {key} values {values}; one report compares runs of one "
                                       "dataset and protocol: give each its own results folder (--name)")
            found[key] = ok[0].get(key)
        return cls(str(found["dataset"]), str(found["protocol"]), int(found["num_query"]),
                   int(found["num_database"]), tuple(sorted({int(r["seed"]) for r in rows})))

    @property
    def setting(self) -> str:
        """e.g. 'MNIST, cifar_like protocol (200 queries, 3,000 database items)'."""
        return (f"{self.dataset}, {self.protocol} protocol ({self.num_query:,} queries, "
                f"{self.num_database:,} database items)")

    @property
    def seeds_text(self) -> str:
        """e.g. '2 seeds (0, 1)' or '1 seed (0)'."""
        n = len(self.seeds)
        return f"{n} seed{'s' if n != 1 else ''} ({', '.join(map(str, self.seeds))})"


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1; NaN with one value) of n values."""
    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Stat":
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
        return cls(mean, std, n)

    def text(self, digits: int = 4) -> str:
        """'0.6012 ± 0.0100 (n=2)'; a single seed has no spread, so no ± is shown."""
        if self.n == 1:
            return f"{self.mean:.{digits}f} (n=1)"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} (n={self.n})"


@dataclass(frozen=True)
class MethodInfo:
    method: str
    display: str
    supervised: bool
    baseline: bool

    @property
    def label(self) -> str:
        """Display name with its role, so a legend or table row reads alone: 'DCH (supervised)'."""
        if self.baseline:
            return f"{self.display} (baseline)"
        return f"{self.display} (supervised)" if self.supervised else self.display

    @property
    def is_itq(self) -> bool:
        return self.method.lower() == ITQ


@dataclass
class ComparisonRows:
    """The rows of one comparison, grouped: ``cells[(method, bits)]`` = finished runs sorted by seed."""
    rows: list[dict]
    methods: list[MethodInfo] = field(init=False)
    bits: list[int] = field(init=False)
    cells: dict[tuple[str, int], list[dict]] = field(init=False)
    headline: str = field(init=False)

    def __post_init__(self) -> None:
        ok = ok_rows(self.rows)
        if not ok:
            raise ReportInputError("no run finished (status 'ok'); there is nothing to compare")
        self.methods = method_infos(self.rows)
        self.bits = sorted({int(r["bits"]) for r in self.rows})
        self.cells = {}
        for r in sorted(ok, key=lambda r: int(r["seed"])):
            self.cells.setdefault((r["method"], int(r["bits"])), []).append(r)
        headlines = sorted({str(r.get("headline")) for r in ok})
        if len(headlines) != 1 or headlines[0] == "None":
            raise ReportInputError(f"finished rows name headline metrics {headlines}; every row needs the same "
                                   "'headline' key (the protocol's headline metric, e.g. 'mAP@1000')")
        self.headline = headlines[0]
        lacking = [f"{r['method']} {r['bits']} bits seed {r['seed']}" for r in ok if self.headline not in r]
        if lacking:
            raise ReportInputError(f"headline metric {self.headline!r} is missing from run(s) {lacking}; "
                                   "evaluate them with the protocol's top_k")

    def runs(self, method: str, bits: int) -> list[dict]:
        return self.cells.get((method, bits), [])

    def stat(self, method: str, bits: int, key: str) -> Stat | None:
        values = [float(r[key]) for r in self.runs(method, bits) if _is_number(r.get(key))]
        return Stat.of(values) if values else None

    @property
    def ok(self) -> list[dict]:
        return ok_rows(self.rows)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r.get("status") != "ok"]

    @property
    def itq(self) -> MethodInfo | None:
        return next((m for m in self.methods if m.is_itq), None)

    def metric_keys(self) -> list[str]:
        """Numeric measurements (not run metadata) in the order the rows list them."""
        keys: list[str] = []
        for r in self.ok:
            keys += [k for k, v in r.items() if k not in METADATA_KEYS and k not in keys and _is_number(v)]
        return keys

    def constant_keys(self) -> dict[str, float]:
        """Metrics with the same value in every finished run (at least two), e.g. P@all on a balanced database;
        they tell the runs nothing apart. The headline is never among them."""
        constant = {}
        for key in self.metric_keys():
            values = [float(r[key]) for r in self.ok if _is_number(r.get(key))]
            if key != self.headline and len(values) >= 2 and len(values) == len(self.ok) and all(
                    math.isclose(v, values[0], rel_tol=1e-9, abs_tol=1e-12) for v in values):
                constant[key] = values[0]
        return constant


def ok_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "ok"]


def method_infos(rows: list[dict]) -> list[MethodInfo]:
    """One entry per method, learned methods first, then baselines, each in order of first appearance.
    Failed rows may lack display/supervised/baseline; a finished row of the same method fills them in."""
    infos: dict[str, MethodInfo] = {}
    for r in sorted(rows, key=lambda r: r.get("status") != "ok"):  # finished rows first: they are complete
        if r["method"] not in infos:
            infos[r["method"]] = MethodInfo(r["method"], str(r.get("display") or r["method"]),
                                            bool(r.get("supervised", False)), bool(r.get("baseline", False)))
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}
    return sorted(infos.values(), key=lambda m: (m.baseline, order[m.method]))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))
