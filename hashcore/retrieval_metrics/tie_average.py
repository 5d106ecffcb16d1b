"""Closed-form tie-averaged AP@k: the expectation over uniformly random orders inside every tie group.

Hamming distances are small integers, so large groups of equal distance are normal, and the stable
(distance, index) AP depends on the database order inside them.  This is the exact expectation (no
sampling), so it does not depend on that order.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .engine import _Candidates
from .inputs import _Problem
from .reduction import row_sum


def _harmonic_diff(a: Tensor, n: Tensor) -> Tensor:
    """``sum_{p=1..n} 1/(a+p)`` for float64 tensors of non-negative integers, to ~1e-15 relative.

    The first terms (while a+p < 32) are summed directly; the rest is psi(a+n+1) - psi(x) via the
    asymptotic series written as differences (log1p, n/(2xy), ...), which avoids the cancellation a
    plain digamma difference suffers for large a and small n.
    """
    total = torch.zeros_like(a)
    x = a + 1  # next denominator
    left = n.clone()
    for _ in range(31):
        take = (x < 32) & (left > 0)
        if not bool(take.any()):
            break
        total = total + torch.where(take, 1.0 / x, torch.zeros_like(x))
        x = x + take.double()
        left = left - take.double()
    y = x + left
    x2, y2 = x * x, y * y
    inv_x2, inv_y2 = 1 / x2, 1 / y2
    series = torch.log1p(left / x) + left / (2 * x * y)
    series = series + left * (x + y) / (x2 * y2) / 12  # 1/(12x^2) - 1/(12y^2)
    series = series - (inv_x2 * inv_x2 - inv_y2 * inv_y2) / 120
    series = series + (inv_x2**3 - inv_y2**3) / 252
    series = series - (inv_x2**4 - inv_y2**4) / 240
    return total + torch.where(left > 0, series, torch.zeros_like(series))


def _bucket_gain(before: Tensor, rel_before: Tensor, n: Tensor, r: Tensor, dh: Tensor) -> Tensor:
    """Expected ``sum over relevant items of hits/rank`` for one tie group in uniformly random order.

    The group holds n items, r of them relevant, after ``before`` items of which ``rel_before`` are
    relevant.  Position p of the group is relevant with probability r/n and, given that, has on
    average (p-1)(r-1)/(n-1) relevant items before it inside the group, so the sum is
    ``(r/n) * sum_p (rel_before + 1 + c (p-1)) / (before + p)`` with c = (r-1)/(n-1), i.e.
    ``(r/n) * (n c + (rel_before + 1 - c (before + 1)) * dh)`` with
    ``dh = H(before + n) - H(before)`` (:func:`_harmonic_diff`).  Arguments broadcast.
    """
    c = torch.where(n > 1, (r - 1) / (n - 1).clamp(min=1), torch.zeros_like(r))
    gain = (r / n.clamp(min=1)) * (n * c + (rel_before + 1 - c * (before + 1)) * dh)
    return torch.where(r > 0, gain, torch.zeros_like(gain))


def _hypergeom_pmf(total: Tensor, good: Tensor, draws: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """P(X = lo + j), j < width, for X ~ Hypergeometric(total, good, draws) per row; and lo.

    Built from the exact ratio P(x+1)/P(x) = (good-x)(draws-x) / ((x+1)(total-good-draws+x+1)),
    accumulated in log space and normalised, which stays accurate for large buckets.
    """
    lo = (draws - (total - good)).clamp(min=0)
    hi = torch.minimum(good, draws)
    x = lo[:, None] + torch.arange(width, dtype=torch.float64, device=lo.device)
    num = (good[:, None] - x) * (draws[:, None] - x)
    den = (x + 1) * (total[:, None] - good[:, None] - draws[:, None] + x + 1)
    step = torch.log(num.clamp(min=1)) - torch.log(den.clamp(min=1))
    logp = torch.cumsum(torch.cat([torch.zeros_like(step[:, :1]), step[:, :-1]], 1), 1)
    valid = x <= hi[:, None]
    logp = torch.where(valid, logp, torch.full_like(logp, -math.inf))
    p = torch.exp(logp - logp.max(1, keepdim=True).values)
    return p / row_sum(p)[:, None], lo


def _tie_averaged_ap(n: Tensor, r: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Expected AP@k per row over uniformly random orders inside every tie group, in closed form.

    ``n`` / ``r`` are (B, K+1) float64 counts of all / relevant items per distance (exact up to the
    row's k-th distance t).  Groups fully inside the top k contribute their expected gain; for the
    group straddling the cut-off, X = number of its relevant items among the m = k - (items before t)
    slots taken is hypergeometric, and given X = x those x items sit in a uniformly random order
    among the m slots.  The AP divides by the random number of relevant items retrieved
    (rel_before_t + X), so the expectation is taken conditionally on X:

        E[AP] = sum_x P(X = x) * (G_full + gain(t-slots, x)) / (rel_before_t + x)   (0 when that is 0).

    Also returns whether a relevant item can be retrieved at all (for ``exclude_no_relevant``).
    """
    cum = n.cumsum(1)
    before = cum - n
    rel_before = r.cumsum(1) - r
    t = (cum < k).sum(1, keepdim=True)  # index of the straddling group
    cols = torch.arange(n.shape[1], device=n.device)[None, :]
    gains = _bucket_gain(before, rel_before, n, r, _harmonic_diff(before, n))
    full_gain = row_sum(torch.where(cols < t, gains, torch.zeros_like(n)))
    n_t, r_t = n.gather(1, t)[:, 0], r.gather(1, t)[:, 0]
    a_t, b_t = before.gather(1, t)[:, 0], rel_before.gather(1, t)[:, 0]
    m = k - a_t
    width = int((torch.minimum(r_t, m) - (m - (n_t - r_t)).clamp(min=0)).max().item()) + 1
    pmf, lo = _hypergeom_pmf(n_t, r_t, m, width)
    x = lo[:, None] + torch.arange(width, dtype=torch.float64, device=n.device)
    possible = (b_t + r_t) > 0
    a_t, b_t, m = a_t[:, None], b_t[:, None], m[:, None]  # the slots taken: m items after a_t
    gain_t = _bucket_gain(a_t, b_t, m, x.clamp(max=m), _harmonic_diff(a_t, m))
    found = b_t + x
    ap = torch.where(found > 0, (full_gain[:, None] + gain_t) / found.clamp(min=1), torch.zeros_like(x))
    return row_sum(pmf * ap), possible


def listed_relevance(prob: _Problem, cand: _Candidates, q0: int) -> Tensor:
    """Bool relevance of every listed item, in list order."""
    rows, _ = cand.rows_dist(cand.group)
    return prob.relevance(rows + q0, cand.cols)


def _bucket_counts(prob: _Problem, cand: _Candidates, q0: int, num_rows: int,
                   relevant: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """(B, K+1) float64 counts of listed items and of relevant listed items per distance (``relevant``: the listed
    items' relevance, :func:`listed_relevance`, when the caller has it)."""
    if relevant is None:
        relevant = listed_relevance(prob, cand, q0)
    group = cand.group.long()
    size = num_rows * (prob.bits + 1)
    n = torch.bincount(group, minlength=size).double()
    r = torch.bincount(group[relevant], minlength=size).double()
    return n.view(num_rows, -1), r.view(num_rows, -1)

