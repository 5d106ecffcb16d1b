"""summary.md: the headline table first, then a verdict against ITQ per method and length, then the other
metrics that tell runs apart; metrics that are the same in every run are named once and left out."""
from __future__ import annotations

import math
from collections.abc import Mapping

from .ledger import annotate, markdown_section
from .comparison_rows import MethodInfo, Stat, ComparisonRows, TitleInfo

RETRIEVAL_PREFIXES = ("mAP@", "P@", "R@")
GLOSSARY = [  # (does a metric key need this entry?, entry)
    (lambda k: k.startswith("mAP@") and "H<=" not in k,
     "mAP@k: mean average precision over the top k of the Hamming ranking (ties by database index; @all = the "
     "whole database); `_tie_avg`: the same averaged over every order of tied distances"),
    (lambda k: k.startswith("P@") and "H<=" not in k, "P@k: precision of the top k"),
    (lambda k: "@H<=" in k,
     "P/R/mAP@H<=r: precision, recall and mAP of the items within Hamming radius r of the query"),
    (lambda k: k == "bit_entropy",
     "bit_entropy: mean per-bit entropy of the database codes (1 = every bit splits them 50/50)"),
    (lambda k: k == "distinct_codes", "distinct_codes: distinct database codes / database items"),
    (lambda k: k == "bit_balance_worst", "bit_balance_worst: the largest |share of +1 − 0.5| over bits"),
]


def summary_markdown(rows: list[dict], title_info: TitleInfo | Mapping) -> str:
    """Markdown summary of one sweep (the caller adds its own ``#`` title and provenance line above it)."""
    info = TitleInfo.coerce(title_info)
    sweep = ComparisonRows(rows)
    constant = sweep.constant_keys()
    others = [k for k in sweep.metric_keys() if k != sweep.headline and k not in constant]
    parts = [_setting_line(sweep, info), _headline_table(sweep, info), _itq_section(sweep)]
    retrieval = [k for k in others if k.startswith(RETRIEVAL_PREFIXES)]
    codes = [k for k in others if k not in retrieval]
    if retrieval:
        parts.append(_metric_table(sweep, "Other retrieval metrics", retrieval))
    if codes or any("fit_seconds" in r for r in sweep.ok):
        parts.append(_metric_table(sweep, "Codes and cost", codes, with_fit_time=True))
    if constant:
        parts.append(_constant_sentence(sweep, constant))
    if sweep.failed:
        parts.append(_failed_section(sweep))
    parts.append(markdown_section(annotate(rows)))
    parts.append(_glossary([sweep.headline, *others]))
    return "\n\n".join(p for p in parts if p) + "\n"


def _setting_line(sweep: ComparisonRows, info: TitleInfo) -> str:
    failed = f", {len(sweep.failed)} failed" if sweep.failed else ""
    return f"**{info.setting}; {info.seeds_text}; {len(sweep.rows)} runs{failed}.**"


def _headline_table(sweep: ComparisonRows, info: TitleInfo) -> str:
    h = sweep.headline
    best = {b: max((s.mean for m in sweep.methods if (s := sweep.stat(m.method, b, h))), default=None)
            for b in sweep.bits}
    single = all(len(runs) == 1 for runs in sweep.cells.values())
    spread = "One seed per cell, so no spread is shown" if single else "Mean ± sample std over seeds"
    lines = [f"## {h} (headline metric of the {info.protocol} protocol)", "",
             f"{spread}; n = finished seeds; **bold** = best mean at that length.", "",
             "| method | " + " | ".join(f"{b} bits" for b in sweep.bits) + " |",
             "|---|" + "---:|" * len(sweep.bits)]
    for m in sweep.methods:
        cells = []
        for b in sweep.bits:
            s = sweep.stat(m.method, b, h)
            text = s.text() if s else "–"
            cells.append(f"**{text}**" if s and best[b] is not None and s.mean == best[b] else text)
        lines.append(f"| {m.label} | " + " | ".join(cells) + " |")
    notes = []
    if any(m.baseline for m in sweep.methods):
        notes.append("(baseline): classic non-deep hashing for reference")
    if any(m.supervised for m in sweep.methods):
        notes.append("(supervised): trained with the class labels, the others without")
    if notes:
        lines += ["", "; ".join(notes) + "."]
    return "\n".join(lines)


def _itq_section(sweep: ComparisonRows) -> str:
    h = sweep.headline
    learned = [m for m in sweep.methods if not m.baseline]
    if not learned:
        return ""
    itq = sweep.itq
    lines = [f"## Against ITQ ({h})", ""]
    if itq is None:
        return "\n".join(lines + ["No ITQ baseline in these runs, so nothing says whether the deep methods "
                                  "beat classic hashing: add ITQ to the compared methods."])
    verdicts: dict[str, dict[int, str]] = {}  # method -> bits -> above/below/tie/unclear, for the wrap-up
    bullets = []
    for m in learned:
        for b in sweep.bits:
            line, verdict = _itq_line(sweep, m, itq, b)
            bullets.append(f"- {line}")
            if verdict:
                verdicts.setdefault(m.method, {})[b] = verdict
    lines += _wrap_up(learned, verdicts)
    if all(s.n == 1 for m in sweep.methods for b in sweep.bits if (s := sweep.stat(m.method, b, h))):
        lines += ["Every run has a single seed, so the seed-to-seed spread is unknown: a small gap may be noise.",
                  ""]
    return "\n".join(lines + bullets)


