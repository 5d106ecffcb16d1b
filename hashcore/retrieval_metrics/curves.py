"""Precision-recall curves by Hamming radius and by rank (P@N), as per-query rows and their averages."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .engine import _chunk_size, _chunks, _distance_histograms, _relevant_totals, _select_topk, _topk_relevance
from .inputs import _prepare, _Problem, _resolve_k
from .reduction import ordered_sum


def _curve_ranks(ranks: Optional[Sequence[int]], num_points: int, num_db: int) -> list[int]:
    if ranks is None:
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        ranks = np.unique(np.round(np.linspace(1, num_db, min(num_points, num_db))).astype(np.int64))
    return sorted({_resolve_k(int(n), num_db) for n in ranks})


def _rank_hits_expected(n: Tensor, r: Tensor, ranks: list[int]) -> Tensor:
    """(Q, R) relevant items in the top x for x in ``ranks``, in expectation over orders inside tie groups.

    From per-distance counts: at rank x with straddling group t (m of its n_t items taken),
    E[hits] = relevant before t + m * r_t / n_t, since each item of the group is equally likely in each slot.
    """
    at = torch.tensor(ranks, dtype=torch.float64, device=n.device)
    cum = n.cumsum(1)
    x = at[None, :].expand(n.shape[0], -1).contiguous()
    t = torch.searchsorted(cum, x)  # first distance whose cumulative count reaches the rank
    n_t, r_t = n.gather(1, t), r.gather(1, t)
    return (r.cumsum(1).gather(1, t) - r_t) + (x - (cum.gather(1, t) - n_t)) * r_t / n_t


def _rank_hits_stable(prob: _Problem, ranks: list[int], chunk_size: Optional[int]) -> Tensor:
    """(Q, R) relevant items in the stable (distance, index) top x for x in ``ranks``."""
    kmax = max(ranks)
    at = torch.tensor(ranks, device=prob.device)
    hits = []
    for q0, q1 in _chunks(prob.num_queries, _chunk_size(chunk_size, prob, kmax), prob.device):
        cand = _select_topk(prob, prob.q[q0:q1], kmax, keep_ties=False)
        rel = _topk_relevance(prob, cand, q0, q1 - q0, kmax).double()
        hits.append(rel.cumsum(1)[:, at - 1])
    return torch.cat(hits)


def _curve_average(hits: Tensor, retrieved: Tensor, totals: Tensor, average: str, empty: str):
    """Precision and recall over queries (rows) at every curve point (columns), as CPU float64."""
    if average == "pooled":
        found = ordered_sum(hits)
        return found / ordered_sum(retrieved), found / ordered_sum(totals)
    per_p = torch.where(retrieved > 0, hits / retrieved.clamp(min=1), torch.zeros_like(hits))
    per_r = torch.where(totals[:, None] > 0, hits / totals.clamp(min=1)[:, None], torch.zeros_like(hits))
    if empty == "skip":  # average only over queries that retrieved something at this point
        used = (retrieved > 0).double()
        count = ordered_sum(used)
        return ordered_sum(per_p * used) / count, ordered_sum(per_r * used) / count
    return ordered_sum(per_p) / hits.shape[0], ordered_sum(per_r) / hits.shape[0]


def _radius_curve(hits: Tensor, retrieved: Tensor, totals: Tensor, average: str = "query",
                  empty: str = "zero") -> dict:
    precision, recall = _curve_average(hits, retrieved, totals, average, empty)
    return {"radius": torch.arange(hits.shape[1]), "precision": precision, "recall": recall}


def _rank_curve(hits: Tensor, ranks: list[int], totals: Tensor, average: str = "query") -> dict:
    at = torch.tensor(ranks, dtype=torch.float64, device=hits.device)
    precision, recall = _curve_average(hits, at[None, :].expand_as(hits), totals, average, "zero")
    return {"rank": torch.tensor(ranks), "precision": precision, "recall": recall}


def precision_recall_curve(
    query_codes,
    query_labels,
    db_codes,
    db_labels,
    by: str = "radius",
    *,
    ranks: Optional[Sequence[int]] = None,
    num_points: int = 100,
    average: str = "query",
    empty: str = "zero",
    ties: str = "stable",
    chunk_size: Optional[int] = None,
) -> dict:
    """Precision and recall per Hamming radius (``by="radius"``) or per rank (``by="rank"``); CPU tensors.

    * ``by="radius"``: retrieved set = items within Hamming distance <= r, for r = 0..K; returns
      ``{"radius", "precision", "recall"}``.  With ``average="query"`` (default, thulab
      ``..._Radius_All``) per-query precision/recall are averaged over queries; a query that
      retrieves nothing at radius r counts precision 0 and recall 0 and stays in the mean
      (``empty="zero"``), or is left out of that radius' mean (``empty="skip"``, NaN when no query
      retrieves anything).  ``empty="skip"`` is not Bi-half's ``pr_curve``
      (``liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a:ImageHashing/cal_map_mult.py``): its mask
      ``P > 0`` drops every query whose precision at that radius is 0, i.e. also the queries whose
      non-empty ball holds no relevant item, not only the empty balls.  ``average="pooled"`` (Bi-half
      ``calculate_p_r_curve``) divides the summed relevant-retrieved by the summed retrieved /
      summed relevant.
    * ``by="rank"``: the ranking cut after n items, at ``ranks`` (default ``num_points`` positions
      evenly spaced over 1..N, each clamped to N); returns ``{"rank", "precision", "recall"}``
      (precision is P@n).  ``ties="stable"`` uses the (distance, index) ranking (cost grows with the
      largest rank: a full ranking per query for rank N); ``ties="average"`` is the expectation
      over random orders inside tie groups, exact and cheap (one histogram pass).  ``average``
      applies the same way; nothing is ever empty.
    * Recall of a query with no relevant item in the database is 0 (it stays in the mean).
    """
    if by not in ("radius", "rank"):
        raise ValueError(f"by must be 'radius' or 'rank', got {by!r}")
    if average not in ("query", "pooled"):
        raise ValueError(f"average must be 'query' or 'pooled', got {average!r}")
    if empty not in ("zero", "skip"):
        raise ValueError(f"empty must be 'zero' or 'skip', got {empty!r}")
    if ties not in ("stable", "average"):
        raise ValueError(f"ties must be 'stable' or 'average', got {ties!r}")
    prob = _prepare(query_codes, query_labels, db_codes, db_labels)
    if by == "radius":
        n, r = _distance_histograms(prob, chunk_size)
        return _radius_curve(r.cumsum(1), n.cumsum(1), r.sum(1), average, empty)
    at = _curve_ranks(ranks, num_points, prob.num_db)
    if ties == "average":
        n, r = _distance_histograms(prob, chunk_size)
        return _rank_curve(_rank_hits_expected(n, r, at), at, r.sum(1), average)
    totals = _relevant_totals(prob, _chunk_size(chunk_size, prob, max(at)))
    return _rank_curve(_rank_hits_stable(prob, at, chunk_size), at, totals, average)
