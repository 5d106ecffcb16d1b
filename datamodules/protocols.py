"""Named retrieval protocols, the seeded split function, and split files written next to the data.

A *protocol* fixes which images form the ``train``, ``query``, ``database`` (and optionally
``val_query``) splits and the default mAP cut-off ``top_k`` (``None`` = the whole database).
Protocols are registered per dataset under explicit names (never "(I)/(II)", whose meaning differs
between papers; see METHODS.md §6.1).

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

Splits are reproducible: :func:`split_pool` uses only ``numpy.random.default_rng(seed)`` and returns
sorted index arrays into the pool; :func:`save_or_verify_splits` writes them to
``<root>/splits/<dataset>_<protocol>_seed<seed>[_<sizes>].npz`` (with a JSON ``meta`` entry) and, when
the file already exists, checks that it holds the same indices for the same data.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import DatasetFormatError, ProtocolSizeError

SPLIT_NAMES = ("train", "query", "database", "val_query")
SPLIT_ALGORITHM = "hashbench-split-v1"


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
        sizes = ", ".join(f"{s} {n:,}" for s, n in self.nominal.items())
        rel = {True: "train ⊂ database", False: "train ∩ database = ∅", None: "as the lists give"}
        return (f"{self.dataset}/{self.name}: {sizes}; {rel[self.train_in_database]}; "
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
        raise KeyError(f"no protocols registered for dataset {dataset!r}; known: {sorted(_REGISTRY)}")
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
# Registry. Sources: METHODS.md §1-§4 and §6.
# --------------------------------------------------------------------------------------------------
_CIFAR = "cifar10"
register(Protocol(
    "bihalf_i", _CIFAR, "pooled", 10, 1000,
    "Bi-half Cifar-10(I): train+test pooled; 1,000 query per class; the other 5,000 per class are the "
    "database; train = database.",
    "liyunqianggyn/Deep-Unsupervised-Image-Hashing Cifar10_I.py",
    query=1000, train=None, database=None,
    nominal={"query": 10000, "train": 50000, "database": 50000}))
register(Protocol(
    "bihalf_ii", _CIFAR, "pooled", 10, None,
    "Bi-half Cifar-10(II): as bihalf_i but train = 500 per class drawn from the database.",
    "liyunqianggyn/Deep-Unsupervised-Image-Hashing Cifar10_II.py",
    query=1000, train=500, database=None,
    nominal={"query": 10000, "train": 5000, "database": 50000}))
register(Protocol(
    "dch", _CIFAR, "pooled", 10, None,
    "DCH / DeepHash-pytorch `cifar10`: pooled; 100 query and 500 train per class; database = the "
    "remaining 54,000 (train excluded). thulab's R = 54,000 is the whole database.",
    "thulab/DeepHash data/cifar10; swuxyj/DeepHash-pytorch cifar10",
    query=100, train=500, database=None, train_in_database=False,
    nominal={"query": 1000, "train": 5000, "database": 54000}), aliases=("cifar10", "deephash_cifar10"))
register(Protocol(
    "cifar10_1", _CIFAR, "pooled", 10, None,
    "DeepHash-pytorch `cifar10-1` / GreedyHash supervised `cifar1`: 100 query and 500 train per "
    "class; database = all 59,000 non-query images (train included).",
    "swuxyj/DeepHash-pytorch cifar10-1; ssppp/GreedyHash cifar1.py",
    query=100, train=500, database=None,
    nominal={"query": 1000, "train": 5000, "database": 59000}))
register(Protocol(
    "cifar10_2", _CIFAR, "pooled", 10, None,
    "DeepHash-pytorch `cifar10-2`: same split as bihalf_i (1,000 query per class, train = "
    "database = the rest) but mAP@All (its unsupervised scripts override to @1000).",
    "swuxyj/DeepHash-pytorch cifar10-2",
    query=1000, train=None, database=None,
    nominal={"query": 10000, "train": 50000, "database": 50000}))
register(Protocol(
    "cibhash", _CIFAR, "official", 10, 1000,
    "CIBHash code: train = 500 per class of the official train set; database = the whole official "
    "train set; the official test set is shuffled into 5,000 validation and 5,000 test queries.",
    "qiuzx2/CIBHash utils/data.py get_cifar",
    query=None, train=500, database=None, val_query=5000,
    nominal={"query": 5000, "val_query": 5000, "train": 5000, "database": 50000}))
register(Protocol(
    "greedyhash", _CIFAR, "official", 10, 1000,
    "GreedyHash unsupervised (and supervised `cifar2`) official split: query = the 10,000 test "
    "images; train = database = the 50,000 train images.",
    "ssppp/GreedyHash unsupervised_vgg.py, cifar2.py",
    query=None, train=None, database=None,
    nominal={"query": 10000, "train": 50000, "database": 50000}), aliases=("official",))

for _ds in ("mnist", "fashion_mnist"):
    register(Protocol(
        "cifar_like", _ds, "pooled", 10, 1000,
        "CIFAR-style protocol on the 70,000 pooled images: 100 query per class; database = the "
        "rest; train = 500 per class drawn from the database.",
        "hashbench (OFFLINE_DATA.md recipe; cf. DeepHash-pytorch cifar10-1)",
        query=100, train=500, database=None,
        nominal={"query": 1000, "train": 5000, "database": 69000}))
    register(Protocol(
        "official", _ds, "official", 10, 1000,
        "Official split: query = the 10,000 test images; train = database = the 60,000 train images.",
        "hashbench (GreedyHash-style official split)",
        query=None, train=None, database=None,
        nominal={"query": 10000, "train": 60000, "database": 60000}))

_DEEPHASH_LISTS = {"train": ("train.txt",), "query": ("test.txt",), "database": ("database.txt",)}
register(Protocol(
    "nuswide_21", "nuswide", "lists", 21, 5000,
    "DeepHash-pytorch `nuswide_21` (NUS-WIDE images with the 21 most frequent concepts): 100 query "
    "per class (2,100), 500 train per class (10,500) ⊂ database = all non-query images.",
    "swuxyj/DeepHash-pytorch data/nuswide_21 (images: TreezzZ/DSDH_PyTorch)",
    lists=_DEEPHASH_LISTS, train_in_database=True,
    nominal={"query": 2100, "train": 10500}))
register(Protocol(
    "nuswide_21_m", "nuswide", "lists", 21, 5000,
    "DeepHash-pytorch `nuswide_21_m` (HashNet's NUS-WIDE-m images, 21 concepts): 2,100 query / "
    "10,500 train lists.",
    "swuxyj/DeepHash-pytorch nuswide_21_m",
    lists=_DEEPHASH_LISTS, train_in_database=None,
    nominal={"query": 2100, "train": 10500}))
register(Protocol(
    "nuswide_81", "nuswide", "lists", 81, 5000,
    "HashNet / DCH NUS-WIDE (81 concepts): 5,000 query / 10,000 train lists (DeepHash-pytorch "
    "`nuswide_81_m`).",
    "thuml/HashNet data/nus_wide; thulab/DeepHash data/nuswide_81",
    lists=_DEEPHASH_LISTS, train_in_database=None,
    nominal={"query": 5000, "train": 10000}), aliases=("nuswide_81_m",))
register(Protocol(
    "coco", "coco", "lists", 80, 5000,
    "HashNet MS-COCO lists (80 labels): 10,000 train / 5,000 query / database = the remaining "
    "images. Used by DCH (R = 5000), Bi-half (mAP@5000) and DeepHash-pytorch `coco`.",
    "thuml/HashNet data/coco; swuxyj/DeepHash-pytorch data/coco",
    lists={"train": ("train.txt", "train_coco.txt"), "query": ("test.txt", "test_coco.txt"),
           "database": ("database.txt", "database_coco.txt")},
    train_in_database=None, nominal={"query": 5000, "train": 10000}), aliases=("hashnet",))
register(Protocol(
    "bihalf", "flickr25k", "pooled", 24, None,
    "Bi-half Flickr25k: all 25,000 MIRFlickr images, 24 concepts; 2,000 random queries; database = "
    "the other 23,000; train = 5,000 drawn from the database (seeded here; unseeded upstream).",
    "liyunqianggyn/Deep-Unsupervised-Image-Hashing data/flickr25k.py",
    query=2000, train=5000, database=None, per_class=False,
    nominal={"query": 2000, "train": 5000, "database": 23000}), aliases=("flickr25k",))
register(Protocol(
    "deephash_mirflickr", "flickr25k", "lists", 38, None,
    "DeepHash-pytorch `mirflickr`: 38 labels (all annotation files incl. *_r1); 1,000 query / "
    "4,000 train (not in the database) / 20,000 database lists.",
    "swuxyj/DeepHash-pytorch data/mirflickr",
    lists=_DEEPHASH_LISTS, train_in_database=False,
    nominal={"query": 1000, "train": 4000, "database": 20000}), aliases=("mirflickr",))


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


# --------------------------------------------------------------------------------------------------
# Split files
# --------------------------------------------------------------------------------------------------
def pool_fingerprint(*arrays: np.ndarray) -> str:
    """sha256 over the arrays that define a pool (labels, official-test mask, ...)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            continue
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def split_file_name(dataset: str, protocol: Protocol, seed: int,
                    sizes: Mapping[str, Optional[int]]) -> str:
    stem = f"{dataset}_{protocol.name}_seed{seed}"
    if dict(sizes) != protocol.default_sizes():
        f = lambda x: "all" if x is None else str(x)  # noqa: E731
        stem += f"_q{f(sizes['query'])}-t{f(sizes['train'])}-db{f(sizes['database'])}-v{f(sizes['val_query'])}"
    return stem + ".npz"


