"""mAP@k (stable ranking), tie-averaged mAP@k and P@k: per query from one streaming pass, then means."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from .engine import _chunk_size, _chunks, _select_topk, _topk_relevance
from .inputs import TopK, _prepare, _Problem, _resolve_k
from .reduction import ordered_mean
from .tie_average import _bucket_counts, _tie_averaged_ap, listed_relevance


def _dense_ap(rel: Tensor, ks: Sequence[int]) -> dict:
    """AP@k per row (0 without relevant items in the top k) and relevant items found, for each k."""
    relf = rel.double()
    hits = relf.cumsum(1)  # exact: integers in float64
    pos = torch.arange(1, rel.shape[1] + 1, dtype=torch.float64, device=rel.device)
    gains = (relf * hits / pos).cumsum(1)  # a sequential scan per row: the same bits in any chunk
    out = {}
    for k in ks:
        # clone: a column view would keep the whole (B, k) matrix alive in the per-query results,
        # and memory would grow with the number of queries instead of staying per chunk
        found, gain = hits[:, k - 1].clone(), gains[:, k - 1]
        out[k] = (torch.where(found > 0, gain / found.clamp(min=1), torch.zeros_like(gain)), found)
    return out


def _topk_chunk(prob: _Problem, q0: int, q1: int, ks: Sequence[int], tie_average: bool) -> dict:
    """Per query of rows q0:q1, for each k: ``ap``, ``found`` and, with ``tie_average``, ``tie_ap``, ``possible``."""
    cand = _select_topk(prob, prob.q[q0:q1], max(ks), keep_ties=tie_average)
    # with tie averaging every listed item's relevance is needed anyway: computed once, it also gives the stable
    # top k's by one gather (at k = N, 10,000 x 60,000, that halved the work)
    relevant = listed_relevance(prob, cand, q0) if tie_average else None
    stable = _dense_ap(_topk_relevance(prob, cand, q0, q1 - q0, max(ks), relevant), ks)
    counts = _bucket_counts(prob, cand, q0, q1 - q0, relevant) if tie_average else None
    out = {}
    for k in ks:
        out[k] = {"ap": stable[k][0], "found": stable[k][1]}
        if counts is not None:
            out[k]["tie_ap"], out[k]["possible"] = _tie_averaged_ap(*counts, k)
    return out


def _topk_metrics(prob: _Problem, ks: Sequence[int], tie_average: bool, chunk_size: Optional[int]) -> dict:
    """``{k: {"ap", "found"[, "tie_ap", "possible"]}}``, each a (Q,) tensor in query order.

    One streaming selection per chunk at the largest k serves every smaller k.
    """
    chunk = _chunk_size(chunk_size, prob, max(ks))
    parts = [_topk_chunk(prob, q0, q1, ks, tie_average) for q0, q1 in _chunks(prob.num_queries, chunk, prob.device)]
    return {k: {name: torch.cat([p[k][name] for p in parts]) for name in parts[0][k]} for k in ks}


def _map_of(ap: Tensor, found: Tensor, exclude_no_relevant: bool) -> float:
    """Mean AP over queries; with ``exclude_no_relevant`` only queries that found a relevant item count."""
    return ordered_mean(ap, found > 0 if exclude_no_relevant else None)


def _tie_map_of(tie_ap: Tensor, possible: Tensor, exclude_no_relevant: bool) -> float:
    """Mean tie-averaged AP; excluded are queries that no tie order can give a relevant top-k item."""
    return ordered_mean(tie_ap, possible if exclude_no_relevant else None)


def mean_average_precision(
    query_codes,
    query_labels,
    db_codes,
    db_labels,
    top_k: TopK = None,
    exclude_no_relevant: bool = False,
    chunk_size: Optional[int] = None,
) -> float:
    """mAP@k with the stable (Hamming distance, database index) ranking.

    ``AP_q = (1/R_q) * sum_{i <= k, rel_i} hits_i / i`` where R_q is the number of relevant items in
    the top k.  R_q = 0 gives AP 0 (kept in the mean) unless ``exclude_no_relevant``; the mean over no
    query at all is NaN.  ``top_k=None`` = whole database; ``top_k`` > N is clamped to N.
    ``chunk_size`` = queries per chunk (default: sized for ~512 MiB).
    """
    prob = _prepare(query_codes, query_labels, db_codes, db_labels)
    k = _resolve_k(top_k, prob.num_db)
    res = _topk_metrics(prob, [k], tie_average=False, chunk_size=chunk_size)[k]
    return _map_of(res["ap"], res["found"], exclude_no_relevant)


def tie_averaged_map(
    query_codes,
    query_labels,
    db_codes,
    db_labels,
    top_k: TopK = None,
    exclude_no_relevant: bool = False,
    chunk_size: Optional[int] = None,
) -> float:
    """Expected mAP@k when the order inside every group of equal Hamming distance is uniformly random.

    Exact closed form (no sampling), so the value does not depend on database order.  Same AP
    definition as :func:`mean_average_precision` (normalised by the relevant items found in the top
    k, which is random when a tie group straddles the cut-off; see ``_tie_averaged_ap``).  With
    ``exclude_no_relevant=True`` a query is dropped when no order can bring a relevant item into its
    top k; other queries keep their expected AP, where orders retrieving nothing relevant count 0.
    """
    prob = _prepare(query_codes, query_labels, db_codes, db_labels)
    k = _resolve_k(top_k, prob.num_db)
    res = _topk_metrics(prob, [k], tie_average=True, chunk_size=chunk_size)[k]
    return _tie_map_of(res["tie_ap"], res["possible"], exclude_no_relevant)


def precision_at_k(
    query_codes,
    query_labels,
    db_codes,
    db_labels,
    k: Union[TopK, Sequence[TopK]],
    chunk_size: Optional[int] = None,
) -> Union[float, dict]:
    """Mean over queries of (relevant items in the stable top k) / k.

    ``k=None`` = whole database; k > N is clamped to N (the denominator is then N).  A list of k
    returns ``{k: value}`` for each given k, from one pass.
    """
    prob = _prepare(query_codes, query_labels, db_codes, db_labels)
    many = isinstance(k, (list, tuple))
    wanted = list(k) if many else [k]
    ks = {kk: _resolve_k(kk, prob.num_db) for kk in wanted}
    res = _topk_metrics(prob, sorted(set(ks.values())), tie_average=False, chunk_size=chunk_size)
    values = {kk: ordered_mean(res[v]["found"]) / v for kk, v in ks.items()}
    return values if many else values[wanted[0]]
