"""Exact retrieval metrics for binary hash codes (pure torch; no Lightning, nothing else of ours).

Conventions shared by every function:

* **Codes** are turned into {-1, +1} by :func:`to_signed_codes`: bool / unsigned-integer input is read
  as bits (0 -> -1, 1 -> +1); signed-integer / floating input is binarised by sign with an exact
  0 -> +1.  The Hamming distance is ``(K - q . db) / 2``.
* **Relevance**: a database item is relevant to a query when they share at least one label (label
  entries > 0 count as present; integer class ids are one-hot encoded).
* **Ranking**: by Hamming distance, ties broken by database index (the row order of ``db_codes``),
  i.e. a stable sort keyed by ``(distance, index)`` (:func:`hamming_topk` and :func:`hamming_within`
  return it).
* **AP@k** is normalised by the number of relevant items found in the top k, as in DeepHash-pytorch
  ``CalcTopMap`` (``swuxyj/DeepHash-pytorch@ab14068:utils/tools.py``), thulab
  (``thulab/DeepHash@9907613:DeepHash/evaluation/__init__.py``), CIBHash, Bi-half
  (``liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a:ImageHashing/cal_map_mult.py``), GreedyHash
  and torchmetrics.  A query without relevant items in its top k has AP = 0 and stays in the mean,
  unless ``exclude_no_relevant=True`` (the thulab convention), which drops it from the mean.
  ``top_k=None`` is the whole database (a true mAP@All; DeepHash-pytorch's ``topK=-1`` drops the last
  item), and a ``top_k`` larger than the database is clamped to its size.
* **Device** follows ``query_codes``: everything else is moved there; CPU and GPU run the same code.
  Means over queries are left-to-right float64 sums on the CPU, so a result does not depend on the
  thread count or on how the queries were split (:func:`per_query_metrics` + :func:`summarize`).

One job per module: ``inputs`` (checks, conversion), ``engine`` (streaming top-k selection),
``tie_average`` (closed-form tie-averaged AP), ``topk`` (mAP@k, P@k), ``hamming_ball`` (radius metrics),
``curves`` (PR by radius / rank), ``bit_stats``, ``reduction`` (split-independent means) and ``report``.
"""

from .bit_stats import bit_statistics
from .curves import precision_recall_curve
from .engine import hamming_topk, hamming_within
from .hamming_ball import hamming_radius_metrics
from .inputs import to_multi_hot, to_signed_codes
from .report import (PerQuery, concat_per_query, per_query_metrics, retrieval_curves, retrieval_report, summarize,
                     summarize_curves)
from .results import results_metrics_and_curves
from .topk import mean_average_precision, precision_at_k, tie_averaged_map

__all__ = [
    "results_metrics_and_curves",
    "to_signed_codes",
    "to_multi_hot",
    "hamming_topk",
    "hamming_within",
    "mean_average_precision",
    "tie_averaged_map",
    "precision_at_k",
    "precision_recall_curve",
    "hamming_radius_metrics",
    "bit_statistics",
    "per_query_metrics",
    "PerQuery",
    "concat_per_query",
    "summarize",
    "summarize_curves",
    "retrieval_report",
    "retrieval_curves",
]
