"""Reference implementations from the official evaluation code, kept as loops (no code shared with ours).

Used by the tests (and the benchmarks) as independent oracles.
"""

from __future__ import annotations

import numpy as np


def calc_top_map_loop(rB: np.ndarray, qB: np.ndarray, retrievalL: np.ndarray, queryL: np.ndarray, topk: int) -> float:
    """DeepHash-pytorch ``CalcTopMap`` (``swuxyj/DeepHash-pytorch@ab14068:utils/tools.py``), per-query loop.

    Unchanged except for a *stable* argsort, so ties are broken by database index like ours (the original
    ``np.argsort`` quicksort orders ties arbitrarily).  ``topk=-1`` keeps the original's bug of dropping the
    last database item.
    """
    num_query = queryL.shape[0]
    topkmap = 0.0
    for it in range(num_query):
        gnd = (np.dot(queryL[it, :], retrievalL.transpose()) > 0).astype(np.float32)
        hamm = 0.5 * (qB.shape[1] - np.dot(qB[it, :], rB.transpose()))
        ind = np.argsort(hamm, kind="stable")
        tgnd = gnd[ind][0:topk]
        tsum = int(np.sum(tgnd))
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(tgnd == 1)) + 1.0
        topkmap += np.mean(count / tindex)
    return topkmap / num_query
