"""Input checks and conversion: ±1 codes, multi-hot labels, label bitmask words, validated problems."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .cut_offs import parse_top_k
from .cut_offs import top_k_name as _k_name  # noqa: F401 (the metric names' suffix)

TopK = Optional[int]

# Exactness limit of float32 sums of ±1 products.
_MAX_BITS = 2**24
# Bits of a label bitmask word (kept below 63 so words stay non-negative int64).
_WORD_BITS = 32


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
class _Codes:
    """Validated ±1 float32 query and database codes on one device (what the ranking needs)."""

    q: Tensor  # (Q, K) float32 ±1
    db: Tensor  # (N, K) float32 ±1

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


@dataclass
class _Problem(_Codes):
    """Codes plus multi-hot labels and their bitmask words (what the metrics need)."""

    q_labels: Tensor = None  # (Q, C) float32 0/1
    db_labels: Tensor = None  # (N, C) float32 0/1
    q_words: Tensor = None  # (Q, W) int64
    db_words: Tensor = None  # (N, W) int64

    def relevance(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Bool relevance of (query row, database col) pairs given as flat index tensors."""
        return ((self.q_words[rows] & self.db_words[cols]) != 0).any(-1)


def _prepare_codes(query_codes, db_codes) -> _Codes:
    q = to_signed_codes(query_codes)
    db = to_signed_codes(_as_tensor(db_codes, "db_codes").to(q.device))
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"query codes have {q.shape[1]} bits but database codes have {db.shape[1]}")
    if q.shape[1] == 0 or q.shape[1] > _MAX_BITS:
        raise ValueError(f"code length must be in [1, 2**24], got {q.shape[1]}")
    if q.shape[0] == 0 or db.shape[0] == 0:
        raise ValueError(f"need at least one query and one database item, got {q.shape[0]} and {db.shape[0]}")
    return _Codes(q, db)


def _prepare(query_codes, query_labels, db_codes, db_labels) -> _Problem:
    codes = _prepare_codes(query_codes, db_codes)
    device = codes.device
    ql, dl = _pair_labels(_as_tensor(query_labels, "query_labels").to(device),
                          _as_tensor(db_labels, "db_labels").to(device))
    if ql.shape[0] != codes.num_queries:
        raise ValueError(f"{codes.num_queries} query codes but {ql.shape[0]} query labels")
    if dl.shape[0] != codes.num_db:
        raise ValueError(f"{codes.num_db} database codes but {dl.shape[0]} database labels")
    qp, dp = ql > 0, dl > 0
    return _Problem(codes.q, codes.db, qp.float(), dp.float(), _label_words(qp), _label_words(dp))


def _prepare_scores(prob: _Codes, query_scores, db_scores) -> tuple[Tensor, Tensor]:
    """Continuous scores for re-ranking, checked against the problem's sizes, in a float >= float32."""
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


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _resolve_k(top_k: TopK, num_db: int) -> int:
    """A cut-off as :func:`parse_top_k` reads it, as a count: the whole database, or k clamped to its size.

    Except ``-1``: in Python code ported from DeepHash-pytorch ``topK=-1`` means all but the last item, so the
    metrics refuse it rather than guess (configs and command lines, which never had that meaning, accept it)."""
    if isinstance(top_k, (int, np.integer, str)) and not isinstance(top_k, bool) and str(top_k).strip() == "-1":
        raise ValueError("top_k=-1 is ambiguous (DeepHash-pytorch's topK=-1 leaves out the last item); pass None or "
                         "'all' for the whole database, or the number of items")
    k = parse_top_k(top_k, "top_k")
    return num_db if k is None else min(k, num_db)


def _check_radius(radius) -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative int, got {radius!r}")
    return int(radius)
