"""Tests of hashcore/retrieval_metrics/ against independent brute-force computations.

The references below are deliberately naive: explicit Python loops, ``sorted`` with key
(distance, index), permutations enumerated with itertools.  They share no code with the module.
"""

from __future__ import annotations

import ast
import itertools
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from hashcore import retrieval_metrics as rm
from hashcore.retrieval_metrics import engine, inputs, tie_average, topk
from hashcore.retrieval_metrics import (
    bit_statistics,
    hamming_radius_metrics,
    hamming_topk,
    mean_average_precision,
    precision_at_k,
    precision_recall_curve,
    per_query_metrics,
    concat_per_query,
    retrieval_curves,
    retrieval_report,
    summarize,
    summarize_curves,
    tie_averaged_map,
    to_multi_hot,
    to_signed_codes,
)
from tests.oracles import calc_top_map_loop  # DeepHash-pytorch's CalcTopMap loop, stable argsort

ROOT = pathlib.Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# Brute-force references (pure Python)
# --------------------------------------------------------------------------------------------------


def _bits(codes):
    """Rows of ±1 python ints from a tensor of ±1 / bool codes."""
    codes = codes.tolist()
    return [[1 if (v is True or (v is not False and v > 0)) else -1 for v in row] for row in codes]


def _label_sets(labels):
    labels = labels.tolist()
    if labels and not isinstance(labels[0], list):
        return [{int(v)} for v in labels]
    return [{j for j, v in enumerate(row) if v > 0} for row in labels]


def _hamming(a, b):
    return sum(1 for x, y in zip(a, b) if x != y)


def _per_query(q, ql, db, dl):
    """For each query: list of (distance, index, relevant) for every database item."""
    qb, dbb, qs, ds = _bits(q), _bits(db), _label_sets(ql), _label_sets(dl)
    return [
        [(_hamming(qc, dc), j, bool(qs[i] & ds[j])) for j, dc in enumerate(dbb)]
        for i, qc in enumerate(qb)
    ]


def _ap_of(rels):
    hits, total = 0, 0.0
    for pos, rel in enumerate(rels, 1):
        if rel:
            hits += 1
            total += hits / pos
    return (total / hits if hits else 0.0), hits


def brute_map(q, ql, db, dl, k=None, exclude=False):
    aps = []
    for items in _per_query(q, ql, db, dl):
        ranked = sorted(items, key=lambda t: (t[0], t[1]))
        kk = len(ranked) if k is None else min(k, len(ranked))
        ap, hits = _ap_of([t[2] for t in ranked[:kk]])
        if hits or not exclude:
            aps.append(ap)
    return sum(aps) / len(aps) if aps else float("nan")


def brute_tie_map(q, ql, db, dl, k=None, exclude=False):
    """Expected AP by enumerating every order of the database (uniform inside each tie group)."""
    aps = []
    for items in _per_query(q, ql, db, dl):
        n = len(items)
        kk = n if k is None else min(k, n)
        total, any_hit, count = 0.0, False, 0
        for perm in itertools.permutations(range(n)):
            ranked = sorted(items, key=lambda t: (t[0], perm[t[1]]))
            ap, hits = _ap_of([t[2] for t in ranked[:kk]])
            total += ap
            any_hit |= hits > 0
            count += 1
        if any_hit or not exclude:
            aps.append(total / count)
    return sum(aps) / len(aps) if aps else float("nan")


def brute_precision_at(q, ql, db, dl, k):
    vals = []
    for items in _per_query(q, ql, db, dl):
        ranked = sorted(items, key=lambda t: (t[0], t[1]))
        kk = len(ranked) if k is None else min(k, len(ranked))
        vals.append(sum(t[2] for t in ranked[:kk]) / kk)
    return sum(vals) / len(vals)


def brute_radius(q, ql, db, dl, radius, qs=None, dbs=None, drop=True):
    precs, recs, aps = [], [], []
    for i, items in enumerate(_per_query(q, ql, db, dl)):
        ball = [t for t in items if t[0] <= radius]
        total_rel = sum(t[2] for t in items)
        if not ball:
            precs.append(0.0), recs.append(0.0), aps.append(0.0)
            continue
        n_rel = sum(t[2] for t in ball)
        precs.append(n_rel / len(ball))
        recs.append(n_rel / total_rel if total_rel else 0.0)
        if qs is None:
            ranked = sorted(ball, key=lambda t: (t[0], t[1]))
        else:
            score = lambda t: sum(a * b for a, b in zip(qs[i].tolist(), dbs[t[1]].tolist()))  # noqa: E731
            ranked = sorted(ball, key=lambda t: (-score(t), t[1]))
        ap, hits = _ap_of([t[2] for t in ranked])
        if hits or not drop:
            aps.append(ap)
    mean = lambda v: sum(v) / len(v) if v else float("nan")  # noqa: E731
    return {"precision": mean(precs), "recall": mean(recs), "map": mean(aps)}


def brute_pr_radius(q, ql, db, dl, bits, average="query", empty="zero"):
    per_q = _per_query(q, ql, db, dl)
    precision, recall = [], []
    for r in range(bits + 1):
        ps, rs, hit_sum, ret_sum, rel_sum = [], [], 0, 0, 0
        for items in per_q:
            ret = [t for t in items if t[0] <= r]
            hits = sum(t[2] for t in ret)
            total = sum(t[2] for t in items)
            hit_sum, ret_sum, rel_sum = hit_sum + hits, ret_sum + len(ret), rel_sum + total
            if not ret and empty == "skip":
                continue
            ps.append(hits / len(ret) if ret else 0.0)
            rs.append(hits / total if total else 0.0)
        if average == "pooled":
            precision.append(hit_sum / ret_sum if ret_sum else float("nan"))
            recall.append(hit_sum / rel_sum if rel_sum else float("nan"))
        else:
            precision.append(sum(ps) / len(ps) if ps else float("nan"))
            recall.append(sum(rs) / len(rs) if rs else float("nan"))
    return precision, recall


