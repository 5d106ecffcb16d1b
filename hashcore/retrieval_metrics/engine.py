"""The streaming top-k engine: every database item within a per-query Hamming threshold, in ranking order.

Hamming distance is ``(K - q . db) / 2`` from a float32 matmul of ±1 codes (exact for K <= 2**24, also
under TF32/bf16 matmul precision, because the inputs are exactly representable and products are
accumulated in float32).  The ranking is by distance, ties broken by database index (the row order of
``db_codes``), i.e. a stable sort keyed by ``(distance, index)``.

Memory is O(chunk x database) at worst (huge tie groups) and never O(queries x database): queries are
processed in chunks, and inside a chunk the database is streamed in cache-sized blocks of one
matmul each.  Because Hamming distances are small integers, the top k is never found with a generic
``topk``/``argsort`` over the database: each query keeps only the items within its "k-th distance"
threshold, guessed from a strided sample, tightened from per-distance counts while blocks stream by,
and checked at the end (rows whose guess was too tight are redone exactly).  The few kept items are
put in ranking order by one stable sort of their small integer keys ``row * (K+1) + distance``.
Every per-query result depends only on its own row, never on which queries share its chunk.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from .inputs import _check_positive_int, _Codes, _prepare_codes, _Problem

# A dense block of distances (chunk x block float32) is sized to stay in the last-level cache.
_BLOCK_BYTES = 4 * 2**20
_MIN_BLOCK = 256
# Database items sampled (strided) to guess each query's k-th distance before streaming.
_SAMPLE = 2048
# Automatic query chunk: rough byte budget per chunk and its bounds.
_CHUNK_BUDGET_BYTES = 512 * 2**20
_MAX_CHUNK = 1024


def _block_size(chunk: int, num_db: int) -> int:
    width = max(_MIN_BLOCK, _BLOCK_BYTES // (4 * chunk)) // _MIN_BLOCK * _MIN_BLOCK  # aligned widths run faster
    return max(1, min(num_db, width))


def _chunk_size(chunk_size: Optional[int], prob: _Codes, depth: int) -> int:
    """Queries per chunk.  ``depth`` is how many database items per query a chunk may keep.

    Also capped so that ``row * (K+1) + distance`` fits the int32 group ids of :class:`_Candidates`.
    """
    id_cap = max(1, (2**31 - 1) // (prob.bits + 1))
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        return int(min(chunk_size, id_cap))
    # ~48 bytes per kept (query, item) pair (group, col, sort permutation, gathered copies) plus the
    # dense block; with ties a row may keep more than ``depth`` items, still O(chunk x database).
    per_row = 48 * min(prob.num_db, 2 * depth + 2 * _MIN_BLOCK) + 8 * _MIN_BLOCK
    return int(max(1, min(_MAX_CHUNK, id_cap, prob.num_queries, _CHUNK_BUDGET_BYTES // per_row)))


def _chunks(num: int, size: int, device: Optional[torch.device] = None) -> Iterator[tuple[int, int]]:
    for start in range(0, num, size):
        yield start, min(num, start + size)
        if device is not None and device.type == "cpu" and start + size < num:
            _return_free_heap()


def _libc_malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to do
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def _return_free_heap() -> None:
    """Give the chunk's freed buffers back to the OS between chunks (glibc only).

    A chunk allocates and frees buffers of varying size; glibc's adaptive mmap threshold then serves them
    from the heap and keeps the freed pages, so RSS grew with the number of queries while the bytes in
    use stayed flat (docs/benchmarks.md). ``malloc_trim(0)`` releases them; it costs well under 1% of a chunk.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)



# --------------------------------------------------------------------------------------------------
# Candidate selection: all database items within a per-query Hamming threshold
# --------------------------------------------------------------------------------------------------


