"""``hashbench compare``: every method × bits × seed through the same LightningCLI configs, one results folder.

    hashbench compare --config experiments/data/mnist.yaml --methods cib,bihalf,dch,greedy \
        --bits 16,32,64 --seeds 3 --name mnist  [any LightningCLI override, e.g. --trainer.max_epochs 5]

Per run: ``fit`` with ``--config experiments/methods/<method>.yaml --config <your configs>`` (your configs
come last, so they override the method's defaults), then ``test`` on the test queries with the final
weights. Writes ``results/<name>/``: runs.csv / runs.json (method, bits, seed, every metric, wall time,
git commit), summary.md (mean ± std), pr_curves.png, map_vs_bits.png, bit_balance.png.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
from pathlib import Path

from . import report

METHODS_DIR = Path(__file__).resolve().parent.parent / "experiments" / "methods"
ALIASES = {"cib": "cib", "cibhash": "cib", "bihalf": "bihalf", "bihalfnet": "bihalf", "dch": "dch",
           "greedy": "greedy", "greedyhash": "greedy"}


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="hashbench compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True, help="LightningCLI config(s) for data/trainer")
    p.add_argument("--methods", default="cib,bihalf,dch,greedy", help=f"comma list of {sorted(set(ALIASES))}")
    p.add_argument("--bits", default="16,32,64", help="comma list of code lengths")
    p.add_argument("--seeds", default="1", help="a count N (seeds 0..N-1) or a comma list of seeds")
    p.add_argument("--name", default=None, help="results folder name (default: first config's stem)")
    p.add_argument("--out", default="results", help="parent folder of the results")
    p.add_argument("--headline", default=None, help="metric for map_vs_bits.png (default: first mAP@k)")
    args, overrides = p.parse_known_args(argv)
    unknown = [m for m in args.methods.split(",") if m.strip().lower() not in ALIASES]
    if unknown:
        p.error(f"unknown method(s) {unknown}; choose from {sorted(set(ALIASES))}")
    try:
        args.bits = [int(b) for b in args.bits.split(",")]
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error("--bits and --seeds take integers, e.g. --bits 16,32,64 --seeds 3")
    if any(b < 1 or b > 4096 for b in args.bits):
        p.error(f"--bits must be between 1 and 4096, got {args.bits}")
    args.seeds = list(range(seeds[0])) if len(seeds) == 1 and "," not in args.seeds else seeds
    args.methods = [ALIASES[m.strip().lower()] for m in args.methods.split(",")]
    for c in args.config:
        if not Path(c).is_file():
            p.error(f"config file not found: {c}")
    args.name = args.name or Path(args.config[0]).stem
    return args, overrides


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_one(method: str, bits: int, seed: int, configs: list[str], overrides: list[str], run_dir: Path) -> dict:
    """Fit + test one configuration in this process; returns its result row."""
    from callbacks.retrieval import RetrievalEvaluation

    from .cli import run_cli

    args = ["--config", str(METHODS_DIR / f"{method}.yaml")]
    for c in configs:
        args += ["--config", c]
    args += ["--model.bits", str(bits), "--seed_everything", str(seed),
             "--trainer.default_root_dir", str(run_dir), *overrides]
    cli = run_cli(args, run=False)
    evaluator = next((c for c in cli.trainer.callbacks if isinstance(c, RetrievalEvaluation)), None)
    if evaluator is None:
        evaluator = RetrievalEvaluation()
        cli.trainer.callbacks.append(evaluator)
    evaluator.save_dir = str(run_dir / "retrieval")
    for logger in cli.trainer.loggers:  # W&B: compare methods at a glance
        if type(logger).__name__ == "WandbLogger":
            dataset = type(cli.datamodule).__name__
            logger._wandb_init.update(group=f"{dataset}-{bits}bit", name=f"{method}-{bits}b-seed{seed}",
                                      tags=sorted({*logger._wandb_init.get("tags", []), method}),
                                      job_type="compare")
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_s = time.perf_counter() - t0
    cli.trainer.test(cli.model, datamodule=cli.datamodule)
    results = evaluator.last_results or {}
    return {"method": method, "bits": bits, "seed": seed, "status": "ok",
            "dataset": type(cli.datamodule).__name__, "protocol": getattr(cli.datamodule, "protocol", ""),
            **{k: float(v) for k, v in results.get("metrics", {}).items()},
            "fit_seconds": round(fit_s, 2), "total_seconds": round(time.perf_counter() - t0, 2),
            "epochs": cli.trainer.current_epoch, "num_query": results.get("num_query"),
            "num_database": results.get("num_database"),
            "curves": results.get("curves", {}), "bit_plus_rate": results.get("bit_plus_rate", [])}


def main(argv: list[str]) -> list[dict]:
    args, overrides = _parse(argv)
    out = Path(args.out) / args.name
    commit = _git_commit()
    rows: list[dict] = []
    grid = [(m, b, s) for b in args.bits for m in args.methods for s in args.seeds]
    print(f"hashbench compare: {len(grid)} runs ({args.methods} × {args.bits} bits × seeds {args.seeds}) → {out}")
    for i, (method, bits, seed) in enumerate(grid, 1):
        run_dir = out / "runs" / f"{method}_{bits}b_seed{seed}"
        try:
            row = run_one(method, bits, seed, args.config, overrides, run_dir)
        except KeyboardInterrupt:
            print("interrupted: the finished runs are saved", file=sys.stderr)
            break
        except Exception as err:  # one failing run must not lose the others
            traceback.print_exc()
            row = {"method": method, "bits": bits, "seed": seed, "status": "failed",
                   "error": f"{type(err).__name__}: {err}"}
        row["git_commit"] = commit
        rows.append(row)
        report.write_rows(out, rows)
        maps = {k: v for k, v in row.items() if k.startswith("mAP@") and "tie" not in k and "H<=" not in k}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in maps.items()) or row.get("error", "")
        print(f"[{i}/{len(grid)}] {method:7s} {bits:3d} bits seed {seed}: {row['status']}  {shown}"
              f"  ({row.get('total_seconds', 0):.0f} s)", flush=True)
    ok = [r for r in rows if r.get("status") == "ok"]
    metric_names = [k for k in (ok[0] if ok else {}) if k.startswith(("mAP", "P@", "R@"))]
    headline = args.headline or next((k for k in metric_names if k.startswith("mAP@") and "_" not in k), None)
    summary = report.summary_markdown(rows, metric_names)
    (out / "summary.md").write_text(f"# {args.name}\n\ncommit {commit}; configs {args.config}; overrides "
                                    f"{overrides or 'none'}\n\n{summary}\n")
    if ok and headline:
        report.plot_all(out, rows, headline)
    print(f"\n{summary}\n\nresults: {out}/ (runs.csv, runs.json, summary.md, *.png)")
    if len(ok) < len(rows):
        raise SystemExit(1)
    return rows