def brute_pr_rank(q, ql, db, dl, ranks):
    precision, recall = [], []
    per_q = _per_query(q, ql, db, dl)
    for n in ranks:
        ps, rs = [], []
        for items in per_q:
            ranked = sorted(items, key=lambda t: (t[0], t[1]))
            hits = sum(t[2] for t in ranked[:n])
            total = sum(t[2] for t in items)
            ps.append(hits / n)
            rs.append(hits / total if total else 0.0)
        precision.append(sum(ps) / len(ps))
        recall.append(sum(rs) / len(rs))
    return precision, recall


def brute_tie_pr_rank(q, ql, db, dl, ranks):
    """Expected P@n / R@n over every order of the database (uniform inside tie groups)."""
    precision, recall = [0.0] * len(ranks), [0.0] * len(ranks)
    per_q = _per_query(q, ql, db, dl)
    for items in per_q:
        total = sum(t[2] for t in items)
        perms = list(itertools.permutations(range(len(items))))
        for perm in perms:
            ranked = sorted(items, key=lambda t: (t[0], perm[t[1]]))
            for i, n in enumerate(ranks):
                hits = sum(t[2] for t in ranked[:n])
                precision[i] += hits / n / len(perms) / len(per_q)
                recall[i] += (hits / total if total else 0.0) / len(perms) / len(per_q)
    return precision, recall


# --------------------------------------------------------------------------------------------------
# Random problems
# --------------------------------------------------------------------------------------------------


def make_problem(seed, num_q, num_db, bits, num_classes=5, multi=False, dup_pool=None):
    """Random ±1 codes (optionally drawn from a small pool: many exact duplicates / ties) and labels."""
    g = torch.Generator().manual_seed(seed)
    if dup_pool:
        pool = torch.randint(0, 2, (dup_pool, bits), generator=g).float() * 2 - 1
        q = pool[torch.randint(0, dup_pool, (num_q,), generator=g)]
        db = pool[torch.randint(0, dup_pool, (num_db,), generator=g)]
    else:
        q = torch.randint(0, 2, (num_q, bits), generator=g).float() * 2 - 1
        db = torch.randint(0, 2, (num_db, bits), generator=g).float() * 2 - 1
    if multi:  # sparse multi-hot; some rows have no label at all -> queries without relevant items
        ql = (torch.rand(num_q, num_classes, generator=g) < 0.25).float()
        dl = (torch.rand(num_db, num_classes, generator=g) < 0.25).float()
    else:
        ql = torch.randint(0, num_classes, (num_q,), generator=g)
        dl = torch.randint(0, num_classes, (num_db,), generator=g)
    return q, ql, db, dl


CASES = [
    # (seed, Q, N, bits, multi, dup_pool)
    (0, 13, 120, 32, False, None),  # mostly distinct distances
    (1, 11, 90, 16, True, None),  # multi-label, zero-relevant queries
    (2, 9, 150, 3, False, None),  # few bits: huge tie groups
    (3, 10, 80, 12, True, 6),  # exact duplicate codes, multi-label
    (4, 7, 60, 8, False, 4),
]


# --------------------------------------------------------------------------------------------------
# Conversion and validation
# --------------------------------------------------------------------------------------------------


def test_to_signed_codes_bits_and_sign():
    bits = torch.tensor([[0, 1, 1], [1, 0, 0]], dtype=torch.uint8)
    expected = torch.tensor([[-1.0, 1, 1], [1, -1, -1]])
    assert torch.equal(to_signed_codes(bits), expected)
    assert torch.equal(to_signed_codes(bits.bool()), expected)
    # signed / float: by sign, with exact zero (and -0.) -> +1
    values = torch.tensor([[-0.3, 0.0, 2.0], [-0.0, -5.0, 1e-30]])
    assert torch.equal(to_signed_codes(values), torch.tensor([[-1.0, 1, 1], [1, -1, 1]]))
    assert torch.equal(to_signed_codes(torch.tensor([[0, -2, 3]], dtype=torch.int8)), torch.tensor([[1.0, -1, 1]]))
    # a 0/1 *signed* tensor is binarised by sign (0 -> +1), not read as bits
    assert torch.equal(to_signed_codes(torch.tensor([[0, 1]])), torch.tensor([[1.0, 1.0]]))
    assert to_signed_codes(np.array([[0.5, -0.5]])).dtype == torch.float32


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(4), "2-D"),
        (torch.zeros(2, 3, 4), "2-D"),
        (torch.tensor([[0, 2]], dtype=torch.uint8), "only 0 and 1"),
        (torch.tensor([[float("nan"), 1.0]]), "NaN"),
    ],
)
def test_to_signed_codes_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        to_signed_codes(bad)


