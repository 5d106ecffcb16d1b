"""The README's methods table from a finished ``hashbench compare`` folder: mAP@all and wall time per run, one row
per method, one column per code length.

    python experiments/methods_table.py results/demo_all      # prints the Markdown table (`make methods-table`)

Reads ``<folder>/runs.csv`` (method, display, bits, status, mAP@all, total_seconds, supervised, baseline). A run that
did not finish shows its status instead of a number; a code length a method did not run shows "–".
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path


def kind(row: dict) -> str:
    if row.get("baseline") == "True":
        return "closed form"
    return "supervised" if row.get("supervised") == "True" else "unsupervised"


def table(folder: Path) -> str:
    path = folder / "runs.csv"
    if not path.is_file():
        print(f"methods_table: error: {path} not found; run `hashbench compare ... --name {folder.name}` first (it "
              "writes runs.csv when the sweep ends)", file=sys.stderr)
        sys.exit(2)
    rows = list(csv.DictReader(path.open()))
    bits = sorted({int(r["bits"]) for r in rows})
    methods: dict[str, dict] = {}
    for r in rows:
        methods.setdefault(r["method"], {"display": r.get("display") or r["method"], "kind": kind(r), "cells": {}})
        methods[r["method"]]["cells"][int(r["bits"])] = r
    order = sorted(methods, key=lambda m: (["unsupervised", "supervised", "closed form"].index(methods[m]["kind"]), m))
    head = "| method | kind | " + " | ".join(f"{b} bits" for b in bits) + " |"
    lines = [head, "|" + "---|" * (2 + len(bits))]
    for m in order:
        cells = []
        for b in bits:
            r = methods[m]["cells"].get(b)
            if r is None:
                cells.append("–")
            elif r["status"] != "ok":
                cells.append(r["status"])
            else:
                cells.append(f"{float(r['mAP@all']):.4f} ({float(r['total_seconds']):.0f} s)")
        lines.append(f"| {methods[m]['display']} | {methods[m]['kind']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python experiments/methods_table.py results/<name>", file=sys.stderr)
        sys.exit(2)
    print(table(Path(sys.argv[1])))
