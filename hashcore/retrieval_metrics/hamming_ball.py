"""Precision, recall and MAP inside the Hamming ball of radius r (DCH's metric), per query and as means."""

from __future__ import annotations

from typing import Optional

import torch

from .engine import (_Candidates, _chunk_size, _chunks, _precision_terms, _ranked, _Ranked, _relevant_totals,
                     _segment_sum, _select)
from .inputs import _check_radius, _prepare, _prepare_scores, _Problem
from .reduction import ordered_mean, row_sum


def _ranked_ball(prob: _Problem, cand: _Candidates, q0: int, num_rows: int, scores) -> _Ranked:
    """Hamming-ball items ranked by (distance, index), or by (-inner product, index) with scores."""
    if scores is None:
        order = cand.ranking()
    else:
        rows, _ = cand.rows_dist(cand.group)
        qs, ds = scores
        step = max(1, 2**22 // qs.shape[1])  # bounded memory for the gathered score rows
        # a sequential sum per pair: the same bits whichever chunk the query is in
        ip = [row_sum(qs[rows[s:s + step] + q0] * ds[cand.cols[s:s + step]]) for s in range(0, rows.numel(), step)]
        ip = torch.cat(ip) if ip else torch.zeros(0, dtype=qs.dtype, device=qs.device)
        order = torch.sort(-ip, stable=True).indices  # by score; ties keep the list's index order
        order = order[torch.sort(rows[order], stable=True).indices]  # then group rows
    rows, _ = cand.rows_dist(cand.group[order])
    return _ranked(prob, rows, cand.cols[order], q0, num_rows)


def _ball_per_query(prob: _Problem, radius: int, scores, chunk_size: Optional[int]) -> dict:
    """(Q,) float64 ``size`` and ``found`` (items / relevant items in the ball), ``precision``, ``recall``, ``ap``.

    The index_add_ sums of one row run in its ranking order whatever else the chunk holds (on CPU).
    """
    chunk = _chunk_size(chunk_size, prob, prob.num_db)
    totals = _relevant_totals(prob, chunk)
    parts = []
    for q0, q1 in _chunks(prob.num_queries, chunk, prob.device):
        rows_in_chunk = q1 - q0
        ball = torch.full((rows_in_chunk,), min(radius, prob.bits), dtype=torch.int64, device=prob.device)
        ranked = _ranked_ball(prob, _select(prob, prob.q[q0:q1], ball), q0, rows_in_chunk, scores)
        _, terms = _precision_terms(ranked, rows_in_chunk)
        size = _segment_sum(torch.ones_like(terms), ranked.rows, rows_in_chunk)
        n_rel = _segment_sum(ranked.rel.double(), ranked.rows, rows_in_chunk)
        ap_sum = _segment_sum(terms, ranked.rows, rows_in_chunk)
        tot = totals[q0:q1]
        parts.append({
            "size": size,
            "found": n_rel,
            "precision": torch.where(size > 0, n_rel / size.clamp(min=1), torch.zeros_like(size)),
            "recall": torch.where(tot > 0, n_rel / tot.clamp(min=1), torch.zeros_like(tot)),
            "ap": torch.where(n_rel > 0, ap_sum / n_rel.clamp(min=1), torch.zeros_like(n_rel)),
        })
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


def _ball_means(ball: dict, drop_balls_without_relevant: bool) -> dict:
    """``{"precision", "recall", "map"}`` means over queries of :func:`_ball_per_query` values."""
    # thulab: empty balls count 0, non-empty balls without a relevant item are left out of the MAP
    counted = (ball["size"] == 0) | (ball["found"] > 0) if drop_balls_without_relevant else None
    return {"precision": ordered_mean(ball["precision"]), "recall": ordered_mean(ball["recall"]),
            "map": ordered_mean(ball["ap"], counted)}


def hamming_radius_metrics(
    query_codes,
    query_labels,
    db_codes,
    db_labels,
    radius: int = 2,
    query_scores=None,
    db_scores=None,
    drop_balls_without_relevant: bool = True,
    chunk_size: Optional[int] = None,
) -> dict:
    """Precision, recall and MAP inside the Hamming ball of radius r (DCH; thulab
    ``thulab/DeepHash@9907613:DeepHash/evaluation/__init__.py``, ``get_precision_recall_by_Hamming_Radius``).

    Per query, A = {items with Hamming distance <= radius}.  Empty A: precision = recall = MAP = 0,
    kept in the mean.  Otherwise precision = relevant in A / |A|, recall = relevant in A / relevant in
    the database (0 when the database has none; thulab divides by zero there).  MAP re-ranks A by the
    continuous inner product ``query_scores . db_scores`` (descending, ties by database index) when
    both are given, else by (Hamming distance, index); AP is normalised by the relevant items in A.
    As in thulab, a non-empty ball without relevant items is left out of the MAP mean
    (``drop_balls_without_relevant=True``); pass False to count it as 0.
    Returns floats ``{"precision", "recall", "map"}`` (thulab's radius >= 10 shortcut is not copied).
    """
    radius = _check_radius(radius)
    if (query_scores is None) != (db_scores is None):
        raise ValueError("pass both query_scores and db_scores, or neither")
    prob = _prepare(query_codes, query_labels, db_codes, db_labels)
    scores = _prepare_scores(prob, query_scores, db_scores) if query_scores is not None else None
    return _ball_means(_ball_per_query(prob, radius, scores, chunk_size), drop_balls_without_relevant)