def _itq_line(sweep: ComparisonRows, m: MethodInfo, itq: MethodInfo, bits: int) -> tuple[str, str | None]:
    """The sentence for one method and length, and its verdict: above / below / tie / unclear (a gap under
    two standard errors of the seed spread)."""
    h = sweep.headline
    mine, ref = sweep.stat(m.method, bits, h), sweep.stat(itq.method, bits, h)
    who = f"{m.label}, {bits} bits"
    if mine is None:
        return f"{who}: no finished run to compare.", None
    if ref is None:
        return f"{who}: no finished ITQ run at {bits} bits to compare with.", None
    gap = mine.mean - ref.mean
    rel = f" ({gap / ref.mean:+.1%})" if ref.mean > 0 else ""
    values = f"{mine.mean:.4f} vs {ref.mean:.4f}"
    if round(gap, 4) == 0:
        text, verdict = f"{who}: ties ITQ, {values}", "tie"
    elif gap > 0:
        text, verdict = f"{who}: beats ITQ by {gap:+.4f}{rel}, {values}", "above"
    else:
        text, verdict = f"{who}: **below ITQ** by {gap:+.4f}{rel}, {values}", "below"
    if mine.n > 1 and ref.n > 1:
        stderr = math.sqrt(mine.std ** 2 / mine.n + ref.std ** 2 / ref.n)
        if verdict != "tie" and abs(gap) < 2 * stderr:
            text += f". Not conclusive: the gap is under 2 standard errors of the seed spread ({2 * stderr:.4f})"
            verdict = "unclear"
    elif mine.n > 1 or ref.n > 1:  # when every run has one seed, the section says so once
        text += f" (n={mine.n} vs n={ref.n}: one side has a single seed, its spread is unknown)"
    return text + ".", verdict


def _wrap_up(learned: list[MethodInfo], verdicts: dict[str, dict[int, str]]) -> list[str]:
    """One sentence: who beats ITQ at every length, whom ITQ beats at every length, and the rest."""
    def having(verdict):
        return [m.label for m in learned
                if verdicts.get(m.method) and all(v == verdict for v in verdicts[m.method].values())]
    above, below = having("above"), having("below")
    mixed = [m.label for m in learned if verdicts.get(m.method) and m.label not in above + below]
    out = []
    if above:
        out.append(f"{_join(above)} beat{'s' if len(above) == 1 else ''} ITQ at every compared code length.")
    if below:
        out.append(f"**ITQ beats {_join(below)} at every compared code length.**")
    if mixed:
        out.append(f"{_join(mixed)}: not ahead of ITQ at every length (below, tied or within seed noise at "
                   "some).")
    return [" ".join(out), ""] if out else []


def _metric_table(sweep: ComparisonRows, title: str, keys: list[str], with_fit_time: bool = False) -> str:
    show_time = with_fit_time and any("fit_seconds" in r for r in sweep.ok)
    heads = keys + (["fit time (s)"] if show_time else [])
    single = all(len(runs) == 1 for runs in sweep.cells.values())
    spread = "One seed per row, so no spread is shown." if single else "Mean ± sample std over the n finished seeds."
    lines = [f"## {title}", "", spread, "",
             "| method | bits | n | " + " | ".join(heads) + " |", "|---|---:|---:|" + "---:|" * len(heads)]
    for m in sweep.methods:
        for b in sweep.bits:
            runs = sweep.runs(m.method, b)
            if not runs:
                continue
            cells = [_short(s, 4) if (s := sweep.stat(m.method, b, k)) else "–" for k in keys]
            if show_time:
                s = sweep.stat(m.method, b, "fit_seconds")
                cells.append(_short(s, 1) if s else "–")
            lines.append(f"| {m.label} | {b} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _constant_sentence(sweep: ComparisonRows, constant: dict[str, float]) -> str:
    items = []
    for k, v in constant.items():
        reason = _whole_database_reason(sweep, k)
        items.append(f"{k} = {v:.4f}" + (f" ({reason})" if reason else ""))
    them = "it" if len(items) == 1 else "them"
    return (f"Left out of the tables because every run has the same value: {'; '.join(items)}. "
            f"runs.csv and runs.json keep {them}.")


def _whole_database_reason(sweep: ComparisonRows, key: str) -> str:
    """Why P@k is the same for every method when k covers the whole database (k is clamped to its size)."""
    k = key[2:] if key.startswith("P@") else ""
    sizes = {int(r["num_database"]) for r in sweep.ok if r.get("num_database")}
    if k == "all" or (k.isdigit() and sizes and int(k) >= max(sizes)):
        return "precision over the whole database is the share of relevant items, whatever the ranking"
    return ""


def _failed_section(sweep: ComparisonRows) -> str:
    labels = {m.method: m.label for m in sweep.methods}
    lines = ["## Failed runs (left out of every mean)", ""]
    lines += [f"- {labels[r['method']]}, {r['bits']} bits, seed {r['seed']}: {r.get('error') or 'no error recorded'}"
              for r in sweep.failed]
    return "\n".join(lines)


def _glossary(keys: list[str]) -> str:
    used = [text for needed, text in GLOSSARY if any(needed(k) for k in keys)]
    return "Metrics: " + "; ".join(used) + "." if used else ""


def _short(s: Stat, digits: int) -> str:
    return f"{s.mean:.{digits}f}" if s.n == 1 else f"{s.mean:.{digits}f} ± {s.std:.{digits}f}"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