def test_to_multi_hot():
    assert torch.equal(to_multi_hot(torch.tensor([2, 0])), torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    assert to_multi_hot(torch.tensor([1]), num_classes=4).shape == (1, 4)
    mh = torch.tensor([[1, 0, 1], [0, 0, 0]], dtype=torch.bool)
    assert torch.equal(to_multi_hot(mh), mh.float())
    with pytest.raises(ValueError, match="out of range"):
        to_multi_hot(torch.tensor([3]), num_classes=3)
    with pytest.raises(ValueError, match="non-negative"):
        to_multi_hot(torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="num_classes"):
        to_multi_hot(mh, num_classes=4)
    with pytest.raises(ValueError, match="integer class ids"):
        to_multi_hot(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="1-D class ids"):
        to_multi_hot(torch.zeros(2, 2, 2))


def test_input_validation():
    q, ql, db, dl = make_problem(0, 4, 10, 8)
    with pytest.raises(ValueError, match="bits"):
        mean_average_precision(q, ql, db[:, :6], dl)
    with pytest.raises(ValueError, match="query labels"):
        mean_average_precision(q, ql[:3], db, dl)
    with pytest.raises(ValueError, match="database labels"):
        mean_average_precision(q, ql, db, dl[:9])
    with pytest.raises(ValueError, match="classes"):
        mean_average_precision(q, to_multi_hot(ql, 5), db, to_multi_hot(dl, 6))
    with pytest.raises(ValueError, match="out of range"):  # ids beyond the multi-hot width
        mean_average_precision(q, torch.full((4,), 7), db, to_multi_hot(dl, 5))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="top_k"):
            mean_average_precision(q, ql, db, dl, top_k=bad)
    with pytest.raises(ValueError, match="chunk_size"):
        mean_average_precision(q, ql, db, dl, chunk_size=0)
    with pytest.raises(ValueError, match="at least one"):
        mean_average_precision(q[:0], ql[:0], db, dl)


def test_bits_and_labels_in_any_accepted_format_give_same_map():
    q, ql, db, dl = make_problem(5, 6, 40, 10)
    ref = mean_average_precision(q, ql, db, dl, top_k=7)
    assert mean_average_precision(q > 0, ql, (db > 0).to(torch.uint8), to_multi_hot(dl, 5), top_k=7) == ref
    assert mean_average_precision(q * 0.3, to_multi_hot(ql, 5).bool(), db.numpy(), dl.numpy(), top_k=7) == ref


# --------------------------------------------------------------------------------------------------
# mAP (stable ranking)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_map_matches_brute_force(case):
    seed, nq, ndb, bits, multi, pool = case
    q, ql, db, dl = make_problem(seed, nq, ndb, bits, multi=multi, dup_pool=pool)
    for k in (1, 5, ndb - 1, ndb, ndb + 7, None):
        for exclude in (False, True):
            got = mean_average_precision(q, ql, db, dl, top_k=k, exclude_no_relevant=exclude, chunk_size=4)
            assert got == pytest.approx(brute_map(q, ql, db, dl, k, exclude), abs=1e-12), (k, exclude)


def test_map_hand_examples_deephash_issue_33():
    same = torch.ones(4, 6)  # every distance is 0: the ranking is the database order
    q = same[:1]
    labels = lambda pattern: torch.tensor([1 if p == "+" else 0 for p in pattern])  # noqa: E731
    # AP@3 of [+ - +] = (1/1 + 2/3) / 2 = 5/6; of [+ - -] = 1 (normalised by hits in the top 3)
    assert mean_average_precision(q, torch.tensor([1]), same, labels("+-+-"), top_k=3) == pytest.approx(5 / 6)
    assert mean_average_precision(q, torch.tensor([1]), same, labels("+--+"), top_k=3) == pytest.approx(1.0)
    # ties are broken by database index: distances [1, 0, 1, 0] rank items 1, 3, 0, 2
    db = torch.tensor([[-1.0, 1], [1, 1], [1, -1], [1, 1]])
    rel = torch.tensor([1, 0, 0, 0])  # only item 0 is relevant: it is 3rd
    assert mean_average_precision(torch.ones(1, 2), torch.tensor([1]), db, rel) == pytest.approx(1 / 3)
    rel = torch.tensor([0, 0, 0, 1])  # item 3 is 2nd
    assert mean_average_precision(torch.ones(1, 2), torch.tensor([1]), db, rel) == pytest.approx(1 / 2)


def test_map_all_is_true_map_at_all_not_the_topk_minus_one_bug():
    # the only relevant item is ranked last: mAP@All sees it, DeepHash-pytorch topK=-1 drops it
    db = torch.tensor([[1.0, 1], [1, 1], [-1, -1]])
    q, ql, dl = torch.ones(1, 2), torch.tensor([1]), torch.tensor([0, 0, 1])
    assert mean_average_precision(q, ql, db, dl) == pytest.approx(1 / 3)
    assert mean_average_precision(q, ql, db, dl, top_k=10**9) == pytest.approx(1 / 3)
    qB, rB = q.numpy(), db.numpy()
    onehot = lambda x: np.eye(2, dtype=np.float32)[x.numpy()]  # noqa: E731
    assert calc_top_map_loop(rB, qB, onehot(dl), onehot(ql), -1) == 0.0  # the bug
    assert calc_top_map_loop(rB, qB, onehot(dl), onehot(ql), 3) == pytest.approx(1 / 3)


