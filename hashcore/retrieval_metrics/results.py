"""The metrics and curves of a results file (``test_last.json``, ``evaluate``'s output): headline mAP + renamed curves.

One place for what the training-time evaluation and ``hashbench evaluate`` both write, so their files agree key by key.
"""
from __future__ import annotations

import torch

from .report import PerQuery, summarize, summarize_curves


def results_metrics_and_curves(per_query: PerQuery, exclude_no_relevant: bool = False) -> tuple[dict, dict]:
    """``metrics``: ``mAP`` (the first cut-off's mAP, the headline) then every summary metric; ``curves``: the
    precision-recall curves as lists, keyed ``radius_<x>`` / ``rank_<x>`` (``pr_radius/x`` renamed for JSON)."""
    summary = summarize(per_query, exclude_no_relevant=exclude_no_relevant)
    headline = per_query.info["top_ks"][0][0]
    metrics = {"mAP": summary[f"mAP@{headline}"], **summary}
    curves = {name.replace("pr_", "").replace("/", "_"): value.detach().cpu().tolist() if torch.is_tensor(value)
              else value for name, value in summarize_curves(per_query).items()}
    return metrics, curves