@dataclass
class _Candidates:
    """Listed (query row within the chunk, database col) pairs of one chunk.

    ``group = row * (K+1) + distance``.  The list is always in increasing col order within each row
    (blocks stream in database order), so a *stable* sort by group yields the ranking order: row,
    then Hamming distance, then database index.
    """

    group: Tensor  # int32
    cols: Tensor  # int64
    thr: Tensor  # (B,) int64: every item with distance <= thr is listed (see _select for ties)
    bits: int
    full: Optional[Tensor] = None  # (B,) bool, top-k mode: the row has >= k items within thr

    def rows_dist(self, group: Tensor) -> tuple[Tensor, Tensor]:
        rows = torch.div(group, self.bits + 1, rounding_mode="floor").long()
        return rows, group.long() - rows * (self.bits + 1)

    def ranking(self) -> Tensor:
        """Permutation putting the list in ranking order."""
        return torch.sort(self.group, stable=True).indices


def _distance_blocks(q: Tensor, db: Tensor) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(start, y)`` with ``y = -q . db[start:start+w]^T / 2``, so distance = y + K/2.

    Multiplying by -1/2 up front is exact and saves a pass over the block; the output buffer is
    reused so each block stays in cache.
    """
    half = q * -0.5
    width = _block_size(q.shape[0], db.shape[0])
    buf = torch.empty(q.shape[0], width, dtype=torch.float32, device=q.device)
    for start in range(0, db.shape[0], width):
        block = db[start:start + width]
        out = buf if block.shape[0] == width else buf[:, : block.shape[0]].contiguous()
        yield start, torch.mm(half, block.T, out=out)


def _kth_threshold(hist: Tensor, k: int, thr: Tensor) -> tuple[Tensor, Tensor]:
    """Per row: the smallest distance whose cumulative count reaches k (rows that reach it), else thr."""
    cum = hist.cumsum(1)
    full = cum[:, -1] >= k
    return torch.where(full, (cum < k).sum(1), thr), full


def _select(prob: _Codes, q: Tensor, thr: Tensor, k: Optional[int] = None, keep_ties: bool = True) -> _Candidates:
    """Stream the database once and list, per query row, every item with distance <= its threshold.

    ``thr`` (B,) is the starting threshold.  Without ``k`` it is fixed (a Hamming ball).  With ``k``
    it is tightened while blocks stream by: once a row has seen k items within its threshold, the
    k-th smallest distance seen so far, t, bounds the final k-th distance from above (it can only
    decrease as more items arrive), so items above t can never enter the top k and are not kept.
    The counts stay exact for every distance <= the current t because nothing at or below it was
    ever rejected.  With ``keep_ties=False`` (stable ranking only) a row whose top k is already
    filled also rejects new items *at* t: they come after k items at distance <= t in index order.
    ``keep_ties=True`` keeps whole tie groups (needed by the tie-averaged metrics).

    Items that fell above the final threshold may remain listed; they rank after the top k.
    """
    bits, rows_in_chunk = prob.bits, q.shape[0]
    strict = torch.zeros_like(thr)
    hist = torch.zeros(rows_in_chunk * (bits + 1), dtype=torch.int64, device=q.device)
    groups: list[Tensor] = []
    cols: list[Tensor] = []
    stored, limit = 0, 2 * rows_in_chunk * ((k or 0) + 2 * _MIN_BLOCK)
    mask, full = None, None
    for start, y in _distance_blocks(q, prob.db):
        bound = (thr - strict).to(torch.float32) - bits / 2  # distance <= thr - strict  <=>  y <= bound
        mask = torch.le(y, bound[:, None], out=mask if mask is not None and mask.shape == y.shape else None)
        r, c = torch.nonzero(mask, as_tuple=True)
        group = r * (bits + 1) + (y[r, c] + bits / 2).long()  # exact: y + K/2 is an integer in [0, K]
        groups.append(group.int())
        cols.append(c + start)
        stored += group.numel()
        if k is None:
            continue
        hist.index_add_(0, group, torch.ones_like(group))
        thr, full = _kth_threshold(hist.view(rows_in_chunk, bits + 1), k, thr)
        strict = (full & (not keep_ties)).long()
        if stored > limit:  # drop items that fell above the tightened threshold
            pruned = _prune(_Candidates(torch.cat(groups), torch.cat(cols), thr, bits))
            groups, cols = [pruned.group], [pruned.cols]
            stored = pruned.group.numel()
            limit = max(limit, 2 * stored)
    return _Candidates(torch.cat(groups), torch.cat(cols), thr, bits, full)


def _prune(cand: _Candidates) -> _Candidates:
    """Only the items within the current thresholds (order kept)."""
    rows, dist = cand.rows_dist(cand.group)
    keep = dist <= cand.thr[rows]
    return _Candidates(cand.group[keep], cand.cols[keep], cand.thr, cand.bits)


def _guess_threshold(prob: _Codes, q: Tensor, k: int) -> Tensor:
    """A per-row distance that probably has >= k database items within it, from a strided sample.

    It only has to be a good guess: :func:`_select_topk` checks it and falls back to an exact
    start for rows where it was too tight.  A tight guess saves keeping whole early blocks.
    """
    bits, n = prob.bits, prob.num_db
    stride = max(1, n // _SAMPLE)
    sample = prob.db[::stride]
    expected = k * sample.shape[0] / n  # sample items expected within the true k-th distance
    need = math.ceil(expected + 4 * math.sqrt(expected) + 1) if stride > 1 else k
    if need >= sample.shape[0] and stride > 1:  # the sample cannot vouch for less than everything
        return torch.full((q.shape[0],), bits, dtype=torch.int64, device=q.device)
    dist = (torch.mm(q * -0.5, sample.T) + bits / 2).long()
    offset = (torch.arange(q.shape[0], device=q.device) * (bits + 1))[:, None]
    hist = torch.bincount((dist + offset).view(-1), minlength=q.shape[0] * (bits + 1))
    full_thr = torch.full((q.shape[0],), bits, dtype=torch.int64, device=q.device)
    return _kth_threshold(hist.view(q.shape[0], bits + 1), need, full_thr)[0]


def _select_topk(prob: _Codes, q: Tensor, k: int, keep_ties: bool) -> _Candidates:
    """Candidates containing the stable top k of every row (and whole tie groups if ``keep_ties``).

    ``thr`` is each row's exact k-th distance t; the listed items are exact up to t.
    """
    bits = prob.bits
    if k >= prob.num_db:
        return _select_all(prob, q)
    cand = _select(prob, q, _guess_threshold(prob, q, k), k, keep_ties)
    short = torch.nonzero(~cand.full)[:, 0]
    if short.numel():  # the guess was too tight for these rows: redo them from the loosest start
        start = torch.full((short.numel(),), bits, dtype=torch.int64, device=q.device)
        redo = _select(prob, q[short], start, k, keep_ties)
        r, d = redo.rows_dist(redo.group)
        keep = cand.full[cand.rows_dist(cand.group)[0]]  # rows keep their col order: no re-sort needed
        cand = _Candidates(
            torch.cat([cand.group[keep], (short[r] * (bits + 1) + d).int()]),
            torch.cat([cand.cols[keep], redo.cols]),
            cand.thr.index_copy(0, short, redo.thr),
            bits,
            torch.ones_like(cand.full),
        )
    return cand


def _select_all(prob: _Codes, q: Tensor) -> _Candidates:
    """Every database item for every row (k = N): no threshold, no mask, no nonzero needed."""
    bits, rows_in_chunk = prob.bits, q.shape[0]
    offset = (torch.arange(rows_in_chunk, device=q.device) * (bits + 1))[:, None]
    groups = [((y + bits / 2).long() + offset).int().view(-1) for _, y in _distance_blocks(q, prob.db)]
    widths = [g.numel() // rows_in_chunk for g in groups]
    # same layout as _select: block by block, row-major inside a block (col order within each row)
    cols = torch.cat([
        (torch.arange(w, device=q.device) + start).repeat(rows_in_chunk)
        for start, w in zip(np.cumsum([0] + widths[:-1]).tolist(), widths)
    ])
    thr = torch.full((rows_in_chunk,), bits, dtype=torch.int64, device=q.device)
    return _Candidates(torch.cat(groups), cols, thr, bits, torch.ones_like(thr, dtype=torch.bool))


def _row_starts(rows_sorted: Tensor, num_rows: int) -> Tensor:
    counts = torch.bincount(rows_sorted, minlength=num_rows)
    return torch.cumsum(counts, 0) - counts


@dataclass
class _Ranked:
    """Items of one chunk in ranking order: row, 1-based rank within the row, database col, relevance."""

    rows: Tensor
    rank: Tensor
    cols: Tensor
    rel: Tensor


def _ranked(prob: _Problem, rows: Tensor, cols: Tensor, q0: int, num_rows: int, k: Optional[int] = None) -> _Ranked:
    """Attach ranks (and relevance) to items already in ranking order; keep ranks <= k if given."""
    rank = torch.arange(1, rows.numel() + 1, device=rows.device) - _row_starts(rows, num_rows)[rows]
    if k is not None:
        keep = rank <= k
        rows, cols, rank = rows[keep], cols[keep], rank[keep]
    return _Ranked(rows, rank, cols, prob.relevance(rows + q0, cols))


def _topk_order(cand: _Candidates, num_rows: int, k: int) -> Tensor:
    """(B, k) positions into the candidate list of every row's stable top k, in ranking order."""
    groups, order = torch.sort(cand.group, stable=True)
    if order.numel() == num_rows * k:  # exactly k each (k = N): no gather needed
        return order.view(num_rows, k)
    row_ids = torch.arange(num_rows, device=groups.device)
    starts = torch.searchsorted(groups, (row_ids * (cand.bits + 1)).to(groups.dtype))
    # every row lists at least k items, so its top k are the k positions after its start
    return order[starts[:, None] + torch.arange(k, device=groups.device)]


