"""Hamming search: faiss, the torch fallback and a brute force agree exactly, ties included."""
import numpy as np
import pytest
import torch

from hashcore import retrieval_metrics as rm
from hashbench.search import HammingIndex, faiss_available

BACKENDS = ["torch", pytest.param("faiss", marks=pytest.mark.skipif(not faiss_available(), reason="needs faiss-cpu"))]


def brute(q, db):
    """Per query: every (distance, index) pair, sorted (NumPy, no shared code)."""
    dist = (q[:, None, :] != db[None, :, :]).sum(-1)
    return [sorted(zip(row.tolist(), range(len(db)))) for row in dist]


def problem(seed, nq, ndb, bits, pool=None):
    """±1 int8 codes; a small pool of distinct codes makes large tie groups and exact duplicates."""
    rng = np.random.default_rng(seed)
    if pool:
        codes = rng.integers(0, 2, (pool, bits)) * 2 - 1
        return codes[rng.integers(0, pool, nq)].astype(np.int8), codes[rng.integers(0, pool, ndb)].astype(np.int8)
    return (rng.integers(0, 2, (nq, bits)) * 2 - 1).astype(np.int8), (rng.integers(0, 2, (ndb, bits)) * 2 - 1).astype(np.int8)


CASES = [(0, 12, 300, 8, None), (1, 9, 500, 13, 7), (2, 10, 400, 64, 5), (3, 7, 200, 32, None), (4, 5, 60, 3, None)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_topk_matches_brute_force_with_many_ties(backend, case):
    seed, nq, ndb, bits, pool = case
    q, db = problem(seed, nq, ndb, bits, pool)
    index = HammingIndex(db, backend)
    assert index.backend == backend
    want = brute(q, db)
    for k in (1, 5, 37, ndb - 1, ndb, ndb + 10):
        idx, dist = index.search(q, k)
        kk = min(k, ndb)
        assert idx.shape == dist.shape == (nq, kk) and idx.dtype == dist.dtype == np.int64
        assert [list(zip(d.tolist(), i.tolist())) for d, i in zip(dist, idx)] == [w[:kk] for w in want], k


@pytest.mark.skipif(not faiss_available(), reason="needs faiss-cpu")
@pytest.mark.parametrize("case", CASES)
def test_faiss_fallback_and_the_metrics_ranking_agree(case):
    seed, nq, ndb, bits, pool = case
    q, db = problem(seed, nq, ndb, bits, pool)
    for k in (3, 50):
        faiss_idx, faiss_dist = HammingIndex(db, "faiss").search(q, k)
        torch_idx, torch_dist = HammingIndex(db, "torch").search(q, k)
        metric_idx, metric_dist = rm.hamming_topk(torch.from_numpy(q), torch.from_numpy(db), k)
        assert np.array_equal(faiss_idx, torch_idx) and np.array_equal(faiss_idx, metric_idx.numpy())
        assert np.array_equal(faiss_dist, torch_dist) and np.array_equal(faiss_dist, metric_dist.numpy())
    # the neighbours are the metrics' ranking: P@k from them is the metrics' P@k
    labels_q, labels_db = np.arange(nq) % 3, np.arange(ndb) % 3
    idx, _ = HammingIndex(db, "faiss").search(q, 20)
    p_at_20 = float(np.mean(labels_db[idx] == labels_q[:, None]))
    assert rm.precision_at_k(torch.from_numpy(q), torch.from_numpy(labels_q), torch.from_numpy(db),
                             torch.from_numpy(labels_db), 20) == pytest.approx(p_at_20, abs=1e-15)


class TieScramblingFlat:
    """A faiss flat index whose top-k answer breaks ties the worst way (largest database index first), as a heap
    without an index tie-break may. faiss-cpu 1.15.1 itself happens to order ties by index; older versions and
    other code paths need not, and HammingIndex must not depend on it."""

    def __init__(self, flat, packed):
        self.flat, self.bits = flat, np.unpackbits(packed, axis=1)

    def search(self, qp, k):
        dist = (np.unpackbits(qp, axis=1)[:, None, :] != self.bits[None]).sum(-1)
        ids = np.arange(dist.shape[1])
        order = np.stack([np.lexsort((-ids, row))[:k] for row in dist])
        return np.take_along_axis(dist, order, 1).astype(np.int32), order

    def range_search(self, qp, radius):
        return self.flat.range_search(qp, radius)


@pytest.mark.skipif(not faiss_available(), reason="needs faiss-cpu")
@pytest.mark.parametrize("case", CASES)
def test_faiss_ties_at_the_kth_distance_are_resolved_by_index(case):
    seed, nq, ndb, bits, pool = case
    q, db = problem(seed, nq, ndb, bits, pool)
    index = HammingIndex(db, "faiss")
    index._flat = TieScramblingFlat(index._flat, index.packed)
    want = brute(q, db)
    for k in (1, 5, 37, ndb - 1):
        idx, dist = index.search(q, k)
        assert [list(zip(d.tolist(), i.tolist())) for d, i in zip(dist, idx)] == [w[:k] for w in want], k


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("radius", [0, 1, 2, 5, 40])
def test_radius_search_matches_brute_force(backend, radius):
    for seed, nq, ndb, bits, pool in CASES[:3]:
        q, db = problem(seed, nq, ndb, bits, pool)
        lims, idx, dist = HammingIndex(db, backend).search_radius(q, radius)
        assert lims[0] == 0 and len(lims) == nq + 1
        for i, w in enumerate(brute(q, db)):
            got = list(zip(dist[lims[i]:lims[i + 1]].tolist(), idx[lims[i]:lims[i + 1]].tolist()))
            assert got == [(d, j) for d, j in w if d <= radius], (seed, radius, i)


def test_bad_inputs_are_clear_errors():
    q, db = problem(5, 3, 20, 16)
    index = HammingIndex(db, "torch")
    with pytest.raises(ValueError, match=r"\(queries, 16\)"):
        index.search(q[:, :8], 3)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(q, 0)
    with pytest.raises(ValueError, match="radius must be"):
        index.search_radius(q, -1)
    with pytest.raises(ValueError, match="backend must be one of"):
        HammingIndex(db, "annoy")
    with pytest.raises(ValueError, match=r"\{-1, \+1\}"):
        HammingIndex(db * 0.5, "torch")
