"""List files ``<relative image path> <l_1> ... <l_C>`` (DeepHash-pytorch ``ImageList``, thulab, HashNet)
and image-existence checks."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from .errors import DatasetFormatError, DatasetNotFoundError, abspath

CHECK_IMAGES = ("first", "all", "none")
_MAX_LISTED = 20


def list_format(num_classes: int, image_root: str) -> str:
    return (f"a text file with one image per line: '<image path relative to {abspath(image_root)}> "
            f"<{num_classes} space-separated 0/1 labels>', e.g. 'images/0001.jpg "
            f"{' '.join(['0', '1'] + ['0'] * (num_classes - 2))}'")


@dataclass
class ListEntries:
    paths: List[str]          # absolute image paths
    labels: np.ndarray        # (N, C) uint8 multi-hot
    origins: List[str]        # "<list file>:<line>"
    list_path: str


def warn_unlabeled(where: str, labels: np.ndarray) -> int:
    """Warn once about the rows of ``labels`` with no label at all; returns how many there are.

    Such rows are relevant to no query (relevance = a shared label), so as queries they score AP 0
    and as database items they only push relevant items down: both lower mAP.
    """
    labels = np.asarray(labels)
    n = int((labels.reshape(len(labels), -1).sum(1) == 0).sum()) if len(labels) else 0
    if n:
        warnings.warn(f"{where}: {n} of {len(labels)} rows have no label; they are never relevant to any query "
                      f"and lower mAP. Remove them or check the label columns", stacklevel=3)
    return n


def _is_bit(tok: str) -> bool:
    return tok in ("0", "1")


#: the encoding list files are read with: UTF-8, and a byte-order mark at the start (Windows editors write
#: one) is dropped instead of becoming part of the first image path
LIST_ENCODING = "utf-8-sig"

HASHNET_PREFIX = "/home/caozhangjie/run-czj/dataset/coco/"


def under_root(path: str, root: str) -> bool:
    """``path`` lies inside the folder ``root`` (lexically, after normalising ``..``; symlinks inside the
    root may point anywhere, as data roots often link to shared storage)."""
    path, root = os.path.normpath(abspath(path)), os.path.normpath(abspath(root))
    return os.path.commonpath([path, root]) == root


def outside_root_error(where: str, entry: str, full: str, root: str, more: int = 0,
                       option: str = "data.allow_outside_root") -> DatasetFormatError:
    """The error for a list entry whose image lies outside the image root (``more`` = further such lines)."""
    if os.path.isabs(entry):
        what = f"the image path {entry!r} is an absolute path outside the image root {abspath(root)}"
        fix = (f" Lists written on another machine hold its absolute paths (HashNet's start with "
               f"{HASHNET_PREFIX!r}): pass strip_prefix=<that prefix> to make them relative to the image root.")
    else:
        what = f"the image path {entry!r} resolves to {full}, outside the image root {abspath(root)}"
        fix = ""
    others = f" ({more} more line(s) of this list point outside the root too.)" if more else ""
    return DatasetFormatError(
        f"{where}: {what}. List paths must lie under the image root.{others}{fix} Fix the list or the root, or "
        f"set {option}=true to read images outside the root on purpose.")


def read_list_file(path: str, num_classes: int, image_root: str,
                   strip_prefix: Optional[str] = None, warn_if_unlabeled: bool = True,
                   allow_outside_root: bool = False) -> ListEntries:
    """Parse a list file; every problem is a :class:`DatasetFormatError` naming file and line.
    Rows with no label at all are counted and warned about once (``warn_if_unlabeled``). An entry whose
    image lies outside ``image_root`` (an absolute path, or ``..`` leading out) is an error unless
    ``allow_outside_root``."""
    path = abspath(path)
    fmt = list_format(num_classes, image_root)
    paths, labels, origins = [], [], []
    outside = []  # (line, entry, resolved path) of images outside the root
    with open(path, "r", encoding=LIST_ENCODING, errors="strict") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            toks = line.split()
            where = f"{path}:{lineno}"
            if len(toks) < num_classes + 1:
                n_bits = sum(_is_bit(t) for t in toks[1:])
                raise DatasetFormatError(
                    f"{where}: expected an image path and {num_classes} labels but found "
                    f"{len(toks) - 1} value(s) after the path ({n_bits} of them 0/1). Expected {fmt}. "
                    f"Line: {line[:200]!r}")
            lab, head = toks[-num_classes:], toks[:-num_classes]
            bad = [t for t in lab if not _is_bit(t)]
            if bad:
                raise DatasetFormatError(
                    f"{where}: labels must be 0 or 1, found {bad[0]!r}. Expected {fmt}. "
                    f"Line: {line[:200]!r}")
            if len(head) > 1 and _is_bit(head[-1]):
                n = sum(1 for _ in toks[1:] if _is_bit(_))
                raise DatasetFormatError(
                    f"{where}: found {n} label columns, expected {num_classes} (is this list for "
                    f"another label set or protocol?). Expected {fmt}.")
            rel = " ".join(head)
            if strip_prefix and rel.startswith(strip_prefix):
                rel = rel[len(strip_prefix):]
            full = os.path.normpath(rel if os.path.isabs(rel) else os.path.join(abspath(image_root), rel))
            if not allow_outside_root and not under_root(full, image_root):
                outside.append((where, rel, full))
            paths.append(full)
            labels.append([int(t) for t in lab])
            origins.append(where)
    if outside:
        raise outside_root_error(*outside[0], image_root, more=len(outside) - 1)
    if not paths:
        raise DatasetFormatError(f"{path}: the list is empty. Expected {fmt}.")
    labels = np.asarray(labels, dtype=np.uint8)
    if warn_if_unlabeled:
        warn_unlabeled(path, labels)
    return ListEntries(paths, labels, origins, path)


def check_images_exist(paths: Sequence[str], origins: Sequence[str], mode: str, image_root: str,
                       what: str, report_path: Optional[str] = None,
                       hint: str = "") -> None:
    """Raise :class:`DatasetNotFoundError` for missing images.

    ``mode``: ``"first"`` stops at the first missing image, ``"all"`` lists every missing image
    (the full list is also written to ``report_path`` when given), ``"none"`` checks nothing here
    (a missing image then fails when it is loaded, naming its list entry).
    """
    if mode not in CHECK_IMAGES:
        raise ValueError(f"check_images must be one of {CHECK_IMAGES}, got {mode!r}")
    if mode == "none":
        return
    missing = []
    for p, o in zip(paths, origins):
        if not os.path.isfile(p):
            missing.append((p, o))
            if mode == "first":
                break
    if not missing:
        return
    root_txt = f"Images are looked up under the image root {abspath(image_root)}."
    absolute = [p for p, _ in missing if not abspath(p).startswith(abspath(image_root) + os.sep)]
    if absolute:
        root_txt += (" Some entries are absolute paths from another machine (HashNet lists start "
                     "with '/home/caozhangjie/run-czj/dataset/coco/'): pass strip_prefix=<that "
                     "prefix> to make them relative to the image root.")
    if mode == "first":
        p, o = missing[0]
        raise DatasetNotFoundError(
            f"{what}: image not found: {p} (list entry {o}). {root_txt} Nothing is skipped: fix the "
            f"image root or the list. Pass check_images='all' to report every missing image at once."
            f"{(' ' + hint) if hint else ''}")
    written = ""
    if report_path:
        try:
            os.makedirs(os.path.dirname(report_path) or ".", exist_ok=True)
            with open(report_path, "w") as fh:
                fh.writelines(f"{o}\t{p}\n" for p, o in missing)
            written = f" The full list is in {report_path}."
        except OSError:
            pass
    shown = "\n".join(f"  {o}: {p}" for p, o in missing[:_MAX_LISTED])
    more = f"\n  ... and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
    raise DatasetNotFoundError(
        f"{what}: {len(missing)} of {len(paths)} images not found.{written} {root_txt}\n{shown}{more}"
        f"{(chr(10) + hint) if hint else ''}")
