"""The cells of a comparison: one (method, code length, seed) each, in the order a sweep trains them."""
from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    method: str
    bits: int
    seed: int

    @property
    def label(self) -> str:
        return f"{self.method}_{self.bits}b_seed{self.seed}"


def grid(args: argparse.Namespace) -> list[Cell]:
    """Code length outermost, then method, then seed."""
    return [Cell(m, b, s) for b in args.bits for m in args.methods for s in args.seeds]
