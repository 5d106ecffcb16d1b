"""``HashDataModule``: the one base DataModule (contract in docs/CONTRACTS.md): its arguments, the model -> data
hand-over and ``setup()``; ``FileHashDataModule`` adds the options of datasets read from image files.

What it does is in one file per job, mixed in here: drawing the splits and their split file (``split_builder.py``,
``split_files.py``), the table of split datasets (``split_datasets.py``), the loaders and the checkpoint state
(``loaders.py``). A subclass per dataset supplies where the data lives and how to read it:

* ``_load_pool()`` for protocols drawn from a pool (``pooled`` / ``official`` kinds), returning a
  :class:`~datamodules.pools.Pool`; the base draws the seeded splits, writes/verifies the split file and builds the
  datasets;
* or overrides ``_build_splits()`` entirely;
* list protocols (``lists`` kind) are handled from ``list_dir`` / ``image_root``;
* ``prepare_data()`` for downloads (rank 0 only, called by Lightning before ``setup``).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Union

import lightning as L
import torch
from torch.utils.data import Dataset

from . import protocols as P
from .datasets import _SplitDataset
from .lists import CHECK_IMAGES
from .loaders import SplitLoaders
from .pools import Pool, SplitSource  # noqa: F401 (re-exported: dataset modules of a951ebe import them from here)
from .split_builder import SplitBuilder
from .split_datasets import SplitDatasets
from .transforms import MultiView, build_transform, is_random, NORMALIZATIONS

from hashcore.retrieval_metrics.cut_offs import parse_top_k
from hashcore.splits import SPLITS, VALIDATION_SPLITS as _VALIDATION  # noqa: F401 (SPLITS re-exported)


def resolve_top_k(value: Optional[Union[int, str]], default: Optional[int]) -> Optional[int]:
    """``None`` -> protocol default; otherwise the cut-off as every option reads it (None = whole database)."""
    return default if value is None else parse_top_k(value, "the mAP cut-off data.top_k")


class HashDataModule(SplitBuilder, SplitDatasets, SplitLoaders, L.LightningDataModule):
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
        self._fill_datasets(*self._transforms())

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