def test_zero_relevant_conventions():
    q = torch.ones(3, 4)
    db = torch.ones(5, 4)
    ql = torch.tensor([[1.0, 0], [0, 1], [0, 0]])  # query 2 has no label: never relevant
    dl = torch.tensor([[1.0, 0], [1, 0], [0, 0], [0, 0], [0, 1]])
    # query 0: relevant at ranks 1, 2 -> 1; query 1: relevant at rank 5 -> 1/5 (0 at k=3); query 2: 0
    assert mean_average_precision(q, ql, db, dl) == pytest.approx((1 + 0.2 + 0) / 3)
    assert mean_average_precision(q, ql, db, dl, exclude_no_relevant=True) == pytest.approx((1 + 0.2) / 2)
    assert mean_average_precision(q, ql, db, dl, top_k=3) == pytest.approx(1 / 3)
    assert mean_average_precision(q, ql, db, dl, top_k=3, exclude_no_relevant=True) == pytest.approx(1.0)
    assert math.isnan(mean_average_precision(q[2:], ql[2:], db, dl, exclude_no_relevant=True))
    assert tie_averaged_map(q, ql, db, dl, top_k=3, exclude_no_relevant=True) == pytest.approx(
        brute_tie_map(q, ql, db, dl, 3, exclude=True)
    )


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_chunk_size_does_not_change_results(chunk):
    q, ql, db, dl = make_problem(6, 17, 300, 6, multi=True)
    ref = brute_map(q, ql, db, dl, 40)
    assert mean_average_precision(q, ql, db, dl, top_k=40, chunk_size=chunk) == pytest.approx(ref, abs=1e-12)
    assert tie_averaged_map(q, ql, db, dl, top_k=40, chunk_size=chunk) == pytest.approx(
        tie_averaged_map(q, ql, db, dl, top_k=40), abs=1e-13
    )
    assert precision_at_k(q, ql, db, dl, 40, chunk_size=chunk) == pytest.approx(brute_precision_at(q, ql, db, dl, 40))


@pytest.mark.parametrize("tie_average", [False, True])
def test_kept_per_query_results_own_only_their_values(tie_average):
    """What a chunk leaves behind is O(queries), not a view into the chunk's (B, k) work matrices:
    otherwise memory grows with the number of queries (seen at 100k queries x 1M database)."""
    q, ql, db, dl = make_problem(7, 40, 500, 16, multi=True)
    prob = inputs._prepare(q, ql, db, dl)
    kept = [t for q0 in range(0, 40, 8) for per_k in topk._topk_chunk(prob, q0, q0 + 8, [5, 100], tie_average).values()
            for t in per_k.values()]
    assert len(kept) == 2 * (4 if tie_average else 2) * 5  # 5 chunks of 8 queries
    for t in kept:
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size() <= 8 * 8


def test_streaming_over_many_blocks(monkeypatch):
    problems = [make_problem(seed, nq, ndb, bits, multi=multi, dup_pool=pool)
                for seed, nq, ndb, bits, multi, pool in CASES[:4]]
    ks = (3, 25, None)
    # references with the default sizes (one database block for these small problems)
    refs = [{k: (brute_map(*p, k), tie_averaged_map(*p, top_k=k)) for k in ks} for p in problems]
    # tiny blocks and samples force many threshold updates, strict rejections and prunes in _select
    monkeypatch.setattr(engine, "_MIN_BLOCK", 8)
    monkeypatch.setattr(engine, "_BLOCK_BYTES", 64)
    monkeypatch.setattr(engine, "_SAMPLE", 8)
    for prob, ref in zip(problems, refs):
        for k in ks:
            assert mean_average_precision(*prob, top_k=k, chunk_size=5) == pytest.approx(ref[k][0], abs=1e-12)
            assert tie_averaged_map(*prob, top_k=k, chunk_size=5) == pytest.approx(ref[k][1], abs=1e-13)


def test_threshold_guess_from_sample_and_fallback_for_bad_guesses(monkeypatch):
    q, ql, db, dl = make_problem(9, 12, 400, 10, multi=True)
    refs = {k: (brute_map(q, ql, db, dl, k), tie_averaged_map(q, ql, db, dl, top_k=k)) for k in (5, 60)}
    monkeypatch.setattr(engine, "_SAMPLE", 16)  # a strided sample guesses the thresholds
    for k, (ref, ref_tie) in refs.items():
        assert mean_average_precision(q, ql, db, dl, top_k=k) == pytest.approx(ref, abs=1e-12)
        assert tie_averaged_map(q, ql, db, dl, top_k=k) == pytest.approx(ref_tie, abs=1e-13)
    # far too tight guesses for every other row: those rows must be redone exactly
    real_guess = engine._guess_threshold
    calls = []

    def bad_guess(prob, query, k):
        calls.append(k)
        guess = real_guess(prob, query, k)
        guess[::2] = 0
        return guess

    monkeypatch.setattr(engine, "_guess_threshold", bad_guess)
    for k, (ref, ref_tie) in refs.items():
        assert mean_average_precision(q, ql, db, dl, top_k=k, chunk_size=5) == pytest.approx(ref, abs=1e-12)
        assert tie_averaged_map(q, ql, db, dl, top_k=k, chunk_size=5) == pytest.approx(ref_tie, abs=1e-13)
    assert calls


def test_map_matches_numpy_calc_top_map_with_stable_sort():
    q, ql, db, dl = make_problem(7, 40, 2000, 32, num_classes=10)
    qL = np.eye(10, dtype=np.float32)[ql.numpy()]
    rL = np.eye(10, dtype=np.float32)[dl.numpy()]
    for k in (100, 2000):
        ref = calc_top_map_loop(db.numpy(), q.numpy(), rL, qL, k)
        assert mean_average_precision(q, ql, db, dl, top_k=k) == pytest.approx(ref, abs=1e-12)


