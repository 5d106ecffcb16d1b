"""Exact Hamming search over binary codes with the suite's ranking: by distance, ties by database index.

Two backends give the same answer:

* ``faiss`` (optional: ``pip install 'hashbench[search]'``, i.e. faiss-cpu): ``IndexBinaryFlat`` for the top k.
  Its heap does not order items of equal distance by index, so the k-th distance's tie group is resolved
  exactly: a query whose (k+1)-th item is as near as its k-th is redone with a range search at that distance
  and the smallest indices win. Radius search uses ``IndexBinaryMultiHash`` with r+1 disjoint hash tables and
  no bit flips, which is exact by pigeonhole (two codes within r bits agree on one of r+1 disjoint substrings).
* ``torch``: the metrics' own streaming engine (``hashcore.retrieval_metrics.hamming_topk`` /
  ``hamming_within``), which is what every evaluation ranks with.

``auto`` picks faiss when it is installed.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from hashcore import retrieval_metrics as rm

from .codes import pack_codes

BACKENDS = ("auto", "faiss", "torch")
_RANGE_BATCH = 256  # queries per range search when resolving ties (bounds the returned lists)


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _signed(codes) -> torch.Tensor:
    return rm.to_signed_codes(torch.as_tensor(np.asarray(codes)))


def _sort_segments(lims: np.ndarray, dist: np.ndarray, idx: np.ndarray):
    """Order every query's segment of a CSR result by (distance, index)."""
    rows = np.repeat(np.arange(len(lims) - 1), np.diff(lims))
    order = np.lexsort((idx, dist, rows))
    return dist[order], idx[order]


class HammingIndex:
    """Exact Hamming top-k / radius search over database codes.

    Args:
        db_codes: (N, K) codes in {-1, +1}, {0, 1} or bool (use :meth:`from_packed` for a codes folder).
        backend: ``auto`` (faiss if installed, else torch), ``faiss`` or ``torch``.
    """

    def __init__(self, db_codes=None, backend: str = "auto", *, packed: Optional[np.ndarray] = None,
                 bits: Optional[int] = None):
        if backend not in BACKENDS:
            raise ValueError(f"search backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "faiss" and not faiss_available():
            raise ValueError("search backend 'faiss' needs faiss-cpu: pip install 'hashbench[search]' "
                             "(or use --backend torch, which gives the same results)")
        self.backend = ("faiss" if faiss_available() else "torch") if backend == "auto" else backend
        if packed is None:
            db = np.asarray(db_codes)
            packed, bits = pack_codes(db), db.shape[1]
        self.packed, self.bits, self.num_items = np.ascontiguousarray(packed), int(bits), len(packed)
        if self.num_items == 0:
            raise ValueError("the database holds no codes")
        self._radius_indexes: dict = {}
        if self.backend == "faiss":
            import faiss
            self._flat = faiss.IndexBinaryFlat(8 * self.packed.shape[1])
            self._flat.add(self.packed)
        else:
            self._db = rm.to_signed_codes(torch.from_numpy(np.unpackbits(self.packed, axis=1, count=self.bits)))

    @classmethod
    def from_packed(cls, packed: np.ndarray, bits: int, backend: str = "auto") -> "HammingIndex":
        return cls(None, backend, packed=packed, bits=bits)

    def _query(self, query_codes) -> np.ndarray:
        q = np.asarray(query_codes)
        if q.ndim != 2 or q.shape[1] != self.bits:
            raise ValueError(f"query codes must be (queries, {self.bits}) like the database, got shape {q.shape}")
        return q

    # ---- top k --------------------------------------------------------------------------------------------
    def search(self, query_codes, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, distances)``, both int64 (Q, min(k, N)), in (distance, index) order."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        q = self._query(query_codes)
        k = min(int(k), self.num_items)
        if self.backend == "torch":
            idx, dist = rm.hamming_topk(_signed(q), self._db, k)
            return idx.numpy(), dist.numpy()
        return self._faiss_topk(pack_codes(q), k)

    def _faiss_topk(self, qp: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        width = min(k + 1, self.num_items)  # one more: does the k-th distance's tie group go on?
        dist, idx = self._flat.search(qp, width)
        dist = dist.astype(np.int64)
        straddles = dist[:, k] == dist[:, k - 1] if width > k else np.zeros(len(qp), bool)
        dist, idx = dist[:, :k], idx[:, :k]
        order = np.lexsort((idx, dist), axis=-1)  # the set is exact; order ties by index
        dist, idx = np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)
        rows = np.nonzero(straddles)[0]
        kth = dist[rows, k - 1]
        for t in np.unique(kth):  # every item within the k-th distance, then the smallest indices
            same = rows[kth == t]
            for start in range(0, len(same), _RANGE_BATCH):
                batch = same[start:start + _RANGE_BATCH]
                lims, rd, ri = self._flat.range_search(qp[batch], int(t) + 1)  # strict: distance < t + 1
                lims = lims.astype(np.int64)
                rd, ri = _sort_segments(lims, rd.astype(np.int64), ri.astype(np.int64))
                for j, row in enumerate(batch):
                    dist[row], idx[row] = rd[lims[j]:lims[j] + k], ri[lims[j]:lims[j] + k]
        return idx, dist

    # ---- radius -------------------------------------------------------------------------------------------
    def search_radius(self, query_codes, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every item within distance <= ``radius``: ``(lims (Q+1,), indices, distances)`` int64, each query's
        items ``lims[i]:lims[i+1]`` in (distance, index) order."""
        if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
            raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
        q = self._query(query_codes)
        if self.backend == "torch":
            lims, idx, dist = rm.hamming_within(_signed(q), self._db, int(radius))
            return lims.numpy(), idx.numpy(), dist.numpy()
        lims, dist, idx = self._radius_index(int(radius)).range_search(pack_codes(q), int(radius) + 1)
        lims = lims.astype(np.int64)
        dist, idx = _sort_segments(lims, dist.astype(np.int64), idx.astype(np.int64))
        return lims, idx, dist

    def _radius_index(self, radius: int):
        """Exact for this radius: r+1 disjoint b-bit tables (pigeonhole), or the flat index when b would be tiny."""
        import faiss
        d = 8 * self.packed.shape[1]
        b = min(self.bits // (radius + 1), 63)
        if b < 8:  # near-exhaustive anyway: the flat range search is exact and simpler
            return self._flat
        if radius not in self._radius_indexes:
            index = faiss.IndexBinaryMultiHash(d, radius + 1, b)
            index.nflip = 0
            index.add(self.packed)
            self._radius_indexes[radius] = index
        return self._radius_indexes[radius]
