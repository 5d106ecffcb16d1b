"""Draws a HashDataModule's splits (from a pool, or from list files) and records each draw in a split file.

A mixin of :class:`~datamodules.base.HashDataModule`: it reads the datamodule's arguments (protocol, seed, sizes,
``val_queries``, ``split_dir``) and its subclass hooks (``_load_pool``, ``_split_variant``, ``_image_root``,
``_list_dir``); the split file format is :mod:`datamodules.split_files`.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Any, Dict, Sequence

import numpy as np

from . import protocols as P
from .errors import abspath, not_found
from .lists import check_images_exist, list_format, read_list_file
from .pools import Pool, SplitSource
from .split_files import SPLIT_ALGORITHM, pool_fingerprint, save_or_verify_splits, split_file_name

from hashcore.splits import VALIDATION_SPLITS as _VALIDATION


class SplitBuilder:
    """``_build_splits()``: the split sources of the datamodule's protocol (subclasses may override it)."""

    def _build_splits(self) -> Dict[str, SplitSource]:
        if self.protocol_spec.kind == "lists":
            return self._splits_from_lists()
        return self._splits_from_pool(self._load_pool())

    # ------------------------------------------------------------------ split construction
    def _save_split_file(self, name: str, splits: Dict[str, np.ndarray], meta: Dict[str, Any]) -> None:
        path = os.path.join(self.split_dir, split_file_name(name, self.protocol_spec, self.seed, self.sizes,
                                                            self.val_queries, self.val_holdout))
        try:
            save_or_verify_splits(path, splits, meta)
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
                "algorithm": SPLIT_ALGORITHM, "dataset": self.dataset_name, "variant": variant,
                "protocol": spec.name,
                "seed": self.seed, "sizes": self.sizes, "pool_size": int(labels.shape[0]),
                "pool_order": pool.order, "top_k": spec.top_k,
                "pool_fingerprint": pool_fingerprint(labels.astype(np.uint8), pool.is_test),
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
            meta = {"algorithm": SPLIT_ALGORITHM, "dataset": self.dataset_name, "protocol": self.protocol,
                    "seed": self.seed, "pool_size": len(train_entries.paths),
                    "pool_order": f"lines of {train_entries.list_path} (train / val_query / val_database only)",
                    "pool_fingerprint": hashlib.sha256(rel).hexdigest() + pool_fingerprint(train_entries.labels),
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

