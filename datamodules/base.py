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

import os
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Union

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from . import protocols as P
from .datasets import ArrayDataset, ImageFileDataset, _SplitDataset
from .errors import abspath, not_found
from .lists import CHECK_IMAGES, check_images_exist, list_format, read_list_file
from .transforms import MultiView, build_transform, is_random, NORMALIZATIONS


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
    """``None`` -> protocol default; ``-1`` / ``"all"`` -> ``None`` (whole database); ``k > 0`` -> k."""
    if value is None:
        return default
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("all", "-1", "full", "none"):
            return None
        try:
            value = int(v)
        except ValueError:
            raise ValueError(f"top_k must be a positive int, -1 or 'all', got {value!r}") from None
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"top_k must be a positive int, -1 or 'all', got {value!r}")
    value = int(value)
    if value == -1:
        return None
    if value <= 0:
        raise ValueError(f"top_k must be a positive int, -1 or 'all', got {value!r}")
    return value


class HashDataModule(L.LightningDataModule):
    """Base DataModule for image hashing: ``train`` / ``query`` / ``database`` (/ ``val_query``) splits.

    Every item is ``(image, label, index)``: image tensor ``3xSxS`` (a list of ``views`` tensors for
    the train set when ``views > 1``), float32 multi-hot label, int64 position in its split.

    Args:
        root: dataset directory (downloads go here; split files go to ``<root>/splits``).
        protocol: protocol name (see ``datamodules.protocols.describe()``); None = dataset default.
        batch_size: train batch size (train loader: shuffled, ``drop_last=True``).
        eval_batch_size: batch size of the query/database loaders; None = ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: seed of the split draw and of the train loader's shuffling generator.
        image_size: output side S of every transform (224 in the papers).
        train_transform: train transform name (``resize``, ``resize_crop_flip``, ``cibhash``,
            ``resize_center_crop``); None = the model's paper augmentation (its ``train_transform``
            attribute, read in ``setup()``), else the dataset default.
        eval_transform: eval transform name (``resize``, ``resize_center_crop``); None = default.
        views: augmented views per train image; None = ask the model
            (``trainer.lightning_module.train_views``, 1 without a trainer).
        normalize: ``imagenet`` (ImageNet mean/std) or ``none`` (values in [0, 1]).
        top_k: mAP cut-off override: None = the protocol's default, -1 or ``all`` = whole database.
        scale: multiply every protocol split size (e.g. 0.01 for a subset; at least 1 per unit).
        query_size: override the protocol's query size (per class for per-class protocols).
        train_size: override the train size (per class for per-class protocols).
        database_size: cap the database size (per class for per-class protocols).
        val_query_size: override the number of validation queries (protocols that have them).
        split_dir: where split files are written/verified; None = ``<root>/splits``.
        write_splits: write (or verify) the split index file.
        pin_memory: DataLoader ``pin_memory``; None = True when CUDA is available.
        persistent_workers: keep workers alive between epochs (only when ``num_workers > 0``).
    """

    dataset_name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    default_protocol: ClassVar[str] = ""
    default_train_transform: ClassVar[str] = "resize"
    default_eval_transform: ClassVar[str] = "resize"
    # list protocols: where the standard lists / images come from (for error messages)
    list_where_from: ClassVar[str] = ""

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
        split_dir: Optional[str] = None,
        write_splits: bool = True,
        pin_memory: Optional[bool] = None,
        persistent_workers: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.root = os.path.expanduser(str(root))
        self.protocol_spec: P.Protocol = P.get_protocol(self.dataset_name, protocol or self.default_protocol)
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
        self.seed = int(seed)
        self.image_size = int(image_size)
        self._train_transform_arg = train_transform
        self.train_transform = train_transform or self.default_train_transform  # resolved in setup()
        self.eval_transform = eval_transform or self.default_eval_transform
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.normalize = normalize
        # fail early on unknown transform names (cheap: builds nothing heavy)
        build_transform(self.train_transform, True, self.image_size, normalize)
        build_transform(self.eval_transform, False, self.image_size, normalize)
        if views is not None and int(views) < 1:
            raise ValueError(f"views must be >= 1 or None, got {views}")
        self._views_arg = None if views is None else int(views)
        self.views: Optional[int] = self._views_arg  # resolved in setup()
        self.split_dir = split_dir or os.path.join(self.root, "splits")
        self.write_splits = bool(write_splits)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.check_images = "first"  # file datasets expose it as an init arg
        self.split_file: Optional[str] = None
        self.split_report: Optional[Dict[str, Any]] = None  # list protocols: sizes and overlaps
        self.class_names: Optional[List[str]] = None
        self.train_set: Optional[_SplitDataset] = None
        self.query_set: Optional[_SplitDataset] = None
        self.database_set: Optional[_SplitDataset] = None
        self.val_query_set: Optional[_SplitDataset] = None
        self._sources: Optional[Dict[str, SplitSource]] = None
        self._train_loader_calls = 0

    # ------------------------------------------------------------------ subclass hooks
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

    # ------------------------------------------------------------------ split construction
    def _splits_from_pool(self, pool: Pool) -> Dict[str, SplitSource]:
        spec = self.protocol_spec
        labels = np.asarray(pool.labels)
        if labels.ndim != 2 or labels.shape[1] != self.num_classes:
            raise ValueError(f"{self.display_name}: pool labels have shape {labels.shape}, expected "
                             f"(N, {self.num_classes})")
        self.class_names = list(pool.class_names) if pool.class_names is not None else None
        idx = P.split_pool(spec, labels, self.seed, self.sizes, pool.is_test, self.class_names)
        if self.write_splits:
            variant = self._split_variant()
            name = self.dataset_name + (f"-{variant}" if variant else "")
            path = os.path.join(self.split_dir, P.split_file_name(name, spec, self.seed, self.sizes))
            meta = {
                "algorithm": P.SPLIT_ALGORITHM, "dataset": self.dataset_name, "variant": variant,
                "protocol": spec.name,
                "seed": self.seed, "sizes": self.sizes, "pool_size": int(labels.shape[0]),
                "pool_order": pool.order, "top_k": spec.top_k,
                "pool_fingerprint": P.pool_fingerprint(labels.astype(np.uint8), pool.is_test),
                "counts": {k: int(len(v)) for k, v in idx.items()},
            }
            try:
                P.save_or_verify_splits(path, idx, meta)
                self.split_file = path
            except OSError as e:
                warnings.warn(f"could not write split file {path} ({e}); the splits are still "
                              f"deterministic for seed {self.seed} but are not saved for auditing",
                              stacklevel=2)
        return {k: SplitSource(pool, v) for k, v in idx.items()}

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
            ent = read_list_file(path, self.num_classes, image_root, getattr(self, "strip_prefix", None))
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
        return sources

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
    def _resolve_views(self) -> int:
        if self._views_arg is not None:
            return self._views_arg
        trainer = getattr(self, "trainer", None)
        module = getattr(trainer, "lightning_module", None) if trainer is not None else None
        if module is not None:
            v = int(getattr(module, "train_views", 1) or 1)
            if v < 1:
                raise ValueError(f"{type(module).__name__}.train_views must be >= 1, got {v}")
            return v
        return 1

    def _resolve_train_transform(self) -> str:
        """Explicit argument, else the model's declared paper augmentation, else the dataset default."""
        if self._train_transform_arg:
            return self._train_transform_arg
        trainer = getattr(self, "trainer", None)
        module = getattr(trainer, "lightning_module", None) if trainer is not None else None
        wanted = getattr(module, "train_transform", None) if module is not None else None
        return wanted or self.default_train_transform

    def setup(self, stage: Optional[str] = None) -> None:
        self.train_transform = self._resolve_train_transform()
        views = self._resolve_views()
        if self._sources is None:
            self._sources = self._build_splits()
        if views > 1 and not is_random(self.train_transform):
            warnings.warn(f"{views} train views requested but train_transform={self.train_transform!r} "
                          f"is deterministic: the views will be identical (use e.g. 'cibhash')",
                          stacklevel=2)
        self.views = views
        train_tf = build_transform(self.train_transform, True, self.image_size, self.normalize)
        if views > 1:
            train_tf = MultiView(train_tf, views)
        eval_tf = build_transform(self.eval_transform, False, self.image_size, self.normalize)
        s = self._sources
        self.train_set = self._make_dataset(s["train"], train_tf, "train")
        self.query_set = self._make_dataset(s["query"], eval_tf, "query")
        self.database_set = self._make_dataset(s["database"], eval_tf, "database")
        vq = s.get("val_query")
        self.val_query_set = (self._make_dataset(vq, eval_tf, "val_query")
                              if vq is not None and len(vq.indices) else None)
        for name in ("query", "database"):
            if len(getattr(self, f"{name}_set")) == 0:
                raise ValueError(f"{self.display_name} protocol {self.protocol!r}: the {name} split is empty")

    @staticmethod
    def _make_dataset(src: SplitSource, transform, split: str) -> _SplitDataset:
        if isinstance(src.pool.images, np.ndarray):
            return ArrayDataset(src.pool.images, src.pool.labels, src.indices, transform, split)
        return ImageFileDataset(src.pool.images, src.pool.labels, src.indices, transform, split,
                                origins=src.pool.origins)

    @property
    def has_val_queries(self) -> bool:
        return self.protocol_spec.has_val_queries

    @property
    def split_sizes(self) -> Dict[str, int]:
        self._require_setup()
        out = {"train": len(self.train_set), "query": len(self.query_set), "database": len(self.database_set)}
        if self.val_query_set is not None:
            out["val_query"] = len(self.val_query_set)
        return out

    def _require_setup(self) -> None:
        if self.train_set is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() before asking for data loaders")

    # ------------------------------------------------------------------ loaders
    def _loader_kwargs(self, batch_size: int) -> Dict[str, Any]:
        return dict(batch_size=batch_size, num_workers=self.num_workers, pin_memory=self.pin_memory,
                    persistent_workers=self.persistent_workers and self.num_workers > 0)

    def _eval_loader(self, ds) -> DataLoader:
        return DataLoader(ds, shuffle=False, drop_last=False, **self._loader_kwargs(self.eval_batch_size))

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        if len(self.train_set) < self.batch_size:
            raise ValueError(f"{self.display_name} protocol {self.protocol!r}: the train split has "
                             f"{len(self.train_set)} images, fewer than batch_size={self.batch_size}; "
                             f"with drop_last=True no batch would be produced. Lower batch_size.")
        gen = torch.Generator().manual_seed(self.seed + self._train_loader_calls)
        self._train_loader_calls += 1
        return DataLoader(self.train_set, shuffle=True, drop_last=True, generator=gen,
                          **self._loader_kwargs(self.batch_size))

    def query_dataloader(self) -> DataLoader:
        self._require_setup()
        return self._eval_loader(self.query_set)

    def database_dataloader(self) -> DataLoader:
        self._require_setup()
        return self._eval_loader(self.database_set)

    def val_query_dataloader(self) -> DataLoader:
        """Validation queries, or the test queries for protocols without a validation split."""
        self._require_setup()
        return self._eval_loader(self.val_query_set if self.val_query_set is not None else self.query_set)

    def val_dataloader(self) -> List[DataLoader]:
        """``[val_query_loader, database_loader]`` (0 = queries, 1 = database)."""
        return [self.val_query_dataloader(), self.database_dataloader()]

    def test_dataloader(self) -> List[DataLoader]:
        """``[query_loader, database_loader]`` (0 = queries, 1 = database)."""
        return [self.query_dataloader(), self.database_dataloader()]

    def __repr__(self) -> str:
        k = "all" if self.top_k is None else self.top_k
        sizes = self.split_sizes if self.train_set is not None else "not set up"
        return (f"{type(self).__name__}(root={self.root!r}, protocol={self.protocol!r}, top_k={k}, "
                f"num_classes={self.num_classes}, splits={sizes})")


class FileHashDataModule(HashDataModule):
    """Base of the datasets read from image files (NUS-WIDE, MS-COCO, Flickr25k).

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


# LightningCLI / jsonargparse resolve a short ``class_path`` (``CIFAR10``) only among subclasses that
# are already imported. Importing the thin dataset modules here (after the base classes exist, so
# the circular import is safe) makes ``from datamodules.base import HashDataModule`` enough for short
# names, while ``import datamodules`` / ``datamodules.protocols`` stay Lightning-free (lazy exports).
from . import cifar, coco, flickr, mnist, nuswide  # noqa: E402,F401