def test_map_matches_torchmetrics_with_positive_scores():
    tm = pytest.importorskip("torchmetrics.functional.retrieval")
    q, ql, db, dl = make_problem(8, 12, 300, 8, multi=True)
    bits, n = q.shape[1], db.shape[0]
    for k in (10, 300):
        per_query = []
        for i in range(q.shape[0]):
            dist = (bits - db @ q[i]) / 2
            # strictly positive, ties broken by database index as in our ranking
            score = (bits - dist + 1).double() - torch.arange(n, dtype=torch.float64) / (n + 1)
            target = (dl @ ql[i]) > 0
            per_query.append(float(tm.retrieval_average_precision(score, target, top_k=k)))
        assert mean_average_precision(q, ql, db, dl, top_k=k) == pytest.approx(np.mean(per_query), abs=1e-6)


# --------------------------------------------------------------------------------------------------
# Tie-averaged mAP
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed, nq, ndb, bits, multi",
    [(10, 4, 6, 2, False), (11, 4, 6, 3, True), (12, 3, 7, 2, True), (13, 5, 5, 1, False)],
)
def test_tie_averaged_map_matches_enumeration_of_all_orders(seed, nq, ndb, bits, multi):
    q, ql, db, dl = make_problem(seed, nq, ndb, bits, num_classes=3, multi=multi)
    for k in range(1, ndb + 2):
        for exclude in (False, True):
            got = tie_averaged_map(q, ql, db, dl, top_k=k, exclude_no_relevant=exclude)
            ref = brute_tie_map(q, ql, db, dl, k, exclude)
            assert got == pytest.approx(ref, abs=1e-12), (k, exclude, got, ref)


def test_tie_averaged_map_large_groups_monte_carlo():
    # big tie groups (3 bits, 400 items) exercise the hypergeometric and the harmonic series paths
    q, ql, db, dl = make_problem(14, 6, 400, 3, num_classes=4)
    g = torch.Generator().manual_seed(0)
    k = 90
    expected = tie_averaged_map(q, ql, db, dl, top_k=k)
    samples = []
    for _ in range(150):
        perm = torch.randperm(db.shape[0], generator=g)
        samples.append(mean_average_precision(q, ql, db[perm], dl[perm], top_k=k))
    samples = np.array(samples)
    stderr = samples.std(ddof=1) / np.sqrt(len(samples))
    assert stderr > 0
    assert abs(samples.mean() - expected) < 5 * stderr
    # a stable mAP that depends on database order, a tie average that does not
    assert samples.std() > 1e-4
    perm = torch.randperm(db.shape[0], generator=g)
    assert tie_averaged_map(q, ql, db[perm], dl[perm], top_k=k) == pytest.approx(expected, abs=1e-12)


def test_tie_averaged_map_equals_map_without_ties():
    bits = 12
    q = torch.ones(1, bits)
    # item j differs from the query in its first j bits: all distances distinct
    db = torch.stack([torch.cat([-torch.ones(j), torch.ones(bits - j)]) for j in range(bits + 1)])
    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(bits + 1, generator=g)
    db, dl = db[perm], torch.randint(0, 2, (bits + 1,), generator=g)
    for k in (1, 4, None):
        assert tie_averaged_map(q, torch.tensor([1]), db, dl, top_k=k) == pytest.approx(
            mean_average_precision(q, torch.tensor([1]), db, dl, top_k=k), abs=1e-14
        )


def test_harmonic_diff_accuracy():
    a = torch.tensor([0, 0, 5, 30, 31, 32, 1000, 10**6, 5 * 10**7, 10**6], dtype=torch.float64)
    n = torch.tensor([1, 200, 3, 1, 40, 7, 100, 3000, 7, 0], dtype=torch.float64)
    got = tie_average._harmonic_diff(a, n)
    for ai, ni, gi in zip(a.tolist(), n.tolist(), got.tolist()):
        exact = math.fsum(1.0 / (ai + p) for p in range(1, int(ni) + 1))
        assert gi == pytest.approx(exact, rel=1e-14, abs=0)


# --------------------------------------------------------------------------------------------------
# Precision@k, curves, Hamming ball
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES[:4])
def test_precision_at_k_matches_brute_force(case):
    seed, nq, ndb, bits, multi, pool = case
    q, ql, db, dl = make_problem(seed, nq, ndb, bits, multi=multi, dup_pool=pool)
    ks = [1, 7, ndb, ndb + 3, None]
    got = precision_at_k(q, ql, db, dl, ks)
    assert set(got) == set(ks)
    for k in ks:
        assert got[k] == pytest.approx(brute_precision_at(q, ql, db, dl, k), abs=1e-12)
    assert precision_at_k(q, ql, db, dl, 7) == pytest.approx(got[7])


@pytest.mark.parametrize("average, empty", [("query", "zero"), ("query", "skip"), ("pooled", "zero")])
def test_pr_curve_by_radius_matches_brute_force(average, empty):
    q, ql, db, dl = make_problem(15, 9, 70, 10, multi=True)
    got = precision_recall_curve(q, ql, db, dl, by="radius", average=average, empty=empty, chunk_size=4)
    prec, rec = brute_pr_radius(q, ql, db, dl, 10, average, empty)
    assert got["radius"].tolist() == list(range(11))
    np.testing.assert_allclose(got["precision"].numpy(), prec, atol=1e-12)
    np.testing.assert_allclose(got["recall"].numpy(), rec, atol=1e-12)


