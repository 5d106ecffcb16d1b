"""Exact retrieval metrics for binary hash codes (pure torch; no Lightning, nothing else of ours).

Conventions shared by every function (see docs and METHODS.md §5):

* **Codes** are turned into {-1, +1} by :func:`to_signed_codes`: bool / unsigned-integer input is read
  as bits (0 -> -1, 1 -> +1); signed-integer / floating input is binarised by sign with an exact
  0 -> +1.  The Hamming distance is ``(K - q . db) / 2``, computed with a float32 matmul of ±1 codes
  (exact for K <= 2**24, also under TF32/bf16 matmul precision, because the inputs are exactly
  representable and products are accumulated in float32).
* **Relevance**: a database item is relevant to a query when they share at least one label (label
  entries > 0 count as present; integer class ids are one-hot encoded).
* **Ranking**: by Hamming distance, ties broken by database index (the row order of ``db_codes``),
  i.e. a stable sort keyed by ``(distance, index)``.
* **AP@k** is normalised by the number of relevant items found in the top k (DeepHash-pytorch
  ``CalcTopMap``, thulab, CIBHash, Bi-half, GreedyHash, torchmetrics).  A query without relevant items
  in its top k has AP = 0 and stays in the mean, unless ``exclude_no_relevant=True`` (the thulab
  convention), which drops it from the mean.  ``top_k=None`` is the whole database (a true mAP@All;
  DeepHash-pytorch's ``topK=-1`` drops the last item), and a ``top_k`` larger than the database is
  clamped to its size.
* **Device** follows ``query_codes``: everything else is moved there; CPU and GPU run the same code.

Memory is O(chunk x database) at worst (huge tie groups) and never O(queries x database): queries are
processed in chunks, and inside a chunk the database is streamed in cache-sized blocks of one
matmul each.  Because Hamming distances are small integers, the top k is never found with a generic
``topk``/``argsort`` over the database: each query keeps only the items within its "k-th distance"
threshold, guessed from a strided sample, tightened from per-distance counts while blocks stream by,
and checked at the end (rows whose guess was too tight are redone exactly).  The few kept items are
put in ranking order by one stable sort of their small integer keys ``row * (K+1) + distance``.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "to_signed_codes",
    "to_multi_hot",
    "mean_average_precision",
    "tie_averaged_map",
    "precision_at_k",
    "precision_recall_curve",
    "hamming_radius_metrics",
    "bit_statistics",
    "retrieval_report",
    "retrieval_curves",
]

TopK = Optional[int]

# A dense block of distances (chunk x block float32) is sized to stay in the last-level cache.
_BLOCK_BYTES = 4 * 2**20
_MIN_BLOCK = 256
# Database items sampled (strided) to guess each query's k-th distance before streaming.
_SAMPLE = 2048
# Automatic query chunk: rough byte budget per chunk and its bounds.
_CHUNK_BUDGET_BYTES = 512 * 2**20
_MAX_CHUNK = 1024
# Exactness limit of float32 sums of ±1 products.
_MAX_BITS = 2**24
# Bits of a label bitmask word (kept below 63 so words stay non-negative int64).
_WORD_BITS = 32


# --------------------------------------------------------------------------------------------------
# Input conversion and validation
# --------------------------------------------------------------------------------------------------


def _as_tensor(x, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    try:
        return torch.as_tensor(x)
    except Exception as err:  # pragma: no cover - message only
        raise ValueError(f"{name} must be a tensor or array, got {type(x).__name__}") from err


def to_signed_codes(codes) -> Tensor:
    """Return ``codes`` (N, K) as float32 values in {-1., +1.}.

    * ``bool`` or unsigned-integer input is read as bits: 0 -> -1, 1 -> +1 (other values raise).
    * signed-integer or floating input is binarised by sign, with an exact 0 (and -0.) -> +1, the
      convention of ``HashModule.encode``; NaN raises.
    """
    codes = _as_tensor(codes, "codes")
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (num_items, bits), got shape {tuple(codes.shape)}")
    plus = torch.ones((), dtype=torch.float32, device=codes.device)
    if codes.dtype == torch.bool:
        return torch.where(codes, plus, -plus)
    if not codes.is_floating_point() and not codes.is_signed():  # uint8, uint16, ...
        if codes.numel() and bool((codes > 1).any()):
            raise ValueError("unsigned-integer codes are read as bits and must contain only 0 and 1")
        return torch.where(codes.bool(), plus, -plus)
    if codes.is_floating_point() and codes.numel() and bool(torch.isnan(codes).any()):
        raise ValueError("codes contain NaN; cannot binarise them")
    return torch.where(codes >= 0, plus, -plus)


def to_multi_hot(labels, num_classes: Optional[int] = None) -> Tensor:
    """Return labels as a float32 (N, C) multi-hot matrix.

    * 1-D integer class ids (N,) are one-hot encoded with ``num_classes`` columns (default
      ``max(id) + 1``); negative ids or ids >= ``num_classes`` raise.
    * 2-D (N, C) multi-hot / one-hot matrices (bool, int or float) pass through as float32; an entry
      > 0 means "has this label".  ``num_classes``, if given, must equal C.
    """
    labels = _as_tensor(labels, "labels")
    if labels.ndim == 1:
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(
                f"1-D labels must be integer class ids, got dtype {labels.dtype}; "
                "pass a 2-D (N, C) multi-hot matrix for other label formats"
            )
        if labels.numel() and int(labels.min()) < 0:
            raise ValueError("class ids must be non-negative")
        top = int(labels.max()) + 1 if labels.numel() else 0
        if num_classes is None:
            num_classes = top
        elif top > num_classes:
            raise ValueError(f"class id {top - 1} is out of range for num_classes={num_classes}")
        out = torch.zeros(labels.shape[0], num_classes, dtype=torch.float32, device=labels.device)
        out[torch.arange(labels.shape[0], device=labels.device), labels.long()] = 1.0
        return out
    if labels.ndim == 2:
        if num_classes is not None and labels.shape[1] != num_classes:
            raise ValueError(
                f"multi-hot labels have {labels.shape[1]} columns but num_classes={num_classes}"
            )
        return labels.float()
    raise ValueError(
        f"labels must be 1-D class ids (N,) or a 2-D multi-hot matrix (N, C), got shape {tuple(labels.shape)}"
    )


def _pair_labels(query_labels, db_labels) -> tuple[Tensor, Tensor]:
    """Multi-hot both label sets with the same number of classes."""
    ql = _as_tensor(query_labels, "query_labels")
    dl = _as_tensor(db_labels, "db_labels")
    widths = {x.shape[1] for x in (ql, dl) if x.ndim == 2}
    if len(widths) > 1:
        raise ValueError(
            f"query labels have {ql.shape[1]} classes but database labels have {dl.shape[1]}"
        )
    if widths:
        num_classes = widths.pop()
    else:  # both are class ids: one shared one-hot width
        tops = [int(x.max()) + 1 for x in (ql, dl) if x.ndim == 1 and x.numel()]
        num_classes = max(tops, default=1)
    return to_multi_hot(ql, num_classes), to_multi_hot(dl, num_classes)


def _label_words(present: Tensor) -> Tensor:
    """Pack a bool (N, C) label matrix into (N, ceil(C/32)) int64 bitmask words.

    Relevance of any (query, item) pair is then ``((wq & wd) != 0).any()``: exact and cheap to gather.
    Built one class at a time so the temporary memory stays O(N).
    """
    n, c = present.shape
    words = torch.zeros(n, max(1, -(-c // _WORD_BITS)), dtype=torch.int64, device=present.device)
    for j in range(c):
        words[:, j // _WORD_BITS] |= present[:, j].long() << (j % _WORD_BITS)
    return words


@dataclass
class _Problem:
    """Validated inputs on one device: ±1 codes, multi-hot labels and their bitmask words."""

    q: Tensor  # (Q, K) float32 ±1
    db: Tensor  # (N, K) float32 ±1
    q_labels: Tensor  # (Q, C) float32 0/1
    db_labels: Tensor  # (N, C) float32 0/1
    q_words: Tensor  # (Q, W) int64
    db_words: Tensor  # (N, W) int64

    @property
    def bits(self) -> int:
        return self.q.shape[1]

    @property
    def num_queries(self) -> int:
        return self.q.shape[0]

    @property
    def num_db(self) -> int:
        return self.db.shape[0]

    @property
    def device(self) -> torch.device:
        return self.q.device

    def relevance(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Bool relevance of (query row, database col) pairs given as flat index tensors."""
        return ((self.q_words[rows] & self.db_words[cols]) != 0).any(-1)


