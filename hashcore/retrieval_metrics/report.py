"""Report functions: per-query results of every logged metric, their exact reduction, and the one-call reports.

``summarize(concat_per_query([per_query_metrics(q[a:b], ...) for each share]))`` is bit-for-bit
``retrieval_report(q, ...)``: per-query values depend only on their own query, and the means are
left-to-right sums in query order (``reduction.py``).  That is what lets evaluation split the queries
across ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from .curves import _curve_ranks, _rank_curve, _rank_hits_expected, _rank_hits_stable, _radius_curve
from .engine import _distance_histograms
from .hamming_ball import _ball_means, _ball_per_query
from .inputs import TopK, _check_radius, _k_name, _prepare, _prepare_scores, _resolve_k
from .reduction import ordered_mean
from .topk import _map_of, _tie_map_of, _topk_metrics

_BALL = ("size", "found", "precision", "recall", "ap")


@dataclass
class PerQuery:
    """Per-query results of queries against one database.

    ``values[name]`` is a tensor whose first dim is the query (``ap@k``, ``found@k``, ``tie_ap@k``,
    ``tie_possible@k`` per resolved cut-off k; ``ball_{size,found,precision,recall,ap}`` for the
    Hamming ball; ``relevant_total``, ``radius_hits``, ``radius_retrieved`` (Q, K+1) and ``rank_hits``
    (Q, R) for the curves).  ``info`` holds what the reduction needs and is the same for any split of
    the queries (cut-offs, radius, curve ranks, database size).
    """

    values: dict[str, Tensor]
    info: dict

    @property
    def num_queries(self) -> int:
        return next(iter(self.values.values())).shape[0] if self.values else 0

    def rows(self, start: int, stop: int) -> "PerQuery":
        """The results of queries ``start:stop`` only."""
        return PerQuery({name: v[start:stop] for name, v in self.values.items()}, dict(self.info))


def concat_per_query(parts: Sequence[PerQuery]) -> PerQuery:
    """Queries of several parts, in the given order (e.g. each rank's contiguous share, by rank)."""
    if not parts:
        raise ValueError("concat_per_query needs at least one part")
    info = parts[0].info
    for p in parts[1:]:
        if p.info != info or list(p.values) != list(parts[0].values):
            raise ValueError("per-query parts were computed with different settings or databases; "
                             f"got {p.info} and {info}")
    return PerQuery({name: torch.cat([p.values[name] for p in parts]) for name in parts[0].values}, dict(info))


def per_query_metrics(
    query_codes,
    query_labels,
    db_codes,
    db_labels,
    top_ks: Sequence[TopK] = (1000,),
    radius: Optional[int] = 2,
    tie_average: bool = True,
    query_scores=None,
    db_scores=None,
    curves: bool = False,
    num_points: int = 100,
    max_rank: Optional[int] = None,
    rank_ties: str = "average",
    chunk_size: Optional[int] = None,
) -> PerQuery:
    """Per-query values behind :func:`retrieval_report` (and, with ``curves=True``, :func:`retrieval_curves`).

    Arguments mean what they mean there; ``top_ks`` may be empty when only curves or the ball are wanted.
    Tensors stay on the device of ``query_codes`` (so they can be all-gathered) and are float64 except
    ``tie_possible@k`` (bool).
    """
    if rank_ties not in ("stable", "average"):
        raise ValueError(f"rank_ties must be 'stable' or 'average', got {rank_ties!r}")
    if (query_scores is None) != (db_scores is None):
        raise ValueError("pass both query_scores and db_scores, or neither")
    if radius is not None:
        radius = _check_radius(radius)
    prob = _prepare(query_codes, query_labels, db_codes, db_labels)
    names = [(_k_name(k), _resolve_k(k, prob.num_db)) for k in top_ks]
    info = {"top_ks": names, "tie_average": bool(tie_average), "radius": radius, "curves": bool(curves),
            "num_database": prob.num_db, "bits": prob.bits}
    values: dict[str, Tensor] = {}
    if names:
        res = _topk_metrics(prob, sorted({k for _, k in names}), tie_average, chunk_size)
        for k, per_k in res.items():
            values[f"ap@{k}"], values[f"found@{k}"] = per_k["ap"], per_k["found"]
            if tie_average:
                values[f"tie_ap@{k}"], values[f"tie_possible@{k}"] = per_k["tie_ap"], per_k["possible"]
    if radius is not None:
        scores = _prepare_scores(prob, query_scores, db_scores) if query_scores is not None else None
        ball = _ball_per_query(prob, radius, scores, chunk_size)
        values.update({f"ball_{name}": ball[name] for name in _BALL})
    if curves:
        ranks = _curve_ranks(None, num_points, _resolve_k(max_rank, prob.num_db))
        info["curve_ranks"] = ranks
        n, r = _distance_histograms(prob, chunk_size)
        values["relevant_total"] = r.sum(1)
        values["radius_hits"], values["radius_retrieved"] = r.cumsum(1), n.cumsum(1)
        if rank_ties == "average":
            values["rank_hits"] = _rank_hits_expected(n, r, ranks)
        else:
            values["rank_hits"] = _rank_hits_stable(prob, ranks, chunk_size)
    return PerQuery(values, info)


def summarize(per_query: PerQuery, exclude_no_relevant: bool = False,
              drop_balls_without_relevant: bool = True) -> dict:
    """The scalar metrics of :func:`retrieval_report` from per-query values (same keys, same bits)."""
    info, v = per_query.info, per_query.values
    if per_query.num_queries == 0:
        raise ValueError("summarize needs the results of at least one query")
    report = {}
    for name, k in info["top_ks"]:
        report[f"mAP@{name}"] = _map_of(v[f"ap@{k}"], v[f"found@{k}"], exclude_no_relevant)
        if info["tie_average"]:
            report[f"mAP@{name}_tie_avg"] = _tie_map_of(v[f"tie_ap@{k}"], v[f"tie_possible@{k}"],
                                                        exclude_no_relevant)
        report[f"P@{name}"] = ordered_mean(v[f"found@{k}"]) / k
    if info["radius"] is not None:
        r = info["radius"]
        ball = _ball_means({name: v[f"ball_{name}"] for name in _BALL}, drop_balls_without_relevant)
        report[f"P@H<={r}"], report[f"R@H<={r}"], report[f"mAP@H<={r}"] = ball["precision"], ball["recall"], ball["map"]
    return report


def summarize_curves(per_query: PerQuery) -> dict:
    """The curves of :func:`retrieval_curves` from per-query values computed with ``curves=True``."""
    if not per_query.info.get("curves"):
        raise ValueError("these per-query results have no curves; compute them with per_query_metrics(curves=True)")
    v = per_query.values
    radius = _radius_curve(v["radius_hits"], v["radius_retrieved"], v["relevant_total"])
    rank = _rank_curve(v["rank_hits"], per_query.info["curve_ranks"], v["relevant_total"])
    return {f"pr_radius/{k}": x for k, x in radius.items()} | {f"pr_rank/{k}": x for k, x in rank.items()}


def retrieval_report(
    query_codes,
    query_labels,
    db_codes,
    db_labels,
    top_ks: Sequence[TopK] = (1000,),
    radius: Optional[int] = 2,
    exclude_no_relevant: bool = False,
    tie_average: bool = True,
    query_scores=None,
    db_scores=None,
    chunk_size: Optional[int] = None,
) -> dict:
    """Scalar metrics for logging, one streaming pass per chunk for all top-k metrics.

    Keys, for each k in ``top_ks`` (named "all" for None): ``mAP@k``, ``mAP@k_tie_avg`` (when
    ``tie_average``) and ``P@k``; and, unless ``radius`` is None, ``P@H<=r``, ``R@H<=r``, ``mAP@H<=r``
    (see :func:`hamming_radius_metrics`, which uses ``query_scores`` / ``db_scores``).
    """
    if not top_ks:
        raise ValueError("top_ks must name at least one k (None = whole database)")
    per_query = per_query_metrics(query_codes, query_labels, db_codes, db_labels, top_ks, radius, tie_average,
                                  query_scores, db_scores, chunk_size=chunk_size)
    return summarize(per_query, exclude_no_relevant)


def retrieval_curves(
    query_codes,
    query_labels,
    db_codes,
    db_labels,
    num_points: int = 100,
    max_rank: Optional[int] = None,
    rank_ties: str = "average",
    chunk_size: Optional[int] = None,
) -> dict:
    """Curves for plotting, as CPU tensors: PR by Hamming radius and P/R by rank.

    Keys: ``pr_radius/radius``, ``pr_radius/precision``, ``pr_radius/recall`` (query-averaged, a
    radius that retrieves nothing counts 0) and ``pr_rank/rank``, ``pr_rank/precision`` (P@N),
    ``pr_rank/recall`` at ``num_points`` ranks evenly spaced over 1..``max_rank`` (default: the whole
    database).  ``rank_ties="average"`` (default) takes the rank curve in expectation over tie
    orders, which comes from the same single histogram pass as the radius curve; ``"stable"`` uses
    the (distance, index) ranking and costs a full ranking per query when ``max_rank`` is large.
    """
    per_query = per_query_metrics(query_codes, query_labels, db_codes, db_labels, top_ks=(), radius=None,
                                  curves=True, num_points=num_points, max_rank=max_rank, rank_ties=rank_ties,
                                  chunk_size=chunk_size)
    return summarize_curves(per_query)