def test_pr_curve_by_rank_matches_brute_force():
    q, ql, db, dl = make_problem(16, 8, 90, 4, multi=True)
    ranks = [1, 2, 10, 45, 90, 500]
    got = precision_recall_curve(q, ql, db, dl, by="rank", ranks=ranks, chunk_size=3)
    assert got["rank"].tolist() == [1, 2, 10, 45, 90]  # clamped to N and de-duplicated
    prec, rec = brute_pr_rank(q, ql, db, dl, [1, 2, 10, 45, 90])
    np.testing.assert_allclose(got["precision"].numpy(), prec, atol=1e-12)
    np.testing.assert_allclose(got["recall"].numpy(), rec, atol=1e-12)
    default = precision_recall_curve(q, ql, db, dl, by="rank", num_points=7)
    assert default["rank"][0] == 1 and default["rank"][-1] == 90 and len(default["rank"]) == 7
    with pytest.raises(ValueError, match="by must be"):
        precision_recall_curve(q, ql, db, dl, by="distance")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("radius", [0, 2, 5])
def test_hamming_radius_metrics_match_brute_force(case, radius):
    seed, nq, ndb, bits, multi, pool = case
    q, ql, db, dl = make_problem(seed, nq, ndb, bits, multi=multi, dup_pool=pool)
    for drop in (True, False):
        got = hamming_radius_metrics(q, ql, db, dl, radius=radius, drop_balls_without_relevant=drop, chunk_size=4)
        ref = brute_radius(q, ql, db, dl, radius, drop=drop)
        for key in ("precision", "recall", "map"):
            assert got[key] == pytest.approx(ref[key], abs=1e-12, nan_ok=True), (key, drop)


def test_hamming_radius_map_reranks_by_continuous_scores():
    g = torch.Generator().manual_seed(17)
    qs, dbs = torch.randn(10, 6, generator=g), torch.randn(120, 6, generator=g)
    ql, dl = torch.randint(0, 3, (10,), generator=g), torch.randint(0, 3, (120,), generator=g)
    got = hamming_radius_metrics(qs, ql, dbs, dl, radius=2, query_scores=qs, db_scores=dbs)
    ref = brute_radius(to_signed_codes(qs), ql, to_signed_codes(dbs), dl, 2, qs, dbs)
    for key in ("precision", "recall", "map"):
        assert got[key] == pytest.approx(ref[key], abs=1e-12)
    plain = hamming_radius_metrics(qs, ql, dbs, dl, radius=2)
    assert plain["map"] != pytest.approx(got["map"])  # re-ranking changes the order inside the ball
    with pytest.raises(ValueError, match="both"):
        hamming_radius_metrics(qs, ql, dbs, dl, query_scores=qs)


def test_hamming_radius_empty_balls_count_zero():
    q = torch.ones(2, 8)
    db = -torch.ones(3, 8)  # every item at distance 8
    ql, dl = torch.tensor([0, 1]), torch.tensor([0, 0, 1])
    assert hamming_radius_metrics(q, ql, db, dl, radius=2) == {"precision": 0.0, "recall": 0.0, "map": 0.0}
    assert hamming_radius_metrics(q, ql, db, dl, radius=8)["precision"] == pytest.approx((2 / 3 + 1 / 3) / 2)


# --------------------------------------------------------------------------------------------------
# Bit statistics, report, curves, device, purity
# --------------------------------------------------------------------------------------------------


def test_bit_statistics():
    codes = torch.tensor([[1.0, 1, -1], [1, -1, -1], [1, 1, -1], [1, -1, 0.0]])  # 0 -> +1 in column 2
    stats = bit_statistics(codes)
    np.testing.assert_allclose(stats["plus_one_rate"].numpy(), [1.0, 0.5, 0.25])
    h = lambda p: 0.0 if p in (0, 1) else -p * math.log2(p) - (1 - p) * math.log2(1 - p)  # noqa: E731
    np.testing.assert_allclose(stats["bit_entropy"].numpy(), [h(1.0), h(0.5), h(0.25)], atol=1e-12)
    assert stats["mean_bit_entropy"] == pytest.approx((h(0.5) + h(0.25)) / 3)
    assert stats["distinct_code_fraction"] == pytest.approx(3 / 4)


def test_retrieval_report_is_consistent_with_the_functions():
    q, ql, db, dl = make_problem(18, 15, 200, 6, multi=True)
    rep = retrieval_report(q, ql, db, dl, top_ks=(20, None), radius=1, chunk_size=6)
    assert set(rep) == {
        "mAP@20", "mAP@20_tie_avg", "P@20", "mAP@all", "mAP@all_tie_avg", "P@all", "P@H<=1", "R@H<=1", "mAP@H<=1",
    }
    assert rep["mAP@20"] == pytest.approx(brute_map(q, ql, db, dl, 20), abs=1e-12)
    assert rep["mAP@all"] == pytest.approx(brute_map(q, ql, db, dl, None), abs=1e-12)
    assert rep["mAP@20_tie_avg"] == pytest.approx(tie_averaged_map(q, ql, db, dl, top_k=20), abs=1e-13)
    assert rep["P@20"] == pytest.approx(brute_precision_at(q, ql, db, dl, 20), abs=1e-12)
    ball = brute_radius(q, ql, db, dl, 1)
    assert (rep["P@H<=1"], rep["R@H<=1"], rep["mAP@H<=1"]) == pytest.approx(
        (ball["precision"], ball["recall"], ball["map"]), abs=1e-12
    )
    excl = retrieval_report(q, ql, db, dl, top_ks=(20,), radius=None, exclude_no_relevant=True, tie_average=False)
    assert set(excl) == {"mAP@20", "P@20"}
    assert excl["mAP@20"] == pytest.approx(brute_map(q, ql, db, dl, 20, exclude=True), abs=1e-12)


