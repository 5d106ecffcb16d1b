"""``ImageList``: any list-file dataset (MS-COCO, NUS-WIDE, ImageNet-100, your own) from init args only.

A list file has one image per line, ``<image path> <l_1> ... <l_C>`` with 0/1 labels (the format of
swuxyj/DeepHash-pytorch@ab14068:utils/tools.py ``ImageList`` and thuml/HashNet@85387b8:pytorch/src/
data_list.py). A new dataset is one YAML with a ``data:`` block, e.g. ``experiments/data/coco.yaml``::

    data:
      class_path: datamodules.ImageList
      init_args:
        name: coco
        root: data/coco
        num_classes: 80
        top_k: 5000
        lists: {train: [train.txt, train_coco.txt], query: [test.txt, test_coco.txt],
                database: [database.txt, database_coco.txt]}
        strip_prefix: /home/caozhangjie/run-czj/dataset/coco/
        lists_from: "HashNet lists: https://github.com/thuml/HashNet ..."

Constructing one registers its protocol (``datamodules.describe()`` then lists it).
"""

from __future__ import annotations

import re
from typing import ClassVar, Dict, List, Mapping, Optional, Set, Union

from . import protocols as P
from .base import FileHashDataModule, resolve_top_k

LIST_SPLITS = ("train", "query", "database", "val_query")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REGISTERED: Set[str] = set()  # dataset names whose protocols an ImageList registered


def _candidates(split: str, value) -> tuple:
    names = [value] if isinstance(value, str) else list(value or [])
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"ImageList lists.{split} must be a file name or a non-empty list of candidate file "
                         f"names (the first that exists is read), got {value!r}")
    return tuple(n.strip() for n in names)


def list_protocol(name: str, protocol: str, num_classes: int, top_k: Union[int, str, None],
                  lists: Mapping[str, Union[str, List[str]]], lists_from: str = "",
                  train_in_database: Optional[bool] = None, description: str = "") -> P.Protocol:
    """Check the init args of :class:`ImageList` and build its ``lists`` protocol."""
    for what, value in (("name", name), ("protocol", protocol)):
        if not isinstance(value, str) or not _NAME.match(value):
            raise ValueError(f"ImageList {what} must be a short name of letters, digits, '_', '.' or '-' (it is "
                             f"used in split file names), got {value!r}")
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or int(num_classes) < 1:
        raise ValueError(f"ImageList num_classes must be the number of label columns (>= 1), got {num_classes!r}")
    if not isinstance(lists, Mapping):
        raise ValueError(f"ImageList lists must be a mapping {{train: ..., query: ..., database: ..., "
                         f"[val_query: ...]}} of list file names, got {lists!r}")
    unknown = sorted(set(lists) - set(LIST_SPLITS))
    missing = [s for s in ("query", "database") if not lists.get(s)]
    if unknown or missing:
        raise ValueError(f"ImageList lists: {'unknown split(s) ' + ', '.join(unknown) if unknown else ''}"
                         f"{'; ' if unknown and missing else ''}"
                         f"{'missing ' + ' and '.join(missing) if missing else ''}. Give query and database "
                         f"(and train, val_query; train absent = the database list), e.g. "
                         f"{{train: train.txt, query: test.txt, database: database.txt}}")
    if train_in_database not in (True, False, None):
        raise ValueError(f"ImageList train_in_database must be true, false or null (not checked), "
                         f"got {train_in_database!r}")
    files = {s: _candidates(s, lists[s]) for s in LIST_SPLITS if lists.get(s)}
    return P.Protocol(
        protocol, name, "lists", int(num_classes), resolve_top_k(top_k, None),
        description or f"list files {', '.join(f'{s}: {c[0]}' for s, c in files.items())}",
        lists_from or "(lists_from not given)", lists=files, train_in_database=train_in_database)


class ImageList(FileHashDataModule):
    """A multi-label list-file dataset (train / query / database lists), configured by init args.

    Args:
        name: dataset name (split files, messages, ``describe()``), e.g. ``coco``.
        root: image root: list paths (after ``strip_prefix``) are relative to it.
        num_classes: number of 0/1 label columns per line.
        top_k: the mAP cut-off of the protocol (``all`` = the whole database).
        lists: ``{train: ..., query: ..., database: ..., [val_query: ...]}``: each a file name in
            ``list_dir`` or a list of candidate names (the first that exists is read); train absent =
            the database list; a ``val_query`` list is ranked against the database list.
        protocol: the protocol's name (free; e.g. ``hashnet``).
        list_dir: folder holding the lists; None = ``root``.
        lists_from: where the lists and images come from, shown in every missing-file error.
        strip_prefix: prefix removed from the list paths (HashNet's lists hold absolute paths of the
            authors' machine).
        check_images: ``first`` / ``all`` / ``none``, see :class:`~datamodules.base.FileHashDataModule`.
        train_in_database: True = train ⊂ database, False = disjoint, None = not checked (a warning
            when the lists break the rule; nothing is dropped).
        description: one line for ``describe()``; None = the list file names.
        **kwargs: see :class:`~datamodules.base.HashDataModule` (batch_size, seed, val_queries,
            allow_outside_root, ...).
    """

    list_where_from: ClassVar[str] = ""

    def __init__(self, name: str, root: str, num_classes: int, top_k: Union[int, str],
                 lists: Dict[str, Union[str, List[str]]], protocol: str = "lists",
                 list_dir: Optional[str] = None, lists_from: str = "", strip_prefix: Optional[str] = None,
                 check_images: str = "first", train_in_database: Optional[bool] = None,
                 description: Optional[str] = None, **kwargs):
        spec = list_protocol(name, protocol, num_classes, top_k, lists, lists_from, train_in_database,
                             description or "")
        builtin = P.available(name) and name not in _REGISTERED
        if builtin:
            raise ValueError(f"ImageList name {name!r} is a built-in dataset with its own protocols "
                             f"({', '.join(P.available(name))}); give the list dataset another name")
        P.register(spec)
        _REGISTERED.add(name)
        self._spec = spec
        self.dataset_name = self.display_name = name
        self.list_where_from = spec.source
        super().__init__(root=root, protocol=protocol, top_k=top_k, list_dir=list_dir, strip_prefix=strip_prefix,
                         check_images=check_images, **kwargs)

    def _protocol_spec(self, name: str) -> P.Protocol:
        return self._spec