class SplitFileMismatchError(RuntimeError):
    """An existing split file does not match the splits computed now."""


def save_or_verify_splits(path: str, splits: Mapping[str, np.ndarray], meta: Mapping) -> str:
    """Write ``splits`` to ``path`` (atomically), or verify an existing file.

    Returns ``"written"`` or ``"verified"``. Raises :class:`SplitFileMismatchError` when the file
    exists but was made from different data (fingerprint) or holds different indices.
    """
    if os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as f:
                old_meta = json.loads(str(f["meta"]))
                old = {k: f[k] for k in SPLIT_NAMES}
        except Exception as e:  # noqa: BLE001
            raise SplitFileMismatchError(
                f"split file {path} exists but cannot be read ({type(e).__name__}: {e}); "
                f"delete it to regenerate the splits") from e
        if old_meta.get("pool_fingerprint") != meta.get("pool_fingerprint"):
            raise SplitFileMismatchError(
                f"split file {path} was written for different data (pool fingerprint "
                f"{old_meta.get('pool_fingerprint', '?')[:12]}, pool size {old_meta.get('pool_size')}) than "
                f"the data loaded now ({meta.get('pool_fingerprint', '?')[:12]}, pool size "
                f"{meta.get('pool_size')}). The dataset under root changed: restore it, or delete "
                f"the split file to regenerate (results would no longer be comparable).")
        diff = [k for k in SPLIT_NAMES if not np.array_equal(old[k], np.asarray(splits[k]))]
        if diff:
            raise SplitFileMismatchError(
                f"split file {path} holds different {', '.join(diff)} indices than the ones computed "
                f"now for the same data, protocol and seed (split algorithm "
                f"{old_meta.get('algorithm')} vs {meta.get('algorithm')}). Delete it to regenerate.")
        return "verified"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(dict(meta), sort_keys=True)),
                     **{k: np.asarray(splits[k], dtype=np.int64) for k in SPLIT_NAMES})
        os.replace(tmp, path)  # atomic: ranks writing the same content concurrently are harmless
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return "written"


def load_splits(path: str) -> Tuple[Dict[str, np.ndarray], dict]:
    """Read a split file written by :func:`save_or_verify_splits`: (splits, meta)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in SPLIT_NAMES}, json.loads(str(f["meta"]))