def test_retrieval_curves():
    q, ql, db, dl = make_problem(19, 6, 50, 5)
    curves = retrieval_curves(q, ql, db, dl, num_points=10, rank_ties="stable")
    assert curves["pr_radius/radius"].tolist() == list(range(6))
    assert len(curves["pr_rank/rank"]) == 10 and int(curves["pr_rank/rank"][-1]) == 50
    prec, rec = brute_pr_rank(q, ql, db, dl, curves["pr_rank/rank"].tolist())
    np.testing.assert_allclose(curves["pr_rank/precision"].numpy(), prec, atol=1e-12)
    np.testing.assert_allclose(curves["pr_rank/recall"].numpy(), rec, atol=1e-12)
    prec, rec = brute_pr_radius(q, ql, db, dl, 5)
    np.testing.assert_allclose(curves["pr_radius/precision"].numpy(), prec, atol=1e-12)
    np.testing.assert_allclose(curves["pr_radius/recall"][-1].item(), 1.0)  # everything at radius K
    default = retrieval_curves(q, ql, db, dl, num_points=10, max_rank=20)  # tie-averaged rank curve
    assert int(default["pr_rank/rank"][-1]) == 20
    assert torch.equal(default["pr_radius/precision"], curves["pr_radius/precision"])


def test_rank_curve_tie_average_matches_enumeration():
    q, ql, db, dl = make_problem(21, 4, 6, 2, num_classes=3, multi=True)
    ranks = [1, 2, 3, 4, 5, 6]
    prec, rec = brute_tie_pr_rank(q, ql, db, dl, ranks)
    got = precision_recall_curve(q, ql, db, dl, by="rank", ranks=ranks, ties="average")
    np.testing.assert_allclose(got["precision"].numpy(), prec, atol=1e-12)
    np.testing.assert_allclose(got["recall"].numpy(), rec, atol=1e-12)
    curves = retrieval_curves(q, ql, db, dl, num_points=6)
    np.testing.assert_allclose(curves["pr_rank/precision"].numpy(), prec, atol=1e-12)
    stable = precision_recall_curve(q, ql, db, dl, by="rank", ranks=ranks)
    assert not np.allclose(stable["precision"].numpy(), prec)  # ties matter on this case


# --------------------------------------------------------------------------------------------------
# Exact Hamming top-k
# --------------------------------------------------------------------------------------------------


def brute_topk(q, db, k):
    """Per query: the first k of all (distance, index) pairs sorted, as two lists."""
    qb, dbb = _bits(q), _bits(db)
    out = []
    for qc in qb:
        ranked = sorted((_hamming(qc, dc), j) for j, dc in enumerate(dbb))[:k]
        out.append(([j for _, j in ranked], [d for d, _ in ranked]))
    return out


@pytest.mark.parametrize("seed, nq, ndb, bits, pool", [(30, 9, 200, 16, None), (31, 7, 300, 3, None),
                                                       (32, 8, 150, 10, 5), (33, 5, 40, 64, 3)])
def test_hamming_topk_matches_brute_force(seed, nq, ndb, bits, pool, monkeypatch):
    q, _, db, _ = make_problem(seed, nq, ndb, bits, dup_pool=pool)
    for k in (1, 10, ndb - 1, ndb):
        want = brute_topk(q, db, k)
        for chunk in (None, 2):
            idx, dist = hamming_topk(q, db, k, chunk_size=chunk)
            assert idx.dtype == torch.int64 and idx.shape == dist.shape == (nq, k)
            assert [(i, d) for i, d in zip(idx.tolist(), dist.tolist())] == want, (k, chunk)
    # many small blocks and a sample too small to guess well: still the exact answer
    monkeypatch.setattr(engine, "_MIN_BLOCK", 8)
    monkeypatch.setattr(engine, "_BLOCK_BYTES", 64)
    monkeypatch.setattr(engine, "_SAMPLE", 8)
    idx, dist = hamming_topk(q, db, 7)
    assert [(i, d) for i, d in zip(idx.tolist(), dist.tolist())] == brute_topk(q, db, 7)


def test_hamming_topk_is_the_metrics_ranking_and_checks_k():
    q, ql, db, dl = make_problem(34, 6, 120, 4, multi=True)
    idx, _ = hamming_topk(q, db, 25)
    share = (to_multi_hot(ql) @ to_multi_hot(dl).T) > 0  # relevance by brute force
    hits = share.gather(1, idx).double().sum(1) / 25
    assert precision_at_k(q, ql, db, dl, 25) == pytest.approx(float(hits.mean()), abs=1e-15)
    assert hamming_topk(q, db, 10**6)[0].shape == (6, 120)  # k > N: the whole database
    for bad in (0, -3, 2.5, True, None):
        with pytest.raises(ValueError, match="k must be a positive int"):
            hamming_topk(q, db, bad)
    with pytest.raises(ValueError, match="bits"):
        hamming_topk(q, db[:, :3], 5)


@pytest.mark.parametrize("radius", [0, 1, 3, 64])
def test_hamming_within_matches_brute_force(radius):
    q, _, db, _ = make_problem(37, 7, 180, 6, dup_pool=9)
    lims, idx, dist = rm.hamming_within(q, db, radius, chunk_size=3)
    assert lims.tolist()[0] == 0 and len(lims) == 8
    for i, (qc, (want_idx, want_dist)) in enumerate(zip(q, brute_topk(q, db, len(db)))):
        ball = [(j, d) for j, d in zip(want_idx, want_dist) if d <= radius]
        got = list(zip(idx[lims[i]:lims[i + 1]].tolist(), dist[lims[i]:lims[i + 1]].tolist()))
        assert got == ball
    with pytest.raises(ValueError, match="radius"):
        rm.hamming_within(q, db, -1)


