"""``HashDataModule``: the one base DataModule (contract in docs/CONTRACTS.md).

A subclass per dataset supplies where the data lives and how to read it:

* ``_load_pool()`` for protocols drawn from a pool (``pooled`` / ``official`` kinds), returning a
  :class:`Pool`; the base draws the seeded splits, writes/verifies the split file and builds the
  datasets;
* or overrides ``_build_splits()`` entirely;
* list protocols (``lists`` kind) are handled here from ``list_dir`` / ``image_root``;
* ``prepare_data()`` for downloads (rank 0 only, called by Lightning before ``setup``).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Union

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from . import protocols as P
from .datasets import ArrayDataset, ImageFileDataset, _SplitDataset
from .errors import abspath, not_found
from .lists import CHECK_IMAGES, check_images_exist, list_format, read_list_file
from .sampling import EpochSeededItems, EpochShuffleSampler
from .transforms import MultiView, build_transform, is_random, NORMALIZATIONS

from hashcore.retrieval_metrics.cut_offs import parse_top_k
from hashcore.splits import SPLITS, VALIDATION_SPLITS as _VALIDATION  # noqa: F401 (SPLITS re-exported)


@dataclass
class Pool:
    """All images a split is drawn from (or one list file's entries)."""

    images: Union[np.ndarray, List[str]]   # uint8 (N,H,W[,3]) in memory, or absolute file paths
    labels: np.ndarray                     # (N, C) multi-hot (uint8 / float)
    is_test: Optional[np.ndarray] = None   # (N,) bool: official test-set membership
    class_names: Optional[Sequence[str]] = None
    origins: Optional[List[str]] = None    # file pools: "<list file>:<line>" per row
    order: str = ""                        # how pool indices map to the files (for the split file)


@dataclass
class SplitSource:
    pool: Pool
    indices: np.ndarray


def resolve_top_k(value: Optional[Union[int, str]], default: Optional[int]) -> Optional[int]:
    """``None`` -> protocol default; otherwise the cut-off as every option reads it (None = whole database)."""
    return default if value is None else parse_top_k(value, "the mAP cut-off data.top_k")


def _split_property(split: str) -> property:
    """Legacy attribute ``<split>_set``: reads ``dataset(split)`` (None when absent or before setup);
    assigning it is ``replace_dataset(split, value)``."""

    def get(self):
        if self._datasets is None:
            return None
        return self._datasets.get(self._aliases.get(split, split))

    def set_(self, value):
        self.replace_dataset(split, value)

    return property(get, set_, doc=f"The {split} dataset (legacy name; use dataset({split!r}) / replace_dataset).")


class HashDataModule(L.LightningDataModule):
    """Base DataModule for image hashing: ``train`` / ``query`` / ``database`` splits, plus
    ``val_query`` / ``val_database`` when there is a validation split.

    Every item is ``(image, label, index)``: image tensor ``3xSxS`` (a list of ``views`` tensors for
    the train set when ``views > 1``), float32 multi-hot label, int64 position in its split.

    Model <-> data hand-over (the datamodule never looks at the model):

    * model -> data: call ``request_train_input(views, transform)`` right after building model and
      datamodule (the CLI does, with the model's ``train_views`` / ``train_transform``). Explicit
      ``views=`` / ``train_transform=`` init args win; without a request the defaults are 1 view and
      the dataset's default transform. It takes effect at the next ``setup()``.
    * data -> model: ``num_classes`` (and ``top_k``, the protocol's mAP cut-off).

    Splits and datasets: ``dataset(split)`` / ``replace_dataset(split, dataset)`` for ``split`` in
    ``train, query, database, val_query, val_database`` (a replacement, e.g. cached features, holds
    until the next ``setup()``); ``splits_for(stage)`` names the splits whose loaders a Lightning stage
    reads; ``eval_dataset(split)`` gives a split with the deterministic eval transform (train too);
    ``image(split, i)`` the raw RGB image of an item; ``dataset(split).fingerprint()`` a hash of what
    the split's items are made of. A loader reads a dataset whose ``loads_in_process`` is True in the
    main process (``num_workers=0``), any other with ``num_workers`` workers.

    Validation: a protocol with its own validation queries (CIFAR-10 ``cibhash``, a list protocol
    with a ``val_query`` list) validates them against its database. Any other protocol has no
    validation split (``val_dataloader()`` returns ``[]``, Lightning skips validation) unless
    ``val_queries=N`` draws N validation queries from the train split (seeded by ``seed``, recorded
    in the split file); the validation database is the rest of the train split. With
    ``val_holdout=False`` (default) the train split stays exactly the paper's, so the validation
    images were also trained on (without their labels, for unsupervised methods): validation mAP is
    then optimistic, fine for model selection trends but not a held-out number. ``val_holdout=True``
    removes them from the train split. The test queries are never used for validation.

    Shuffling: the train order is a function of ``(seed, epoch)`` only (``sampling.py``), so a
    resumed run replays the uninterrupted run's order; an item's random augmentation is a function of
    ``(seed, epoch, item)`` (whichever worker or rank reads it); the train loader restarts its workers
    every epoch so that their seeds are a function of ``(seed, epoch)`` too. Under DDP the
    ranks' batches of a step make up the one-process batch of ``batch_size × world size`` at that
    step, so the batch sequence does not depend on the number of processes.

    Args:
        root: dataset directory (downloads go here; split files go to ``<root>/splits``).
        protocol: protocol name (see ``datamodules.describe()``); None = dataset default.
        batch_size: train batch size per process (train loader: shuffled, ``drop_last=True``); under
            DDP with W processes one step trains on ``batch_size × W`` images, the batch one process
            with ``batch_size × W`` sees at that step.
        eval_batch_size: batch size of the query/database loaders; None = ``batch_size``.
        num_workers: DataLoader worker processes (0 for datasets with ``loads_in_process``).
        seed: seed of the split draw, of the validation draw and of the train shuffling (>= 0).
        image_size: output side S of every transform (224 in the papers).
        train_transform: train transform name (``resize``, ``resize_crop_flip``, ``cibhash``,
            ``resize_center_crop``); None = the requested one (``request_train_input``), else the
            dataset default.
        eval_transform: eval transform name (``resize``, ``resize_center_crop``); None = default.
        views: augmented views per train image; None = the requested number, else 1.
        normalize: ``imagenet`` (ImageNet mean/std) or ``none`` (values in [0, 1]).
        top_k: mAP cut-off override: None = the protocol's default, -1 or ``all`` = whole database.
        scale: multiply every protocol split size (e.g. 0.01 for a subset; at least 1 per unit).
        query_size: override the protocol's query size (per class for per-class protocols).
        train_size: override the train size (per class for per-class protocols).
        database_size: cap the database size (per class for per-class protocols).
        val_query_size: override the number of validation queries (protocols that have their own).
        val_queries: draw this many validation queries from the train split (protocols without
            their own validation split; see "Validation" above).
        val_holdout: remove the drawn validation queries from the train split.
        split_dir: where split files are written/verified; None = ``<root>/splits``.
        write_splits: write (or verify) the split index file.
        pin_memory: DataLoader ``pin_memory``; None = True when CUDA is available.
        persistent_workers: keep the evaluation loaders' workers alive between epochs (only when
            ``num_workers > 0``; the train loader never does, see "Shuffling").
        allow_outside_root: read list-file entries whose image lies outside the image root (an
            absolute path, or ``../`` leading out of it). Off by default: such an entry is an error
            naming the list file and line, since it usually means a list from another machine
            (see ``strip_prefix``) or a wrong root.
    """

    dataset_name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    default_protocol: ClassVar[str] = ""
    default_train_transform: ClassVar[str] = "resize"
    default_eval_transform: ClassVar[str] = "resize"
    # list protocols: where the standard lists / images come from (for error messages)
    list_where_from: ClassVar[str] = ""

    train_set = _split_property("train")
    query_set = _split_property("query")
    database_set = _split_property("database")
    val_query_set = _split_property("val_query")
    val_database_set = _split_property("val_database")

    def __init__(
        self,
        root: str = "data",
        protocol: Optional[str] = None,
        batch_size: int = 64,
        eval_batch_size: Optional[int] = None,
        num_workers: int = 2,
        seed: int = 0,
        image_size: int = 224,
        train_transform: Optional[str] = None,
        eval_transform: Optional[str] = None,
        views: Optional[int] = None,
        normalize: str = "imagenet",
        top_k: Optional[Union[int, str]] = None,
        scale: float = 1.0,
        query_size: Optional[int] = None,
        train_size: Optional[int] = None,
        database_size: Optional[int] = None,
        val_query_size: Optional[int] = None,
        val_queries: Optional[int] = None,
        val_holdout: bool = False,
        split_dir: Optional[str] = None,
        write_splits: bool = True,
        pin_memory: Optional[bool] = None,
        persistent_workers: bool = True,
        allow_outside_root: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.root = os.path.expanduser(str(root))
        self.protocol_spec: P.Protocol = self._protocol_spec(protocol or self.default_protocol)
        self.protocol: str = self.protocol_spec.name
        self.num_classes: int = self.protocol_spec.num_classes
        self.top_k: Optional[int] = resolve_top_k(top_k, self.protocol_spec.top_k)
        self.sizes = P.resolve_sizes(self.protocol_spec, scale, query_size, train_size, database_size,
                                     val_query_size)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size) if eval_batch_size else self.batch_size
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.num_workers = int(num_workers)
        if isinstance(seed, bool) or int(seed) != seed or int(seed) < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.seed = int(seed)
        self.val_queries = self._check_val_queries(val_queries)
        self.val_holdout = bool(val_holdout)
        if self.val_holdout and not self.val_queries:
            raise ValueError("val_holdout=True needs val_queries=N (the number of validation queries to draw "
                             "from the train split and hold out)")
        self.image_size = int(image_size)
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.normalize = normalize
        self.eval_transform = eval_transform or self.default_eval_transform
        build_transform(self.eval_transform, False, self.image_size, normalize)  # fail early on bad names
        if train_transform:
            build_transform(train_transform, True, self.image_size, normalize)
        if views is not None and int(views) < 1:
            raise ValueError(f"views must be >= 1 or None, got {views}")
        self._train_transform_arg = train_transform
        self._views_arg = None if views is None else int(views)
        self._requested: Tuple[Optional[int], Optional[str]] = (None, None)
        self.train_transform: str = ""
        self.views: int = 1
        self._resolve_train_input()
        self.split_dir = split_dir or os.path.join(self.root, "splits")
        self.write_splits = bool(write_splits)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.allow_outside_root = bool(allow_outside_root)
        self.check_images = "first"  # file datasets expose it as an init arg
        self.split_file: Optional[str] = None
        self.split_report: Optional[Dict[str, Any]] = None  # list protocols: sizes and overlaps
        self.class_names: Optional[List[str]] = None
        self._sources: Optional[Dict[str, SplitSource]] = None
        self._datasets: Optional[Dict[str, Dataset]] = None    # what the loaders serve (replaceable)
        self._originals: Dict[str, _SplitDataset] = {}          # what setup() built (for image())
        self._aliases: Dict[str, str] = {}                      # val_database -> database (own val split)

    # ------------------------------------------------------------------ subclass hooks
    def _protocol_spec(self, name: str) -> P.Protocol:
        """The protocol called ``name`` (registered by the dataset's module)."""
        return P.get_protocol(self.dataset_name, name)

    def _load_pool(self) -> Pool:
        raise NotImplementedError(f"{type(self).__name__} does not implement _load_pool()")

    def _build_splits(self) -> Dict[str, SplitSource]:
        if self.protocol_spec.kind == "lists":
            return self._splits_from_lists()
        return self._splits_from_pool(self._load_pool())

    def _split_variant(self) -> str:
        """Tag added to the split file name when an option changes the pool (e.g. a filter)."""
        return ""

    def _image_root(self) -> str:
        """Directory list-file paths are relative to (list protocols)."""
        return self.root

    def _list_dir(self) -> str:
        return self.root

    # ------------------------------------------------------------------ model -> data hand-over
    def request_train_input(self, views: int, transform: Optional[str]) -> None:
        """What the model trains on: ``views`` augmented views per image and the paper's train
        ``transform`` name (None = no preference). Explicit ``views=`` / ``train_transform=`` init
        args win. Call it right after building model and datamodule; it takes effect at the next
        ``setup()``."""
        if isinstance(views, bool) or int(views) != views or int(views) < 1:
            raise ValueError(f"request_train_input: views must be an int >= 1, got {views!r}")
        if transform is not None:
            build_transform(transform, True, self.image_size, self.normalize)  # unknown names fail here
        self._requested = (int(views), transform or None)
        self._resolve_train_input()

    def _resolve_train_input(self) -> None:
        req_views, req_transform = self._requested
        self.train_transform = self._train_transform_arg or req_transform or self.default_train_transform
        self.views = self._views_arg or req_views or 1

    def _check_val_queries(self, val_queries: Optional[int]) -> Optional[int]:
        if val_queries is None:
            return None
        if isinstance(val_queries, bool) or int(val_queries) != val_queries or int(val_queries) < 1:
            raise ValueError(f"val_queries must be an int >= 1 (or None for no validation), got {val_queries!r}")
        if self.protocol_spec.has_val_queries:
            raise ValueError(
                f"val_queries does not apply to protocol {self.protocol!r}: it has its own validation queries "
                f"({self.protocol_spec.description}). Remove val_queries (val_query_size changes how many of "
                f"its own a drawn protocol uses).")
        return int(val_queries)

    # ------------------------------------------------------------------ split construction
    def _save_split_file(self, name: str, splits: Dict[str, np.ndarray], meta: Dict[str, Any]) -> None:
        path = os.path.join(self.split_dir, P.split_file_name(name, self.protocol_spec, self.seed, self.sizes,
                                                              self.val_queries, self.val_holdout))
        try:
            P.save_or_verify_splits(path, splits, meta)
            self.split_file = path
        except OSError as e:
            warnings.warn(f"could not write split file {path} ({e}); the splits are still deterministic for "
                          f"seed {self.seed} but are not saved for auditing", stacklevel=3)

    def _validation_meta(self) -> Dict[str, Any]:
        return {"val_queries": self.val_queries, "val_holdout": self.val_holdout}

    def _splits_from_pool(self, pool: Pool) -> Dict[str, SplitSource]:
        spec = self.protocol_spec
        labels = np.asarray(pool.labels)
        if labels.ndim != 2 or labels.shape[1] != self.num_classes:
            raise ValueError(f"{self.display_name}: pool labels have shape {labels.shape}, expected "
                             f"(N, {self.num_classes})")
        self.class_names = list(pool.class_names) if pool.class_names is not None else None
        idx = P.split_pool(spec, labels, self.seed, self.sizes, pool.is_test, self.class_names)
        if self.val_queries:  # query ∩ train = ∅ (checked by split_pool), so never a test query
            idx.update(P.draw_validation(idx["train"], self.val_queries, self.seed, self.val_holdout))
        if self.write_splits:
            variant = self._split_variant()
            meta = {
                "algorithm": P.SPLIT_ALGORITHM, "dataset": self.dataset_name, "variant": variant,
                "protocol": spec.name,
                "seed": self.seed, "sizes": self.sizes, "pool_size": int(labels.shape[0]),
                "pool_order": pool.order, "top_k": spec.top_k,
                "pool_fingerprint": P.pool_fingerprint(labels.astype(np.uint8), pool.is_test),
                "counts": {k: int(len(v)) for k, v in idx.items()}, **self._validation_meta(),
            }
            self._save_split_file(self.dataset_name + (f"-{variant}" if variant else ""), idx, meta)
        sources = {k: SplitSource(pool, v) for k, v in idx.items() if len(v) or k not in _VALIDATION}
        if "val_query" in sources and "val_database" not in sources:  # the protocol's own validation queries
            sources["val_database"] = sources["database"]
        return sources

    def _find_list(self, split: str, candidates: Sequence[str]) -> str:
        d = self._list_dir()
        for name in candidates:
            p = os.path.join(d, name)
            if os.path.isfile(p):
                return p
        raise not_found(
            f"{self.display_name} {split} list for protocol {self.protocol!r}",
            [os.path.join(d, n) for n in candidates],
            list_format(self.num_classes, self._image_root()),
            self.list_where_from,
            hint=f"Set list_dir (now {abspath(d)}) to the folder holding the lists and root to the "
                 f"image root.")

    def _splits_from_lists(self) -> Dict[str, SplitSource]:
        spec = self.protocol_spec
        image_root = self._image_root()
        sources: Dict[str, SplitSource] = {}
        entries = {}
        for split in ("query", "database", "train", "val_query"):
            cands = (spec.lists or {}).get(split)
            if not cands:
                continue
            path = self._find_list(split, cands)
            ent = read_list_file(path, self.num_classes, image_root, getattr(self, "strip_prefix", None),
                                 allow_outside_root=self.allow_outside_root)
            check_images_exist(
                ent.paths, ent.origins, self.check_images, image_root,
                f"{self.display_name} {split} list {path}",
                report_path=os.path.join(self.split_dir, f"missing_images_{os.path.basename(path)}"),
                hint=f"Where to get the images: {self.list_where_from}")
            entries[split] = ent
            pool = Pool(ent.paths, ent.labels, origins=ent.origins, order=f"lines of {path}")
            sources[split] = SplitSource(pool, np.arange(len(ent.paths), dtype=np.int64))
        if "train" not in sources:  # train = database list
            sources["train"] = sources["database"]
        self.split_report = self._list_overlap_report(entries)
        if "val_query" in sources:
            sources["val_database"] = sources["database"]
        elif self.val_queries:
            sources.update(self._validation_from_list(sources["train"], entries.get("train", entries["database"]),
                                                      entries["query"], image_root))
        return sources

    def _validation_from_list(self, train: SplitSource, train_entries, query_entries,
                              image_root: str) -> Dict[str, SplitSource]:
        """Draw the validation queries from the train list (never an image of the query list) and
        record the draw in a split file (indices are line positions in the train list)."""
        queries = set(query_entries.paths)
        in_queries = np.asarray([i for i, p in enumerate(train_entries.paths) if p in queries], dtype=np.int64)
        idx = P.draw_validation(train.indices, self.val_queries, self.seed, self.val_holdout,
                                exclude=train.indices[in_queries], what=f"the train list {train_entries.list_path}")
        if self.write_splits:
            root = abspath(image_root)
            rel = "\n".join(os.path.relpath(p, root) for p in train_entries.paths).encode("utf-8", "surrogateescape")
            meta = {"algorithm": P.SPLIT_ALGORITHM, "dataset": self.dataset_name, "protocol": self.protocol,
                    "seed": self.seed, "pool_size": len(train_entries.paths),
                    "pool_order": f"lines of {train_entries.list_path} (train / val_query / val_database only)",
                    "pool_fingerprint": hashlib.sha256(rel).hexdigest() + P.pool_fingerprint(train_entries.labels),
                    "counts": {k: int(len(v)) for k, v in idx.items()}, **self._validation_meta()}
            self._save_split_file(self.dataset_name, idx, meta)
        out = {"val_query": SplitSource(train.pool, idx["val_query"]),
               "val_database": SplitSource(train.pool, idx["val_database"])}
        if self.val_holdout:
            out["train"] = SplitSource(train.pool, idx["train"])
        return out

    def _list_overlap_report(self, entries) -> Dict[str, Any]:
        spec = self.protocol_spec
        norm = {k: set(e.paths) for k, e in entries.items()}
        rep: Dict[str, Any] = {k: len(e.paths) for k, e in entries.items()}
        q, db = norm.get("query", set()), norm.get("database", set())
        rep["query∩database"] = len(q & db)
        if rep["query∩database"]:
            warnings.warn(f"{self.display_name} protocol {spec.name!r}: {rep['query∩database']} query "
                          f"images also appear in the database list", stacklevel=3)
        if "train" in norm:
            tr = norm["train"]
            rep["train∩database"] = len(tr & db)
            rep["train∩query"] = len(tr & q)
            if rep["train∩query"]:
                warnings.warn(f"{self.display_name} protocol {spec.name!r}: {rep['train∩query']} train "
                              f"images also appear in the query list", stacklevel=3)
            if spec.train_in_database is True and rep["train∩database"] != len(tr):
                warnings.warn(f"{self.display_name} protocol {spec.name!r} expects train ⊂ database but "
                              f"{len(tr) - rep['train∩database']} train images are not in the database "
                              f"list", stacklevel=3)
            if spec.train_in_database is False and rep["train∩database"]:
                warnings.warn(f"{self.display_name} protocol {spec.name!r} expects train and database "
                              f"to be disjoint but {rep['train∩database']} images are in both",
                              stacklevel=3)
        return rep

    # ------------------------------------------------------------------ Lightning hooks
    def _transforms(self):
        train_tf = build_transform(self.train_transform, True, self.image_size, self.normalize)
        if self.views > 1:
            train_tf = MultiView(train_tf, self.views)
        return train_tf, build_transform(self.eval_transform, False, self.image_size, self.normalize)

    def setup(self, stage: Optional[str] = None) -> None:
        """Build every split's dataset (from the cached split sources); discards replacements."""
        if self._sources is None:
            self._sources = self._build_splits()
        if self.views > 1 and not is_random(self.train_transform):
            warnings.warn(f"{self.views} train views requested but train_transform={self.train_transform!r} "
                          f"is deterministic: the views will be identical (use e.g. 'cibhash')",
                          stacklevel=2)
        train_tf, eval_tf = self._transforms()
        s = self._sources
        # the protocol's own validation queries are ranked against its database: one dataset, two names
        self._aliases = {"val_database": "database"} if s.get("val_database") is s["database"] else {}
        self._datasets = {k: self._make_dataset(src, train_tf if k == "train" else eval_tf, k)
                          for k, src in s.items() if k not in self._aliases}
        self._originals = dict(self._datasets)
        for name in ("query", "database") + (_VALIDATION if self.has_validation else ()):
            if len(self.dataset(name)) == 0:
                raise ValueError(f"{self.display_name} protocol {self.protocol!r}: the {name} split is empty")

    @staticmethod
    def _make_dataset(src: SplitSource, transform, split: str) -> _SplitDataset:
        if isinstance(src.pool.images, np.ndarray):
            return ArrayDataset(src.pool.images, src.pool.labels, src.indices, transform, split)
        return ImageFileDataset(src.pool.images, src.pool.labels, src.indices, transform, split,
                                origins=src.pool.origins)

    # ------------------------------------------------------------------ splits and datasets
    @property
    def has_val_queries(self) -> bool:
        """The protocol has validation queries of its own."""
        return self.protocol_spec.has_val_queries

    @property
    def has_validation(self) -> bool:
        """There is a validation split: the protocol's own, or ``val_queries`` drawn from train."""
        spec = self.protocol_spec
        own = spec.has_val_queries and (spec.kind == "lists" or bool(self.sizes.get("val_query")))
        return own or bool(self.val_queries)

    def splits_for(self, stage: Optional[str]) -> Tuple[str, ...]:
        """The splits whose loaders a Lightning stage reads: ``fit`` = train + the validation splits,
        ``validate`` = the validation splits, ``test`` / ``predict`` = query and database (None = all)."""
        val = _VALIDATION if self.has_validation else ()
        table = {"fit": ("train",) + val, "validate": val, "test": ("query", "database"),
                 "predict": ("query", "database"), None: ("train", "query", "database") + val}
        if stage not in table:
            raise ValueError(f"unknown stage {stage!r}; expected one of fit, validate, test, predict")
        return table[stage]

    def _check_split(self, split: str) -> str:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        self._require_setup()
        if split in _VALIDATION and not self.has_validation:
            raise ValueError(f"{self.display_name} protocol {self.protocol!r} has no validation split, so there is "
                             f"no {split!r}; pass val_queries=N to draw N validation queries from the train split")
        return self._aliases.get(split, split)

    def dataset(self, split: str) -> Dataset:
        """The dataset the ``split`` loader serves (after ``setup()``). ``val_database`` is the
        ``database`` dataset itself when the protocol has its own validation queries."""
        return self._datasets[self._check_split(split)]

    def replace_dataset(self, split: str, dataset: Dataset) -> None:
        """Serve ``dataset`` for ``split`` until the next ``setup()`` (e.g. cached features). It must
        have the same length and item order (index i = the same image)."""
        key = self._check_split(split)
        if dataset is None:
            raise ValueError(f"replace_dataset({split!r}, None): pass a dataset")
        current = self._datasets[key]
        if len(dataset) != len(current):
            raise ValueError(f"replace_dataset({split!r}): the replacement has {len(dataset)} items, the split "
                             f"has {len(current)}; item i must stay the same image")
        self._datasets[key] = dataset

    def eval_dataset(self, split: str) -> _SplitDataset:
        """The split's items with the deterministic eval transform (for ``train`` too), read from the
        pool (unaffected by ``replace_dataset``)."""
        key = self._check_split(split)
        return self._make_dataset(self._sources[key], self._transforms()[1], split)

    def image(self, split: str, i: int) -> Image.Image:
        """The raw, untransformed RGB image of item ``i`` of ``split`` (read from the pool, so it works
        after ``replace_dataset``), e.g. for figures."""
        ds = self._originals[self._check_split(split)]
        if not -len(ds) <= i < len(ds):
            raise IndexError(f"index {i} out of range for the {split} split of size {len(ds)}")
        return ds.load_image(i % len(ds))

    @property
    def split_sizes(self) -> Dict[str, int]:
        self._require_setup()
        return {k: len(self.dataset(k)) for k in self.splits_for(None)}

    def _require_setup(self) -> None:
        if self._datasets is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() before asking for datasets or data loaders")

    # ------------------------------------------------------------------ loaders
    def _loader(self, dataset: Dataset, batch_size: int, persistent: bool, **kwargs) -> DataLoader:
        workers = 0 if getattr(dataset, "loads_in_process", False) else self.num_workers
        return DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=self.pin_memory,
                          persistent_workers=persistent and workers > 0, **kwargs)

    def _eval_loader(self, split: str) -> DataLoader:
        return self._loader(self.dataset(split), self.eval_batch_size, self.persistent_workers,
                            shuffle=False, drop_last=False)

    def _fit_epoch(self) -> int:
        """The epoch Lightning's fit loop is at (what it passes to ``set_epoch``; 0 without a trainer):
        Lightning creates the first iterator, and its workers prefetch indices, before that call."""
        # Not ``trainer.current_epoch``: on a resumed run it still names the finished epoch when the first iterator is
        # built (tests/test_datamodules_sampling.py::test_a_resumed_run_replays_the_uninterrupted_runs_epoch pins it).
        loop = getattr(getattr(self, "trainer", None), "fit_loop", None)
        try:
            return int(loop.epoch_progress.current.processed)
        except (AttributeError, TypeError, ValueError):
            return 0

    def _processes(self) -> Tuple[Optional[int], Optional[int]]:
        """``(world size, rank)`` of the trainer this datamodule is attached to (None = from
        ``torch.distributed``, or one process)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None, None
        return int(trainer.world_size), int(trainer.global_rank)

    def train_dataloader(self) -> DataLoader:
        """Shuffled train batches of ``batch_size`` per process. Under DDP with W processes, step s's
        batches of all ranks together are step s's batch of one process with ``batch_size × W``
        (``sampling.py``), so the run trains on the same sequence on any number of processes."""
        ds = self.dataset("train")
        world, rank = self._processes()
        generator = torch.Generator()
        sampler = EpochShuffleSampler(ds, self.seed, epoch=self._fit_epoch(), generator=generator,
                                      num_replicas=world, rank=rank, batch_size=self.batch_size)
        if len(ds) < sampler.global_batch_size:
            per = (f" × {sampler.num_replicas} processes = {sampler.global_batch_size}, one step's batch"
                   if sampler.num_replicas > 1 else "")
            raise ValueError(f"{self.display_name} protocol {self.protocol!r}: the train split has "
                             f"{len(ds)} images, fewer than batch_size={self.batch_size}{per}; "
                             f"with drop_last=True no batch would be produced. Lower data.batch_size.")
        # random augmentations seeded per (epoch, item), whoever reads it; datasets read in the main
        # process (cached features) draw from the process's RNG as before
        items = ds if getattr(ds, "loads_in_process", False) else EpochSeededItems(ds, sampler)
        return self._loader(items, self.batch_size, persistent=False, sampler=sampler, generator=generator,
                            drop_last=True)

    # ------------------------------------------------------------------ checkpoint state
    def _global_batch_size(self) -> int:
        world, _ = self._processes()
        return self.batch_size * (world or 1)

    def state_dict(self) -> Dict[str, Any]:
        """Saved in every checkpoint: the global batch (``batch_size × world size``) the run trained with."""
        return {"global_batch_size": self._global_batch_size()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """On resume: warn when the global batch differs from the checkpoint's, since the batch
        sequence from here on is then not the uninterrupted run's."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.state.fn != TrainerFn.FITTING:
            return  # test / predict from a checkpoint: no batch sequence to continue
        was, now = state_dict.get("global_batch_size"), self._global_batch_size()
        if was is not None and int(was) != now:
            world, _ = self._processes()
            world = world or 1
            fit = (f"set data.batch_size to {int(was) // world} to continue it" if int(was) % world == 0
                   else f"{int(was)} images cannot be split evenly over {world} processes")
            rank_zero_warn(f"the checkpoint was trained with a global batch of {int(was)} images per step, this run "
                           f"has {now} (data.batch_size={self.batch_size} × {world} process(es)): from here on it "
                           f"trains on other batches than the uninterrupted run; {fit}", category=UserWarning)

    def query_dataloader(self) -> DataLoader:
        return self._eval_loader("query")

    def database_dataloader(self) -> DataLoader:
        return self._eval_loader("database")

    def val_query_dataloader(self) -> DataLoader:
        """Validation queries (never the test queries); an error without a validation split."""
        return self._eval_loader("val_query")

    def val_database_dataloader(self) -> DataLoader:
        """The database the validation queries are ranked against."""
        return self._eval_loader("val_database")

    def val_dataloader(self) -> List[DataLoader]:
        """``[val_query_loader, val_database_loader]`` (0 = queries, 1 = database), or ``[]`` without a
        validation split (Lightning then skips validation)."""
        if not self.has_validation:
            return []
        return [self.val_query_dataloader(), self.val_database_dataloader()]

    def test_dataloader(self) -> List[DataLoader]:
        """``[query_loader, database_loader]`` (0 = queries, 1 = database)."""
        return [self.query_dataloader(), self.database_dataloader()]

    def predict_dataloader(self) -> List[DataLoader]:
        """``[query_loader, database_loader]``, as ``test_dataloader``."""
        return self.test_dataloader()

    def __repr__(self) -> str:
        k = "all" if self.top_k is None else self.top_k
        sizes = self.split_sizes if self._datasets is not None else "not set up"
        return (f"{type(self).__name__}(root={self.root!r}, protocol={self.protocol!r}, top_k={k}, "
                f"num_classes={self.num_classes}, splits={sizes})")


class FileHashDataModule(HashDataModule):
    """Base of the datasets read from image files (list datasets, Flickr25k).

    Args:
        list_dir: folder holding the list files; None = ``root``.
        strip_prefix: prefix removed from list paths (e.g. HashNet's absolute
            ``/home/caozhangjie/run-czj/dataset/coco/``) so they become relative to ``root``.
        check_images: ``first`` = stop at the first list entry whose image is missing,
            ``all`` = report every missing image at once, ``none`` = check when loading.
        **kwargs: see :class:`HashDataModule`.
    """

    default_train_transform: ClassVar[str] = "resize_crop_flip"
    default_eval_transform: ClassVar[str] = "resize_center_crop"

    def __init__(self, list_dir: Optional[str] = None, strip_prefix: Optional[str] = None,
                 check_images: str = "first", **kwargs):
        super().__init__(**kwargs)
        if check_images not in CHECK_IMAGES:
            raise ValueError(f"check_images must be one of {CHECK_IMAGES}, got {check_images!r}")
        self.check_images = check_images
        self.list_dir = list_dir
        self.strip_prefix = strip_prefix

    def _list_dir(self) -> str:
        return os.path.expanduser(self.list_dir) if self.list_dir else self.root

