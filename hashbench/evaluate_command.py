"""``hashbench evaluate``: saved codes re-scored with the suite's exact metrics."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from hashcore import retrieval_metrics as rm
from hashcore.retrieval_metrics.cut_offs import parse_top_k

from .codes import Codes, load_codes
from .errors import ConfigError


def _top_k(value: str):
    try:
        return parse_top_k(value, "the cut-off")  # argparse names the option before it
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hashbench evaluate", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Re-score saved codes with the suite's exact metrics (ranking by Hamming distance, ties by "
                    "database index; AP@k normalised by the relevant items found in the top k; a query with none "
                    "counts 0). Codes from another codebase: see the 3-line recipe in hashbench/codes.py.",
        epilog="The Hamming ball (P/R/mAP@H<=r) is ranked by (distance, index): saved codes carry no continuous "
               "scores, so mAP@H<=r is not DCH's score-re-ranked number.")
    p.add_argument("--codes", help="a folder holding query/ and database/ codes folders")
    p.add_argument("--query", help="the query codes folder")
    p.add_argument("--database", help="the database codes folder")
    p.add_argument("--top-k", "--top_k", dest="top_k", nargs="+", type=_top_k, default=None,
                   help="cut-offs, e.g. 1000 or 5000 all (default: the protocol's, from the database's meta.json)")
    p.add_argument("--radius", type=int, default=2, help="Hamming ball radius (-1: none)")
    p.add_argument("--exclude-no-relevant", action="store_true", help="thulab: drop queries with no relevant item")
    p.add_argument("--tie-averaged", action="store_true", help="also the expected mAP over orders inside ties")
    p.add_argument("--json", help="also write the metrics and curves to this file")
    return p


def _labelled(codes: Codes, role: str) -> None:
    if not codes.has_labels:
        raise ConfigError(f"the {role} codes in {codes.folder} have no labels (labels.npy missing or (N, 0)); "
                          "evaluation needs labels: encode a split or a list file, not an image folder")


def evaluate_codes(query: Codes, database: Codes, top_k, radius: Optional[int] = 2, exclude_no_relevant=False,
                   tie_averaged=False) -> dict:
    """The suite's metrics and curves of saved codes (database ranked in dataset-index order)."""
    if query.bits != database.bits:
        raise ConfigError(f"query codes have {query.bits} bits but database codes {database.bits}: they come from "
                          "different models")
    _labelled(query, "query")
    _labelled(database, "database")
    order = np.argsort(database.index, kind="stable")  # ties are broken by dataset index
    per_query = rm.per_query_metrics(
        torch.from_numpy(query.signed()), torch.from_numpy(query.labels), torch.from_numpy(database.signed()[order]),
        torch.from_numpy(database.labels[order]), top_ks=top_k, radius=radius, tie_average=tie_averaged, curves=True)
    metrics, curves = rm.results_metrics_and_curves(per_query, exclude_no_relevant=exclude_no_relevant)
    return {"metrics": metrics, "num_query": len(query),
            "num_database": len(database), "bits": query.bits, "curves": curves,
            "query": str(query.folder), "database": str(database.folder),
            "checkpoint_sha256": {"query": query.meta.get("checkpoint_sha256"),
                                  "database": database.meta.get("checkpoint_sha256")}}


def evaluate_main(argv: list[str]) -> int:
    p = _evaluate_parser()
    args = p.parse_args(argv)
    if args.codes and (args.query or args.database) or not args.codes and not (args.query and args.database):
        p.error("give --codes DIR (holding query/ and database/), or both --query DIR and --database DIR")
    qdir, dbdir = (Path(args.codes) / "query", Path(args.codes) / "database") if args.codes else \
        (Path(args.query), Path(args.database))
    query, database = load_codes(qdir), load_codes(dbdir)
    top_k = args.top_k
    if top_k is None:
        if "top_k" not in database.meta:
            p.error(f"{dbdir}/meta.json names no protocol top_k; give --top-k (e.g. --top-k 1000, or all)")
        top_k = [database.meta["top_k"]]
    shas = {query.meta.get("checkpoint_sha256"), database.meta.get("checkpoint_sha256")}
    if len(shas) > 1 and None not in shas:
        print("hashbench evaluate: warning: query and database codes were made by different checkpoints "
              "(checkpoint_sha256 differs in meta.json)", file=sys.stderr)
    results = evaluate_codes(query, database, top_k, None if args.radius < 0 else args.radius,
                             args.exclude_no_relevant, args.tie_averaged)
    m = results["metrics"]
    print(f"hashbench evaluate: {results['num_query']:,} queries x {results['num_database']:,} database items, "
          f"{results['bits']} bits")
    print("  " + "   ".join(f"{k} {v:.4f}" for k, v in m.items() if "H<=" not in k))
    ball = [k for k in m if "H<=" in k]
    if ball:
        print("  " + "   ".join(f"{k} {m[k]:.4f}" for k in ball) + "   (ball ranked by Hamming distance, then index)")
    if args.json:
        Path(args.json).write_text(json.dumps(results))
    return 0

