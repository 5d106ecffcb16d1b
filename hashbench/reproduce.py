"""``hashbench reproduce <paper>[:<table>]``: run exactly the configs of those ledger rows through ``compare`` and
print the paper's numbers next to ours (docs/ledger.md).

    hashbench reproduce bihalf:table1 --seeds 3            # CIFAR-10(I), 16/32/64 bits, 3 seeds
    hashbench reproduce bihalf --trainer.max_epochs 1      # any compare option or LightningCLI override passes on
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import ledger
from .errors import ConfigError


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="hashbench reproduce", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="paper or paper:table of the ledger, e.g. bihalf:table1")
    p.add_argument("--seeds", default="3", help="seeds per cell (a count or a comma list; the verdict needs >= 2)")
    p.add_argument("--ledger", default=None, help="ledger folder (default: experiments/reported/)")
    p.add_argument("--out", default="results", help="parent folder of the results (one folder per config)")
    p.add_argument("--dry-run", action="store_true", help="print the compare commands and stop")
    return p.parse_known_args(argv)


def plan(rows: list[ledger.Reported], spec: str) -> list[tuple[str, list[str], list[int]]]:
    """(config, methods, bits) per config the selected rows name, in ledger order."""
    chosen = ledger.select(rows, spec)
    if not chosen:
        papers = sorted({f"{r.paper}:{r.table}" for r in rows})
        raise ConfigError(f"no ledger row for {spec!r}; the ledger (experiments/reported/) has: {', '.join(papers)}")
    by_config: dict[str, tuple[list[str], list[int]]] = {}
    for r in chosen:
        methods, bits = by_config.setdefault(r.config, ([], []))
        if r.method not in methods:
            methods.append(r.method)
        if r.bits not in bits:
            bits.append(r.bits)
    return [(config, methods, bits) for config, (methods, bits) in by_config.items()]


def main(argv: list[str]) -> None:
    args, overrides = parse(argv)
    rows = ledger.load(args.ledger)
    jobs = plan(rows, args.spec)
    chosen = ledger.select(rows, args.spec)
    results = []
    for config, methods, bits in jobs:
        name = f"reproduce_{args.spec.replace(':', '_')}_{Path(config).stem}"
        compare_argv = ["--config", config, "--methods", ",".join(methods), "--bits", ",".join(map(str, bits)),
                        "--seeds", args.seeds, "--baselines", "", "--name", name, "--out", args.out, *overrides]
        print("hashbench compare " + " ".join(a if a else "''" for a in compare_argv), flush=True)
        if args.dry_run:
            continue
        from .compare import main as compare_main  # torch and Lightning only once something runs
        results += compare_main(compare_argv)
    if not args.dry_run:
        print("\n" + paper_vs_ours(results, chosen))


def paper_vs_ours(results: list[dict], chosen: list[ledger.Reported]) -> str:
    """The selected ledger rows with our mean, Δ and verdict ('not run' where no cell matched)."""
    found = {(m, b, k): (ours, d, v) for m, b, k, _, ours, d, v, _ in ledger.table(results)}
    wide = max([len("paper:table")] + [len(f"{r.paper}:{r.table}") for r in chosen])
    name = max([len("method")] + [len(r.method) for r in chosen])
    lines = [f"{'paper:table':<{wide}} {'method':<{name}} {'bits':>4} {'metric':<9} {'reported':>8} {'ours':>7} {'Δ':>8}  "
             "verdict"]
    for r in chosen:
        ours, d, verdict = found.get((r.method, r.bits, r.metric), (None, None, "not run"))
        lines.append(f"{r.paper + ':' + r.table:<{wide}} {r.method:<{name}} {r.bits:>4} {r.metric:<9} {r.value:>8.4f} "
                     f"{'–' if ours is None else f'{ours:.4f}':>7} {'–' if d is None else f'{d:+.4f}':>8}  {verdict}")
    return "\n".join(lines)
