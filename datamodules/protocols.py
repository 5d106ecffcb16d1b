"""Protocols: named split protocols, their registry, sizes and the seeded split function.

A *protocol* fixes which images form the ``train``, ``query``, ``database`` (and optionally
``val_query``) splits and the default mAP cut-off ``top_k`` (``None`` = the whole database).
Each dataset module registers its own protocols (``cifar.py``, ``mnist.py``, ``flickr.py``; an
:class:`~datamodules.image_list.ImageList` registers the one its init args describe) under explicit
names, never "(I)/(II)", whose meaning differs between papers.

Three kinds:

* ``pooled``: the official train and test sets are pooled, then split at random (seeded). Sizes are
  per class when ``per_class`` (single-label data) else totals (multi-label data).
* ``official``: the official test set is the query side (shuffled; the first ``val_query`` images are
  validation queries, then ``query`` test queries, ``None`` = the rest); the official train set is
  the database side (``database`` per class, ``None`` = all) and ``train`` is drawn from the
  database (per class when ``per_class``; ``None`` = train is the database).
* ``lists``: the splits are given by list files (``<relative path> <0/1 labels>``); nothing is drawn.

Size semantics for the drawn kinds: ``train=None`` means "train is the database";
``database=None`` means "all remaining images"; ``query=None`` (official kind) means "the rest of
the test set". ``train_in_database`` says whether the train images are a subset of the database
(True) or disjoint from it (False); for list protocols ``None`` means "the lists decide, not checked".

Validation for a protocol without its own validation queries: :func:`draw_validation` draws them from
the train split with a seed stream of its own (the protocol's splits do not change).

Splits are reproducible: :func:`split_pool` uses only ``numpy.random.default_rng(seed)`` and returns
sorted index arrays into the pool; :func:`~datamodules.split_files.save_or_verify_splits` writes them to
``<root>/splits/<dataset>_<protocol>_seed<seed>[_<sizes>][_val<N>[h]].npz`` (with a JSON ``meta``
entry) and, when the file already exists, checks that it holds the same indices for the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import DatasetFormatError, ProtocolSizeError

# split files have a module of their own; their names stay importable from here as at a951ebe
from .split_files import (SPLIT_ALGORITHM, SPLIT_NAMES, SplitFileMismatchError, pool_fingerprint,  # noqa: F401
                          save_or_verify_splits, split_file_name)
# the seed stream of the validation draw, so that drawing validation queries changes no other split
_VALIDATION_STREAM = 0x7661


@dataclass(frozen=True)
class Protocol:
    """A named split protocol (see the module docstring for the size semantics)."""

    name: str
    dataset: str
    kind: str  # "pooled" | "official" | "lists"
    num_classes: int
    top_k: Optional[int]
    description: str
    source: str
    query: Optional[int] = None
    train: Optional[int] = None
    database: Optional[int] = None
    val_query: int = 0
    per_class: bool = True
    train_in_database: Optional[bool] = True
    # lists kind: split -> candidate file names (first existing wins); train None = database list
    lists: Optional[Mapping[str, Optional[Tuple[str, ...]]]] = None
    # sizes on the full, real dataset (documentation and checks on real data)
    nominal: Mapping[str, int] = field(default_factory=dict)

    @property
    def has_val_queries(self) -> bool:
        if self.kind == "lists":
            return bool(self.lists and self.lists.get("val_query"))
        return self.val_query > 0

    def default_sizes(self) -> Dict[str, Optional[int]]:
        return {"query": self.query, "train": self.train, "database": self.database,
                "val_query": self.val_query}

    def summary(self) -> str:
        k = "all" if self.top_k is None else str(self.top_k)
        sizes = "".join(f"{s} {n:,}, " for s, n in self.nominal.items())
        rel = {True: "train ⊂ database", False: "train ∩ database = ∅", None: "as the lists give"}
        own_val = "; own validation queries" if self.has_val_queries else ""
        return (f"{self.dataset}/{self.name}: {sizes}{rel[self.train_in_database]}{own_val}; "
                f"mAP@{k}; {self.num_classes} labels. {self.description} [{self.source}]")


_REGISTRY: Dict[str, Dict[str, Protocol]] = {}
_ALIASES: Dict[str, Dict[str, str]] = {}


def register(protocol: Protocol, aliases: Sequence[str] = ()) -> Protocol:
    """Add ``protocol`` to the registry (``aliases`` are alternative names)."""
    _REGISTRY.setdefault(protocol.dataset, {})[protocol.name] = protocol
    for a in aliases:
        _ALIASES.setdefault(protocol.dataset, {})[_norm(a)] = protocol.name
    return protocol


def _norm(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def available(dataset: str) -> list:
    """Names of the protocols registered for ``dataset``."""
    return sorted(_REGISTRY.get(dataset, {}))


def get_protocol(dataset: str, name: str) -> Protocol:
    """Look a protocol up by name (case-insensitive, '-' = '_', aliases allowed)."""
    table = _REGISTRY.get(dataset)
    if not table:
        raise KeyError(f"no protocols registered for dataset {dataset!r}; registered: {sorted(_REGISTRY)} "
                       f"(each dataset module registers its own protocols when imported, e.g. datamodules.cifar)")
    key = _norm(name)
    key = _ALIASES.get(dataset, {}).get(key, key)
    if key not in table:
        aliases = _ALIASES.get(dataset, {})
        alias_txt = f" (aliases: {', '.join(f'{a} -> {b}' for a, b in sorted(aliases.items()))})" if aliases else ""
        raise ValueError(f"unknown protocol {name!r} for {dataset}; available: "
                         f"{', '.join(available(dataset))}{alias_txt}")
    return table[key]


def describe(dataset: Optional[str] = None) -> str:
    """One line per registered protocol (all datasets, or one)."""
    names = [dataset] if dataset else sorted(_REGISTRY)
    return "\n".join(p.summary() for d in names for p in _REGISTRY.get(d, {}).values())


# --------------------------------------------------------------------------------------------------
# Sizes and the split function
# --------------------------------------------------------------------------------------------------
def resolve_sizes(protocol: Protocol, scale: float = 1.0, query: Optional[int] = None,
                  train: Optional[int] = None, database: Optional[int] = None,
                  val_query: Optional[int] = None) -> Dict[str, Optional[int]]:
    """Protocol sizes after ``scale`` (multiplies every finite count, rounding, at least 1) and
    explicit overrides (in the protocol's unit: per class or total). ``None`` overrides keep the
    protocol value; a size that is ``None`` in the protocol ("all"/"the rest") is not scaled."""
    overrides = {"query": query, "train": train, "database": database, "val_query": val_query}
    if protocol.kind == "lists":
        given = {k: v for k, v in overrides.items() if v is not None}
        if given or scale != 1.0:
            raise ValueError(f"protocol {protocol.name!r} takes its splits from list files; size "
                             f"overrides ({given or {'scale': scale}}) do not apply: edit the lists instead")
        return protocol.default_sizes()
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    sizes = protocol.default_sizes()
    for k, v in sizes.items():
        if v is not None and scale != 1.0 and v > 0:
            sizes[k] = max(1, int(round(v * scale)))
    for k, v in overrides.items():
        if v is not None:
            if int(v) < 0 or (k != "val_query" and int(v) == 0):
                raise ValueError(f"{k}_size must be positive, got {v}")
            if k == "val_query" and v and not protocol.val_query:
                raise ValueError(f"protocol {protocol.name!r} has no validation queries; "
                                 f"val_query_size does not apply")
            sizes[k] = int(v)
    return sizes


def _class_ids(labels: np.ndarray, protocol: Protocol) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return labels.astype(np.int64)
    counts = labels.sum(1)
    if not np.all(counts == 1):
        raise DatasetFormatError(f"protocol {protocol.name!r} draws per class but the labels are not "
                                 f"single-label one-hot ({int((counts != 1).sum())} rows differ)")
    return labels.argmax(1).astype(np.int64)


def _take(rng: np.random.Generator, members: np.ndarray, n: Optional[int], what: str,
          protocol: Protocol, group: str) -> Tuple[np.ndarray, np.ndarray]:
    """Random ``n`` of ``members`` (all if None) and the rest."""
    perm = members[rng.permutation(len(members))]
    if n is None:
        return perm, perm[:0]
    if n > len(perm):
        raise ProtocolSizeError(
            f"protocol {protocol.name!r} wants {n} {what} from {group} but only {len(perm)} images "
            f"are available; for miniature or subset data pass scale=... or query_size/train_size/"
            f"database_size/val_query_size")
    return perm[:n], perm[n:]


def split_pool(protocol: Protocol, labels: np.ndarray, seed: int,
               sizes: Optional[Mapping[str, Optional[int]]] = None,
               is_test: Optional[np.ndarray] = None,
               class_names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
    """Draw the splits of ``protocol`` from a pool.

    Args:
        protocol: a ``pooled`` or ``official`` protocol.
        labels: ``(N, C)`` multi-hot (or ``(N,)`` class ids) labels of the pool.
        seed: seed of the ``numpy.random.default_rng`` that does every draw.
        sizes: output of :func:`resolve_sizes` (default: the protocol's sizes).
        is_test: ``(N,)`` bool, membership of the official test set (``official`` kind only).
        class_names: for error messages.

    Returns:
        ``{"train", "query", "database", "val_query"}`` -> sorted int64 pool indices
        (``val_query`` empty when the protocol has none).
    """
    if protocol.kind not in ("pooled", "official"):
        raise ValueError(f"protocol {protocol.name!r} is given by list files, not drawn")
    sizes = dict(sizes or protocol.default_sizes())
    labels = np.asarray(labels)
    n = labels.shape[0]
    rng = np.random.default_rng(seed)
    nq, ntr, ndb, nv = sizes["query"], sizes["train"], sizes["database"], sizes["val_query"] or 0

    def groups(idx: np.ndarray):
        if not protocol.per_class:
            return [(idx, "the pool")]
        cls = _class_ids(labels[idx], protocol)
        out = []
        for c in range(protocol.num_classes):
            name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
            out.append((idx[cls == c], f"class {c} ({name})"))
        return out

    q, t, d, v = [], [], [], []
    all_idx = np.arange(n, dtype=np.int64)
    if protocol.kind == "pooled":
        for members, g in groups(all_idx):
            qq, rest = _take(rng, members, nq, "queries", protocol, g)
            vv, rest = _take(rng, rest, nv, "validation queries", protocol, g) if nv else (rest[:0], rest)
            if protocol.train_in_database:
                dd, _ = _take(rng, rest, ndb, "database images", protocol, g)
                tt = dd if ntr is None else _take(rng, dd, ntr, "train images (from the database)", protocol, g)[0]
            else:
                if ntr is None:
                    raise ValueError(f"protocol {protocol.name!r}: train must have a size when disjoint")
                tt, rest = _take(rng, rest, ntr, "train images", protocol, g)
                dd, _ = _take(rng, rest, ndb, "database images", protocol, g)
            q.append(qq), v.append(vv), t.append(tt), d.append(dd)
    else:  # official
        if is_test is None:
            raise ValueError(f"protocol {protocol.name!r} needs the official train/test membership")
        is_test = np.asarray(is_test, dtype=bool)
        test_idx, train_idx = all_idx[is_test], all_idx[~is_test]
        vv, rest = _take(rng, test_idx, nv, "validation queries", protocol, "the official test set") \
            if nv else (test_idx[:0], test_idx[rng.permutation(len(test_idx))])
        qq, _ = _take(rng, rest, nq, "queries", protocol, "the official test set")
        q.append(qq), v.append(vv)
        for members, g in groups(train_idx):
            dd = members if ndb is None else _take(rng, members, ndb, "database images", protocol,
                                                  g + " of the official train set")[0]
            tt = dd if ntr is None else _take(rng, dd, ntr, "train images (from the database)",
                                              protocol, g + " of the official train set")[0]
            d.append(dd), t.append(tt)
    splits = {"train": t, "query": q, "database": d, "val_query": v}
    splits = {k: np.sort(np.concatenate(x)).astype(np.int64) if x else np.zeros(0, np.int64)
              for k, x in splits.items()}
    check_split_rules(protocol, splits)
    return splits


def check_split_rules(protocol: Protocol, splits: Mapping[str, np.ndarray]) -> None:
    """Raise if the splits break the protocol's disjointness / overlap rules."""
    q, db, tr = (np.asarray(splits[k]) for k in ("query", "database", "train"))
    v = np.asarray(splits.get("val_query", np.zeros(0, np.int64)))
    problems = []
    for name, arr in (("query", q), ("database", db), ("train", tr), ("val_query", v)):
        if len(np.unique(arr)) != len(arr):
            problems.append(f"{name} has repeated indices")
    if np.intersect1d(q, db).size:
        problems.append("query and database overlap")
    if np.intersect1d(q, tr).size:
        problems.append("query and train overlap")
    if v.size and (np.intersect1d(v, db).size or np.intersect1d(v, q).size or np.intersect1d(v, tr).size):
        problems.append("validation queries overlap another split")
    if protocol.train_in_database is True and not np.isin(tr, db).all():
        problems.append("train is not a subset of the database")
    if protocol.train_in_database is False and np.intersect1d(tr, db).size:
        problems.append("train and database overlap")
    if problems:
        raise RuntimeError(f"protocol {protocol.name!r}: " + "; ".join(problems))


def draw_validation(train: np.ndarray, n: int, seed: int, holdout: bool,
                    exclude: Optional[np.ndarray] = None, what: str = "the train split") -> Dict[str, np.ndarray]:
    """Draw ``n`` validation queries from ``train`` (pool indices) for a protocol without its own.

    The draw uses a seed stream of its own (``seed`` and a fixed stream id), so it changes no other
    split. ``exclude`` (e.g. train entries that are also test queries) are never drawn.

    Returns ``{"val_query", "val_database", "train"}`` as sorted int64 pool indices: the validation
    database is the rest of ``train``; ``train`` is that rest when ``holdout`` else unchanged.
    """
    train = np.asarray(train, dtype=np.int64)
    candidates = train if exclude is None else train[~np.isin(train, exclude)]
    n = int(n)
    if n < 1:
        raise ValueError(f"val_queries must be >= 1, got {n}")
    if n >= len(candidates):
        raise ProtocolSizeError(
            f"val_queries={n} but {what} has only {len(candidates)} image(s) to draw validation queries from "
            f"(the rest of it is the validation database, so at most {max(len(candidates) - 1, 0)}); "
            f"lower val_queries")
    rng = np.random.default_rng([int(seed), _VALIDATION_STREAM])
    val = np.sort(candidates[rng.permutation(len(candidates))[:n]])
    rest = np.sort(train[~np.isin(train, val)])
    return {"val_query": val, "val_database": rest, "train": rest if holdout else np.sort(train)}