def _prepare(query_codes, query_labels, db_codes, db_labels) -> _Problem:
    q = to_signed_codes(query_codes)
    device = q.device
    db = to_signed_codes(_as_tensor(db_codes, "db_codes").to(device))
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"query codes have {q.shape[1]} bits but database codes have {db.shape[1]}")
    if q.shape[1] == 0 or q.shape[1] > _MAX_BITS:
        raise ValueError(f"code length must be in [1, 2**24], got {q.shape[1]}")
    if q.shape[0] == 0 or db.shape[0] == 0:
        raise ValueError(f"need at least one query and one database item, got {q.shape[0]} and {db.shape[0]}")
    ql, dl = _pair_labels(_as_tensor(query_labels, "query_labels").to(device),
                          _as_tensor(db_labels, "db_labels").to(device))
    if ql.shape[0] != q.shape[0]:
        raise ValueError(f"{q.shape[0]} query codes but {ql.shape[0]} query labels")
    if dl.shape[0] != db.shape[0]:
        raise ValueError(f"{db.shape[0]} database codes but {dl.shape[0]} database labels")
    qp, dp = ql > 0, dl > 0
    return _Problem(q, db, qp.float(), dp.float(), _label_words(qp), _label_words(dp))


def _resolve_k(top_k: TopK, num_db: int) -> int:
    """``None`` -> the whole database; a k larger than the database is clamped to it."""
    if top_k is None:
        return num_db
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    return min(int(top_k), num_db)


