"""Means over queries that give the same bits however the queries were split or threaded.

Every per-query value is computed row by row (its bits do not depend on which other queries share its
chunk), and every mean over queries is a left-to-right float64 sum on the CPU.  ``torch.sum`` would
split a long reduction across threads (and differently for another thread count), so a number scored
on 2 ranks and gathered would not be bit-for-bit the single-process one.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Rows per block of the sequential column sums (bounds the cumsum's temporary copy).
_ROWS_PER_BLOCK = 8192


def ordered_sum(values: Tensor) -> Tensor:
    """Left-to-right float64 sum over dim 0 (CPU ``cumsum`` is a sequential scan), on the CPU.

    ``values`` (Q,) gives a 0-d tensor, (Q, P) gives (P,).  Zero rows sum to 0.
    """
    v = values.detach().to("cpu", torch.float64)
    total = torch.zeros(v.shape[1:], dtype=torch.float64)
    for start in range(0, v.shape[0], _ROWS_PER_BLOCK):  # carry the running sum in as the first row
        total = torch.cat([total[None], v[start:start + _ROWS_PER_BLOCK]]).cumsum(0)[-1]
    return total


def ordered_mean(values: Tensor, keep: Tensor | None = None) -> float:
    """Mean of the kept entries of a (Q,) tensor; NaN when none is kept."""
    v = values if keep is None else values[keep.to(values.device)]
    return float(ordered_sum(v) / v.shape[0]) if v.shape[0] else float("nan")


def row_sum(values: Tensor) -> Tensor:
    """Sequential sum over dim 1 of a (B, W) tensor: each row's bits independent of B and of W's zero tail.

    A copy, not a column view: a view would keep the whole (B, W) scan alive in kept per-query results.
    """
    return values.cumsum(1)[:, -1].clone() if values.shape[1] else values.new_zeros(values.shape[0])