# --------------------------------------------------------------------------------------------------
# Per-query results and their exact reduction (what sharded evaluation relies on)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_per_query_parts_reduce_bit_for_bit_to_the_report(case):
    seed, nq, ndb, bits, multi, pool = case
    q, ql, db, dl = make_problem(seed, nq, ndb, bits, multi=multi, dup_pool=pool)
    g = torch.Generator().manual_seed(seed)
    qs, dbs = torch.randn(nq, bits, generator=g), torch.randn(ndb, bits, generator=g)
    kw = dict(top_ks=(3, 40, None), radius=2, tie_average=True)
    for exclude in (False, True):
        report = retrieval_report(q, ql, db, dl, exclude_no_relevant=exclude, query_scores=qs, db_scores=dbs, **kw)
        assert summarize(per_query_metrics(q, ql, db, dl, query_scores=qs, db_scores=dbs, **kw),
                         exclude_no_relevant=exclude) == report
        # uneven contiguous shares, each with its own chunking, concatenated in query order
        cuts = [0, 1, nq // 2, nq - 1, nq]
        parts = [per_query_metrics(q[a:b], ql[a:b], db, dl, query_scores=qs[a:b], db_scores=dbs, chunk_size=c, **kw)
                 for (a, b), c in zip(zip(cuts[:-1], cuts[1:]), (None, 2, 3, 1))]
        assert summarize(concat_per_query(parts), exclude_no_relevant=exclude) == report
    curves = retrieval_curves(q, ql, db, dl, num_points=9)
    parts = [per_query_metrics(q[a:b], ql[a:b], db, dl, top_ks=(), radius=None, curves=True, num_points=9, chunk_size=2)
             for a, b in ((0, 2), (2, 3), (3, nq))]
    split = summarize_curves(concat_per_query(parts))
    assert set(split) == set(curves) and all(torch.equal(split[k], curves[k]) for k in curves)


def test_per_query_values_are_what_the_brute_force_gives_per_query():
    q, ql, db, dl = make_problem(35, 6, 50, 6, multi=True)
    pq = per_query_metrics(q, ql, db, dl, top_ks=(10,), radius=1, tie_average=False, curves=True, num_points=5)
    for i, items in enumerate(_per_query(q, ql, db, dl)):
        ranked = sorted(items, key=lambda t: (t[0], t[1]))
        ap, hits = _ap_of([t[2] for t in ranked[:10]])
        assert pq.values["ap@10"][i].item() == pytest.approx(ap, abs=1e-15)
        assert pq.values["found@10"][i].item() == hits
        ball = [t for t in items if t[0] <= 1]
        assert pq.values["ball_size"][i].item() == len(ball)
        assert pq.values["ball_found"][i].item() == sum(t[2] for t in ball)
        assert pq.values["relevant_total"][i].item() == sum(t[2] for t in items)
        assert pq.values["radius_retrieved"][i].tolist() == [sum(t[0] <= r for t in items) for r in range(7)]
    assert pq.num_queries == 6 and pq.rows(2, 4).num_queries == 2


def test_per_query_reduction_errors():
    q, ql, db, dl = make_problem(36, 4, 30, 8)
    a = per_query_metrics(q, ql, db, dl, top_ks=(5,))
    b = per_query_metrics(q, ql, db, dl, top_ks=(6,))
    with pytest.raises(ValueError, match="different settings"):
        concat_per_query([a, b])
    with pytest.raises(ValueError, match="curves=True"):
        summarize_curves(a)
    with pytest.raises(ValueError, match="at least one query"):
        summarize(a.rows(0, 0))


def test_means_are_left_to_right_sums_whatever_the_thread_count():
    from hashcore.retrieval_metrics.reduction import ordered_mean, ordered_sum

    x = torch.rand(70_001, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1e6
    x[::7] *= 1e-9  # a wide dynamic range, so the summation order shows in the last bits
    python_sum = 0.0
    for v in x.tolist():
        python_sum += v
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 4):
            torch.set_num_threads(n)
            assert float(ordered_sum(x)) == python_sum
            assert ordered_mean(x) == python_sum / x.numel()
    finally:
        torch.set_num_threads(threads)
    cols = x[:70_000].view(-1, 7)
    assert ordered_sum(cols).tolist() == [sum_left(cols[:, j].tolist()) for j in range(7)]
    assert math.isnan(ordered_mean(x, torch.zeros_like(x, dtype=torch.bool)))


def sum_left(values):
    total = 0.0
    for v in values:
        total += v
    return total


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    q, ql, db, dl = make_problem(20, 30, 3000, 16, multi=True)
    cpu = retrieval_report(q, ql, db, dl, top_ks=(50, None))
    gpu = retrieval_report(q.cuda(), ql.cuda(), db.cuda(), dl.cuda(), top_ks=(50, None))
    assert gpu == pytest.approx(cpu, abs=1e-10)


def test_package_is_pure():
    """No Lightning and nothing of ours above the metrics package: only torch, numpy and the stdlib."""
    imported = set()
    for path in (ROOT / "hashcore" / "retrieval_metrics").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:  # relative imports stay in the package
                imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "torch", "numpy", "math", "typing", "dataclasses", "ctypes"}, imported
    code = "import sys, hashcore.retrieval_metrics; assert 'lightning' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