def _topk_relevance(prob: _Problem, cand: _Candidates, q0: int, num_rows: int, k: int,
                    listed_relevance: Optional[Tensor] = None) -> Tensor:
    """(B, k) bool: relevance of every row's stable top k, in ranking order (read from ``listed_relevance``, the
    relevance of every listed item in list order, when the caller has it)."""
    top = _topk_order(cand, num_rows, k)
    if listed_relevance is not None:
        return listed_relevance[top]
    shared = prob.db_words[cand.cols[top]] & prob.q_words[q0:q0 + num_rows, None, :]  # (B, k, W)
    return shared[..., 0] != 0 if shared.shape[-1] == 1 else (shared != 0).any(-1)


def hamming_topk(query_codes, db_codes, k: int, chunk_size: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """Exact Hamming top k of every query: ``(indices (Q, k) int64, distances (Q, k) int64)``.

    Ranked by (Hamming distance, database index), the order every metric here uses, from the
    streaming engine (no dense Q x N matrix).  Codes are read as in :func:`to_signed_codes`; a ``k``
    larger than the database returns all N items.  Results are on the device of ``query_codes``.
    """
    codes = _prepare_codes(query_codes, db_codes)
    k = min(_check_positive_int(k, "k"), codes.num_db)
    chunk = _chunk_size(chunk_size, codes, k)
    indices, distances = [], []
    for q0, q1 in _chunks(codes.num_queries, chunk, codes.device):
        cand = _select_topk(codes, codes.q[q0:q1], k, keep_ties=False)
        top = _topk_order(cand, q1 - q0, k)
        indices.append(cand.cols[top])
        distances.append(cand.rows_dist(cand.group[top].view(-1))[1].view(q1 - q0, k))
    return torch.cat(indices), torch.cat(distances)


def hamming_within(query_codes, db_codes, radius: int,
                   chunk_size: Optional[int] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Every database item within Hamming distance <= ``radius`` of each query, in (distance, index) order.

    Returns ``(lims (Q+1,), indices, distances)`` int64 in the layout of faiss ``range_search``: query i's
    items are ``indices[lims[i]:lims[i+1]]``.  Memory O(chunk x database) at worst (a ball holding everything).
    """
    codes = _prepare_codes(query_codes, db_codes)
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative int, got {radius!r}")
    chunk = _chunk_size(chunk_size, codes, codes.num_db)
    counts, indices, distances = [], [], []
    for q0, q1 in _chunks(codes.num_queries, chunk, codes.device):
        ball = torch.full((q1 - q0,), min(int(radius), codes.bits), dtype=torch.int64, device=codes.device)
        cand = _select(codes, codes.q[q0:q1], ball)
        order = cand.ranking()
        rows, dist = cand.rows_dist(cand.group[order])
        counts.append(torch.bincount(rows, minlength=q1 - q0))
        indices.append(cand.cols[order])
        distances.append(dist)
    lims = torch.cat([torch.zeros(1, dtype=torch.int64, device=codes.device), torch.cat(counts).cumsum(0)])
    return lims, torch.cat(indices), torch.cat(distances)


def _segment_sum(values: Tensor, rows: Tensor, num_rows: int) -> Tensor:
    return torch.zeros(num_rows, dtype=values.dtype, device=values.device).index_add_(0, rows, values)


def _precision_terms(ranked: _Ranked, num_rows: int) -> tuple[Tensor, Tensor]:
    """Per item: hits = relevant items at or above it in its row, and rel * hits / rank (float64)."""
    rel = ranked.rel.double()
    csum = torch.cumsum(rel, 0)  # exact: integers in float64
    first = _row_starts(ranked.rows, num_rows)[ranked.rows]  # position of the row's first item
    hits = csum - (csum - rel)[first]
    return hits, rel * hits / ranked.rank.double()


def _relevant_totals(prob: _Problem, chunk: int) -> Tensor:
    """(Q,) float64 number of relevant database items per query, via the distinct label sets."""
    sets, counts = torch.unique(prob.db_labels, dim=0, return_counts=True)
    totals = []
    for q0, q1 in _chunks(prob.num_queries, chunk):  # small buffers: no heap trimming needed
        share = (prob.q_labels[q0:q1] @ sets.T) > 0
        totals.append((share.double() * counts.double()).sum(1))
    return torch.cat(totals)


def _distance_histograms(prob: _Problem, chunk_size: Optional[int]) -> tuple[Tensor, Tensor]:
    """(Q, K+1) float64 counts of all / relevant database items at each Hamming distance.

    One dense pass over the database; memory O(chunk x block) plus the O(Q x K) result.
    """
    bits = prob.bits
    chunk = _chunk_size(chunk_size, prob, 0)
    all_counts, rel_counts = [], []
    for q0, q1 in _chunks(prob.num_queries, chunk, prob.device):
        rows_in_chunk = q1 - q0
        offset = (torch.arange(rows_in_chunk, device=prob.device) * (bits + 1))[:, None]
        counts = torch.zeros(rows_in_chunk * (bits + 1) * 2, dtype=torch.int64, device=prob.device)
        for start, y in _distance_blocks(prob.q[q0:q1], prob.db):
            rel = (prob.q_labels[q0:q1] @ prob.db_labels[start:start + y.shape[1]].T) > 0
            slot = ((y + bits / 2).long() + offset) * 2 + rel.long()  # (row, distance, relevant)
            counts += torch.bincount(slot.view(-1), minlength=counts.numel())
        counts = counts.view(rows_in_chunk, bits + 1, 2).double()
        all_counts.append(counts.sum(2))
        rel_counts.append(counts[:, :, 1])
    return torch.cat(all_counts), torch.cat(rel_counts)