def _block_size(chunk: int, num_db: int) -> int:
    width = max(_MIN_BLOCK, _BLOCK_BYTES // (4 * chunk)) // _MIN_BLOCK * _MIN_BLOCK  # aligned widths run faster
    return max(1, min(num_db, width))


def _chunk_size(chunk_size: Optional[int], prob: _Problem, depth: int) -> int:
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


def _select(prob: _Problem, q: Tensor, thr: Tensor, k: Optional[int] = None, keep_ties: bool = True) -> _Candidates:
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


def _guess_threshold(prob: _Problem, q: Tensor, k: int) -> Tensor:
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


def _select_topk(prob: _Problem, q: Tensor, k: int, keep_ties: bool) -> _Candidates:
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


def _select_all(prob: _Problem, q: Tensor) -> _Candidates:
    """Every database item for every row (k = N): no threshold, no mask, no nonzero needed."""
    bits, n, rows_in_chunk = prob.bits, prob.num_db, q.shape[0]
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


def _topk_relevance(prob: _Problem, cand: _Candidates, q0: int, num_rows: int, k: int) -> Tensor:
    """(B, k) bool: relevance of every row's stable top k, in ranking order."""
    groups, order = torch.sort(cand.group, stable=True)
    row_ids = torch.arange(num_rows, device=groups.device)
    starts = torch.searchsorted(groups, (row_ids * (prob.bits + 1)).to(groups.dtype))
    # every row lists at least k items, so its top k are the k positions after its start
    if order.numel() == num_rows * k:  # exactly k each (k = N): no gather needed
        top = order.view(num_rows, k)
    else:
        top = order[starts[:, None] + torch.arange(k, device=groups.device)]  # (B, k)
    shared = prob.db_words[cand.cols[top]] & prob.q_words[q0:q0 + num_rows, None, :]  # (B, k, W)
    return shared[..., 0] != 0 if shared.shape[-1] == 1 else (shared != 0).any(-1)


def _dense_ap(rel: Tensor, ks: Sequence[int]) -> dict:
    """AP@k per row (0 without relevant items in the top k) and relevant items found, for each k."""
    relf = rel.double()
    hits = relf.cumsum(1)  # exact: integers in float64
    pos = torch.arange(1, rel.shape[1] + 1, dtype=torch.float64, device=rel.device)
    gains = (relf * hits / pos).cumsum(1)
    out = {}
    for k in ks:
        # clone: a column view would keep the whole (B, k) matrix alive in the per-query results,
        # and memory would grow with the number of queries instead of staying per chunk
        found, gain = hits[:, k - 1].clone(), gains[:, k - 1]
        out[k] = (torch.where(found > 0, gain / found.clamp(min=1), torch.zeros_like(gain)), found)
    return out


def _segment_sum(values: Tensor, rows: Tensor, num_rows: int) -> Tensor:
    return torch.zeros(num_rows, dtype=values.dtype, device=values.device).index_add_(0, rows, values)


def _precision_terms(ranked: _Ranked, num_rows: int) -> tuple[Tensor, Tensor]:
    """Per item: hits = relevant items at or above it in its row, and rel * hits / rank (float64)."""
    rel = ranked.rel.double()
    csum = torch.cumsum(rel, 0)  # exact: integers in float64
    first = _row_starts(ranked.rows, num_rows)[ranked.rows]  # position of the row's first item
    hits = csum - (csum - rel)[first]
    return hits, rel * hits / ranked.rank.double()


def _mean(values: list[Tensor], keep: list[Tensor]) -> float:
    v, m = torch.cat(values), torch.cat(keep)
    count = int(m.sum())
    return float(v[m].sum() / count) if count else float("nan")


# --------------------------------------------------------------------------------------------------
# Tie-averaged AP (closed form)
# --------------------------------------------------------------------------------------------------


def _harmonic_diff(a: Tensor, n: Tensor) -> Tensor:
    """``sum_{p=1..n} 1/(a+p)`` for float64 tensors of non-negative integers, to ~1e-15 relative.

    The first terms (while a+p < 32) are summed directly; the rest is psi(a+n+1) - psi(x) via the
    asymptotic series written as differences (log1p, n/(2xy), ...), which avoids the cancellation a
    plain digamma difference suffers for large a and small n.
    """
    total = torch.zeros_like(a)
    x = a + 1  # next denominator
    left = n.clone()
    for _ in range(31):
        take = (x < 32) & (left > 0)
        if not bool(take.any()):
            break
        total = total + torch.where(take, 1.0 / x, torch.zeros_like(x))
        x = x + take.double()
        left = left - take.double()
    y = x + left
    x2, y2 = x * x, y * y
    inv_x2, inv_y2 = 1 / x2, 1 / y2
    series = torch.log1p(left / x) + left / (2 * x * y)
    series = series + left * (x + y) / (x2 * y2) / 12  # 1/(12x^2) - 1/(12y^2)
    series = series - (inv_x2 * inv_x2 - inv_y2 * inv_y2) / 120
    series = series + (inv_x2**3 - inv_y2**3) / 252
    series = series - (inv_x2**4 - inv_y2**4) / 240
    return total + torch.where(left > 0, series, torch.zeros_like(series))


def _bucket_gain(before: Tensor, rel_before: Tensor, n: Tensor, r: Tensor, dh: Tensor) -> Tensor:
    """Expected ``sum over relevant items of hits/rank`` for one tie group in uniformly random order.

    The group holds n items, r of them relevant, after ``before`` items of which ``rel_before`` are
    relevant.  Position p of the group is relevant with probability r/n and, given that, has on
    average (p-1)(r-1)/(n-1) relevant items before it inside the group, so the sum is
    ``(r/n) * sum_p (rel_before + 1 + c (p-1)) / (before + p)`` with c = (r-1)/(n-1), i.e.
    ``(r/n) * (n c + (rel_before + 1 - c (before + 1)) * dh)`` with
    ``dh = H(before + n) - H(before)`` (:func:`_harmonic_diff`).  Arguments broadcast.
    """
    c = torch.where(n > 1, (r - 1) / (n - 1).clamp(min=1), torch.zeros_like(r))
    gain = (r / n.clamp(min=1)) * (n * c + (rel_before + 1 - c * (before + 1)) * dh)
    return torch.where(r > 0, gain, torch.zeros_like(gain))


def _hypergeom_pmf(total: Tensor, good: Tensor, draws: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """P(X = lo + j), j < width, for X ~ Hypergeometric(total, good, draws) per row; and lo.

    Built from the exact ratio P(x+1)/P(x) = (good-x)(draws-x) / ((x+1)(total-good-draws+x+1)),
    accumulated in log space and normalised, which stays accurate for large buckets.
    """
    lo = (draws - (total - good)).clamp(min=0)
    hi = torch.minimum(good, draws)
    x = lo[:, None] + torch.arange(width, dtype=torch.float64, device=lo.device)
    num = (good[:, None] - x) * (draws[:, None] - x)
    den = (x + 1) * (total[:, None] - good[:, None] - draws[:, None] + x + 1)
    step = torch.log(num.clamp(min=1)) - torch.log(den.clamp(min=1))
    logp = torch.cumsum(torch.cat([torch.zeros_like(step[:, :1]), step[:, :-1]], 1), 1)
    valid = x <= hi[:, None]
    logp = torch.where(valid, logp, torch.full_like(logp, -math.inf))
    p = torch.exp(logp - logp.max(1, keepdim=True).values)
    return p / p.sum(1, keepdim=True), lo


def _tie_averaged_ap(n: Tensor, r: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Expected AP@k per row over uniformly random orders inside every tie group, in closed form.

    ``n`` / ``r`` are (B, K+1) float64 counts of all / relevant items per distance (exact up to the
    row's k-th distance t).  Groups fully inside the top k contribute their expected gain; for the
    group straddling the cut-off, X = number of its relevant items among the m = k - (items before t)
    slots taken is hypergeometric, and given X = x those x items sit in a uniformly random order
    among the m slots.  The AP divides by the random number of relevant items retrieved
    (rel_before_t + X), so the expectation is taken conditionally on X:

        E[AP] = sum_x P(X = x) * (G_full + gain(t-slots, x)) / (rel_before_t + x)   (0 when that is 0).

    Also returns whether a relevant item can be retrieved at all (for ``exclude_no_relevant``).
    """
    cum = n.cumsum(1)
    before = cum - n
    rel_before = r.cumsum(1) - r
    t = (cum < k).sum(1, keepdim=True)  # index of the straddling group
    cols = torch.arange(n.shape[1], device=n.device)[None, :]
    gains = _bucket_gain(before, rel_before, n, r, _harmonic_diff(before, n))
    full_gain = torch.where(cols < t, gains, torch.zeros_like(n)).sum(1)
    n_t, r_t = n.gather(1, t)[:, 0], r.gather(1, t)[:, 0]
    a_t, b_t = before.gather(1, t)[:, 0], rel_before.gather(1, t)[:, 0]
    m = k - a_t
    width = int((torch.minimum(r_t, m) - (m - (n_t - r_t)).clamp(min=0)).max().item()) + 1
    pmf, lo = _hypergeom_pmf(n_t, r_t, m, width)
    x = lo[:, None] + torch.arange(width, dtype=torch.float64, device=n.device)
    possible = (b_t + r_t) > 0
    a_t, b_t, m = a_t[:, None], b_t[:, None], m[:, None]  # the slots taken: m items after a_t
    gain_t = _bucket_gain(a_t, b_t, m, x.clamp(max=m), _harmonic_diff(a_t, m))
    found = b_t + x
    ap = torch.where(found > 0, (full_gain[:, None] + gain_t) / found.clamp(min=1), torch.zeros_like(x))
    return (pmf * ap).sum(1), possible


def _bucket_counts(prob: _Problem, cand: _Candidates, q0: int, num_rows: int) -> tuple[Tensor, Tensor]:
    """(B, K+1) float64 counts of listed items and of relevant listed items per distance."""
    rows, _ = cand.rows_dist(cand.group)
    group = cand.group.long()
    size = num_rows * (prob.bits + 1)
    n = torch.bincount(group, minlength=size).double()
    r = torch.bincount(group[prob.relevance(rows + q0, cand.cols)], minlength=size).double()
    return n.view(num_rows, -1), r.view(num_rows, -1)


# --------------------------------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------------------------------


def _topk_metrics(prob: _Problem, ks: Sequence[int], tie_average: bool, chunk_size: Optional[int]):
    """Per query, for each k: stable AP@k, relevant found in the top k, and (optionally) tie-averaged AP.

    One streaming selection per chunk at the largest k serves every smaller k.
    """
    kmax = max(ks)
    chunk = _chunk_size(chunk_size, prob, kmax)
    out = {k: {"ap": [], "found": [], "tie_ap": [], "possible": []} for k in ks}
    for q0, q1 in _chunks(prob.num_queries, chunk, prob.device):
        cand = _select_topk(prob, prob.q[q0:q1], kmax, keep_ties=tie_average)
        stable = _dense_ap(_topk_relevance(prob, cand, q0, q1 - q0, kmax), ks)
        counts = _bucket_counts(prob, cand, q0, q1 - q0) if tie_average else None
        for k in ks:
            out[k]["ap"].append(stable[k][0])
            out[k]["found"].append(stable[k][1])
            if counts is not None:
                tie_ap, possible = _tie_averaged_ap(*counts, k)
                out[k]["tie_ap"].append(tie_ap)
                out[k]["possible"].append(possible)
    return out


def _map_of(res: dict, exclude_no_relevant: bool) -> float:
    """Mean AP over queries; with ``exclude_no_relevant`` only queries that found a relevant item count."""
    keep = [f > 0 if exclude_no_relevant else torch.ones_like(f, dtype=torch.bool) for f in res["found"]]
    return _mean(res["ap"], keep)


def _tie_map_of(res: dict, exclude_no_relevant: bool) -> float:
    """Mean tie-averaged AP; excluded are queries that no tie order can give a relevant top-k item."""
    keep = res["possible"] if exclude_no_relevant else [torch.ones_like(p) for p in res["possible"]]
    return _mean(res["tie_ap"], keep)


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
    return _map_of(res, exclude_no_relevant)


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
    return _tie_map_of(res, exclude_no_relevant)


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
    values = {kk: float(torch.cat(res[v]["found"]).mean() / v) for kk, v in ks.items()}
    return values if many else values[wanted[0]]


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


def _curve_average(hits: Tensor, retrieved: Tensor, totals: Tensor, average: str, empty: str):
    """Precision and recall over queries (rows) at every curve point (columns)."""
    if average == "pooled":
        precision = hits.sum(0) / retrieved.sum(0)
        recall = hits.sum(0) / totals.sum()
        return precision, recall
    per_p = torch.where(retrieved > 0, hits / retrieved.clamp(min=1), torch.zeros_like(hits))
    per_r = torch.where(totals[:, None] > 0, hits / totals.clamp(min=1)[:, None], torch.zeros_like(hits))
    if empty == "skip":  # average only over queries that retrieved something at this point
        used = (retrieved > 0).double()
        return (per_p * used).sum(0) / used.sum(0), (per_r * used).sum(0) / used.sum(0)
    return per_p.mean(0), per_r.mean(0)


def precision_recall_curve(
    query_codes,
    query_labels,
    db_codes,
    db_labels,
    by: str = "radius",
    *,
    ranks: Optional[Sequence[int]] = None,
    num_points: int = 100,
    average: str = "query",
    empty: str = "zero",
    ties: str = "stable",
    chunk_size: Optional[int] = None,
) -> dict:
    """Precision and recall per Hamming radius (``by="radius"``) or per rank (``by="rank"``).

    * ``by="radius"``: retrieved set = items within Hamming distance <= r, for r = 0..K; returns
      ``{"radius", "precision", "recall"}``.  With ``average="query"`` (default, thulab
      ``..._Radius_All``) per-query precision/recall are averaged over queries; a query that
      retrieves nothing at radius r counts precision 0 and recall 0 and stays in the mean
      (``empty="zero"``), or is left out of that radius' mean (``empty="skip"``, NaN when no query
      retrieves anything; Bi-half ``pr_curve`` skips similarly).  ``average="pooled"`` (Bi-half
      ``calculate_p_r_curve``) divides the summed relevant-retrieved by the summed retrieved /
      summed relevant.
    * ``by="rank"``: the ranking cut after n items, at ``ranks`` (default ``num_points`` positions
      evenly spaced over 1..N, each clamped to N); returns ``{"rank", "precision", "recall"}``
      (precision is P@n).  ``ties="stable"`` uses the (distance, index) ranking (cost grows with the
      largest rank: a full ranking per query for rank N); ``ties="average"`` is the expectation
      over random orders inside tie groups, exact and cheap (one histogram pass).  ``average``
      applies the same way; nothing is ever empty.
    * Recall of a query with no relevant item in the database is 0 (it stays in the mean).
    """
    if by not in ("radius", "rank"):
        raise ValueError(f"by must be 'radius' or 'rank', got {by!r}")
    if average not in ("query", "pooled"):
        raise ValueError(f"average must be 'query' or 'pooled', got {average!r}")
    if empty not in ("zero", "skip"):
        raise ValueError(f"empty must be 'zero' or 'skip', got {empty!r}")
    if ties not in ("stable", "average"):
        raise ValueError(f"ties must be 'stable' or 'average', got {ties!r}")
    prob = _prepare(query_codes, query_labels, db_codes, db_labels)
    if by == "radius":
        return _pr_by_radius(*_distance_histograms(prob, chunk_size), average, empty)
    at = _curve_ranks(ranks, num_points, prob.num_db)
    if ties == "average":
        return _pr_by_rank_expected(*_distance_histograms(prob, chunk_size), at, average)
    return _pr_by_rank_stable(prob, at, average, chunk_size)


def _pr_by_radius(n: Tensor, r: Tensor, average: str, empty: str) -> dict:
    precision, recall = _curve_average(r.cumsum(1), n.cumsum(1), r.sum(1), average, empty)
    return {"radius": torch.arange(n.shape[1], device=n.device), "precision": precision, "recall": recall}


def _curve_ranks(ranks: Optional[Sequence[int]], num_points: int, num_db: int) -> list[int]:
    if ranks is None:
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        ranks = np.unique(np.round(np.linspace(1, num_db, min(num_points, num_db))).astype(np.int64))
    return sorted({_resolve_k(int(n), num_db) for n in ranks})


def _pr_by_rank_expected(n: Tensor, r: Tensor, ranks: list[int], average: str) -> dict:
    """P/R at ranks, in expectation over random orders inside tie groups (from per-distance counts).

    At rank x with straddling group t (m of its n_t items taken), E[hits] = relevant before t +
    m * r_t / n_t: each of the n_t items is equally likely to occupy each slot.
    """
    at = torch.tensor(ranks, dtype=torch.float64, device=n.device)
    cum = n.cumsum(1)
    x = at[None, :].expand(n.shape[0], -1).contiguous()
    t = torch.searchsorted(cum, x)  # first distance whose cumulative count reaches the rank
    n_t, r_t = n.gather(1, t), r.gather(1, t)
    hits = (r.cumsum(1).gather(1, t) - r_t) + (x - (cum.gather(1, t) - n_t)) * r_t / n_t
    precision, recall = _curve_average(hits, x, r.sum(1), average, "zero")
    return {"rank": at.long(), "precision": precision, "recall": recall}


def _pr_by_rank_stable(prob: _Problem, ranks: list[int], average: str, chunk_size: Optional[int]) -> dict:
    kmax = max(ranks)
    chunk = _chunk_size(chunk_size, prob, kmax)
    totals = _relevant_totals(prob, chunk)
    at = torch.tensor(ranks, device=prob.device)
    hits = []
    for q0, q1 in _chunks(prob.num_queries, chunk, prob.device):
        cand = _select_topk(prob, prob.q[q0:q1], kmax, keep_ties=False)
        rel = _topk_relevance(prob, cand, q0, q1 - q0, kmax).double()
        hits.append(rel.cumsum(1)[:, at - 1])
    hits_all = torch.cat(hits)
    retrieved = at.double()[None, :].expand_as(hits_all)
    precision, recall = _curve_average(hits_all, retrieved, totals, average, "zero")
    return {"rank": at, "precision": precision, "recall": recall}


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
    """Precision, recall and MAP inside the Hamming ball of radius r (DCH / thulab, METHODS.md §5.4).

    Per query, A = {items with Hamming distance <= radius}.  Empty A: precision = recall = MAP = 0,
    kept in the mean.  Otherwise precision = relevant in A / |A|, recall = relevant in A / relevant in
    the database (0 when the database has none; thulab divides by zero there).  MAP re-ranks A by the
    continuous inner product ``query_scores . db_scores`` (descending, ties by database index) when
    both are given, else by (Hamming distance, index); AP is normalised by the relevant items in A.
    As in thulab ``get_precision_recall_by_Hamming_Radius``, a non-empty ball without relevant items
    is left out of the MAP mean (``drop_balls_without_relevant=True``); pass False to count it as 0.
    Returns floats ``{"precision", "recall", "map"}`` (thulab's radius >= 10 shortcut is not copied).
    """
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative int, got {radius!r}")
    if (query_scores is None) != (db_scores is None):
        raise ValueError("pass both query_scores and db_scores, or neither")
    prob = _prepare(query_codes, query_labels, db_codes, db_labels)
    scores = _prepare_scores(prob, query_scores, db_scores) if query_scores is not None else None
    chunk = _chunk_size(chunk_size, prob, prob.num_db)
    totals = _relevant_totals(prob, chunk)
    prec, rec, ap, ap_keep = [], [], [], []
    for q0, q1 in _chunks(prob.num_queries, chunk, prob.device):
        rows_in_chunk = q1 - q0
        ball = torch.full((rows_in_chunk,), min(int(radius), prob.bits), dtype=torch.int64, device=prob.device)
        cand = _select(prob, prob.q[q0:q1], ball)
        ranked = _ranked_ball(prob, cand, q0, rows_in_chunk, scores)
        _, terms = _precision_terms(ranked, rows_in_chunk)
        size = _segment_sum(torch.ones_like(terms), ranked.rows, rows_in_chunk)
        n_rel = _segment_sum(ranked.rel.double(), ranked.rows, rows_in_chunk)
        ap_sum = _segment_sum(terms, ranked.rows, rows_in_chunk)
        prec.append(torch.where(size > 0, n_rel / size.clamp(min=1), torch.zeros_like(size)))
        tot = totals[q0:q1]
        rec.append(torch.where(tot > 0, n_rel / tot.clamp(min=1), torch.zeros_like(tot)))
        ap.append(torch.where(n_rel > 0, ap_sum / n_rel.clamp(min=1), torch.zeros_like(n_rel)))
        counted = (size == 0) | (n_rel > 0)  # thulab: empty balls count 0, balls without relevant are dropped
        ap_keep.append(counted if drop_balls_without_relevant else torch.ones_like(counted))
    everyone = [torch.ones_like(p, dtype=torch.bool) for p in prec]
    return {"precision": _mean(prec, everyone), "recall": _mean(rec, everyone), "map": _mean(ap, ap_keep)}


def _prepare_scores(prob: _Problem, query_scores, db_scores) -> tuple[Tensor, Tensor]:
    qs = _as_tensor(query_scores, "query_scores").to(prob.device)
    ds = _as_tensor(db_scores, "db_scores").to(prob.device)
    if qs.ndim != 2 or ds.ndim != 2 or qs.shape[1] != ds.shape[1]:
        raise ValueError(
            f"query_scores and db_scores must be 2-D with equal widths, got {tuple(qs.shape)} and {tuple(ds.shape)}"
        )
    if qs.shape[0] != prob.num_queries or ds.shape[0] != prob.num_db:
        raise ValueError(
            f"scores have {qs.shape[0]} / {ds.shape[0]} rows but there are {prob.num_queries} queries / "
            f"{prob.num_db} database items"
        )
    dtype = torch.promote_types(torch.promote_types(qs.dtype, ds.dtype), torch.float32)
    return qs.to(dtype), ds.to(dtype)


def _ranked_ball(prob: _Problem, cand: _Candidates, q0: int, num_rows: int, scores) -> _Ranked:
    """Hamming-ball items ranked by (distance, index), or by (-inner product, index) with scores."""
    if scores is None:
        order = cand.ranking()
    else:
        rows, _ = cand.rows_dist(cand.group)
        qs, ds = scores
        step = max(1, 2**22 // qs.shape[1])  # bounded memory for the gathered score rows
        ip = [(qs[rows[s:s + step] + q0] * ds[cand.cols[s:s + step]]).sum(1) for s in range(0, rows.numel(), step)]
        ip = torch.cat(ip) if ip else torch.zeros(0, dtype=qs.dtype, device=qs.device)
        order = torch.sort(-ip, stable=True).indices  # by score; ties keep the list's index order
        order = order[torch.sort(rows[order], stable=True).indices]  # then group rows
    rows, _ = cand.rows_dist(cand.group[order])
    return _ranked(prob, rows, cand.cols[order], q0, num_rows)


def bit_statistics(codes) -> dict:
    """Code-quality statistics of a (N, K) code matrix (binarised with :func:`to_signed_codes`).

    Returns ``plus_one_rate`` (K,) share of +1 per bit, ``bit_entropy`` (K,) binary entropy of each bit
    in bits, ``mean_bit_entropy`` (float, 1.0 = perfectly balanced) and ``distinct_code_fraction``
    (float: distinct codes / N).
    """
    signed = to_signed_codes(codes)
    if signed.shape[0] == 0:
        raise ValueError("bit_statistics needs at least one code")
    p = (signed > 0).double().mean(0)
    entropy = torch.zeros_like(p)
    for share in (p, 1 - p):  # -sum p log2 p, with 0 log 0 = 0
        entropy -= torch.where(share > 0, share * torch.log2(share.clamp(min=1e-300)), torch.zeros_like(share))
    distinct = torch.unique(signed > 0, dim=0).shape[0]
    return {
        "plus_one_rate": p,
        "bit_entropy": entropy,
        "mean_bit_entropy": float(entropy.mean()),
        "distinct_code_fraction": distinct / signed.shape[0],
    }


def _k_name(k: TopK) -> str:
    return "all" if k is None else str(int(k))


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
    prob = _prepare(query_codes, query_labels, db_codes, db_labels)
    if not top_ks:
        raise ValueError("top_ks must name at least one k (None = whole database)")
    ks = {name: _resolve_k(k, prob.num_db) for name, k in ((_k_name(k), k) for k in top_ks)}
    res = _topk_metrics(prob, sorted(set(ks.values())), tie_average, chunk_size)
    report = {}
    for name, k in ks.items():
        r = res[k]
        report[f"mAP@{name}"] = _map_of(r, exclude_no_relevant)
        if tie_average:
            report[f"mAP@{name}_tie_avg"] = _tie_map_of(r, exclude_no_relevant)
        report[f"P@{name}"] = float(torch.cat(r["found"]).mean() / k)
    if radius is not None:
        ball = hamming_radius_metrics(prob.q, prob.q_labels, prob.db, prob.db_labels, radius,
                                      query_scores, db_scores, chunk_size=chunk_size)
        report[f"P@H<={radius}"] = ball["precision"]
        report[f"R@H<={radius}"] = ball["recall"]
        report[f"mAP@H<={radius}"] = ball["map"]
    return report


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
    """Curves for plotting, as tensors: PR by Hamming radius and P/R by rank.

    Keys: ``pr_radius/radius``, ``pr_radius/precision``, ``pr_radius/recall`` (query-averaged, a
    radius that retrieves nothing counts 0) and ``pr_rank/rank``, ``pr_rank/precision`` (P@N),
    ``pr_rank/recall`` at ``num_points`` ranks evenly spaced over 1..``max_rank`` (default: the whole
    database).  ``rank_ties="average"`` (default) takes the rank curve in expectation over tie
    orders, which comes from the same single histogram pass as the radius curve; ``"stable"`` uses
    the (distance, index) ranking and costs a full ranking per query when ``max_rank`` is large.
    """
    if rank_ties not in ("stable", "average"):
        raise ValueError(f"rank_ties must be 'stable' or 'average', got {rank_ties!r}")
    prob = _prepare(query_codes, query_labels, db_codes, db_labels)
    n, r = _distance_histograms(prob, chunk_size)
    radius = _pr_by_radius(n, r, "query", "zero")
    ranks = _curve_ranks(None, num_points, _resolve_k(max_rank, prob.num_db))
    if rank_ties == "average":
        rank = _pr_by_rank_expected(n, r, ranks, "query")
    else:
        rank = _pr_by_rank_stable(prob, ranks, "query", chunk_size)
    return {f"pr_radius/{k}": v for k, v in radius.items()} | {f"pr_rank/{k}": v for k, v in rank.items()}
