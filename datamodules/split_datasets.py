"""The table of a HashDataModule's split datasets: which splits a stage reads, ``dataset()`` /
``replace_dataset()``, deterministic eval copies and raw images.

A mixin of :class:`~datamodules.base.HashDataModule`; ``setup()`` fills the table from the split sources.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .datasets import ArrayDataset, ImageFileDataset, _SplitDataset
from .pools import SplitSource

from hashcore.splits import SPLITS, VALIDATION_SPLITS as _VALIDATION


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


class SplitDatasets:
    """Serves ``train``, ``query``, ``database``, ``val_query``, ``val_database`` (see HashDataModule)."""

    train_set = _split_property("train")
    query_set = _split_property("query")
    database_set = _split_property("database")
    val_query_set = _split_property("val_query")
    val_database_set = _split_property("val_database")

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

    def _fill_datasets(self, train_tf, eval_tf) -> None:
        """Build every split's dataset from the split sources (discards replacements)."""
        s = self._sources
        # the protocol's own validation queries are ranked against its database: one dataset, two names
        self._aliases = {"val_database": "database"} if s.get("val_database") is s["database"] else {}
        self._datasets = {k: self._make_dataset(src, train_tf if k == "train" else eval_tf, k)
                          for k, src in s.items() if k not in self._aliases}
        self._originals = dict(self._datasets)
        for name in ("query", "database") + (_VALIDATION if self.has_validation else ()):
            if len(self.dataset(name)) == 0:
                raise ValueError(f"{self.display_name} protocol {self.protocol!r}: the {name} split is empty")
