"""Datasets of images outside any protocol (e.g. for ``hashbench encode``): a list file or an image folder.

``image_dataset(source, transform)`` returns an :class:`~datamodules.datasets.ImageFileDataset`
whose items are ``(transform(image), label, index)`` like every split's, and whose ``paths`` are the
absolute image paths in item order.
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional

import numpy as np
from PIL import Image

from .datasets import ImageFileDataset
from .errors import DatasetFormatError, abspath, not_found
from .lists import CHECK_IMAGES, LIST_ENCODING, check_images_exist, read_list_file


def _image_extensions() -> frozenset:
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def folder_images(folder: str) -> List[str]:
    """Every file under ``folder`` (recursively) whose extension PIL can open, sorted by path."""
    exts = _image_extensions()
    found = []
    for d, subdirs, files in os.walk(folder):
        subdirs.sort()
        found += [os.path.join(d, f) for f in files if os.path.splitext(f)[1].lower() in exts]
    return sorted(found)


def _num_classes_of(path: str) -> int:
    """Label columns of a list file: the 0/1 tokens that end its first entry."""
    with open(path, "r", encoding=LIST_ENCODING) as fh:
        for line in fh:
            toks = line.strip().split()
            if not toks or toks[0].startswith("#"):
                continue
            n = 0
            for t in reversed(toks[1:]):
                if t not in ("0", "1"):
                    break
                n += 1
            if n == 0:
                raise DatasetFormatError(f"{abspath(path)}: the first entry has no 0/1 label columns; pass "
                                         f"num_classes, or give an image folder instead of a list")
            return n
    raise DatasetFormatError(f"{abspath(path)}: the list is empty")


def image_dataset(source: str, transform: Optional[Callable], num_classes: Optional[int] = None,
                  image_root: Optional[str] = None, strip_prefix: Optional[str] = None,
                  check_images: str = "first", allow_outside_root: bool = False) -> ImageFileDataset:
    """Items ``(image, label, index)`` of a list file or of every image in a folder.

    Args:
        source: a list file (``<path> <0/1 labels>`` per line) or a folder of images (searched
            recursively, sorted by path).
        transform: applied to each RGB ``PIL.Image`` (e.g. the eval transform of
            ``datamodules.transforms.build_transform(name, False, size)``).
        num_classes: label columns of a list file (None = counted on its first entry); for a folder
            the width of the all-zero labels (None = 0: a folder has no labels).
        image_root: what list paths are relative to; None = the list's folder.
        strip_prefix: prefix removed from list paths first.
        check_images: ``first`` / ``all`` / ``none`` (list files; see ``check_images_exist``).
        allow_outside_root: read list entries whose image lies outside ``image_root`` (absolute paths,
            ``../``); off: such an entry is an error naming the line.
    """
    if check_images not in CHECK_IMAGES:
        raise ValueError(f"check_images must be one of {CHECK_IMAGES}, got {check_images!r}")
    source = os.path.expanduser(str(source))
    if os.path.isdir(source):
        paths = [abspath(p) for p in folder_images(source)]
        if not paths:
            raise not_found(f"images in the folder {abspath(source)}", source,
                            f"image files PIL can open ({', '.join(sorted(_image_extensions())[:8])}, ...)",
                            "the folder you pass", hint="Pass a folder that holds images, or a list file.")
        labels = np.zeros((len(paths), int(num_classes or 0)), dtype=np.uint8)
        origins = [os.path.relpath(p, abspath(source)) for p in paths]
    elif os.path.isfile(source):
        root = image_root if image_root is not None else os.path.dirname(abspath(source))
        ent = read_list_file(source, int(num_classes) if num_classes else _num_classes_of(source), root,
                             strip_prefix, allow_outside_root=allow_outside_root)
        check_images_exist(ent.paths, ent.origins, check_images, root, f"list {abspath(source)}")
        paths, labels, origins = ent.paths, ent.labels, ent.origins
    else:
        raise not_found("image list or folder", source, "a list file '<image path> <0/1 labels>' per line, or a "
                        "folder of images", "the path you pass")
    return ImageFileDataset(paths, labels, np.arange(len(paths), dtype=np.int64), transform,
                            split=os.path.basename(source.rstrip(os.sep)), origins=origins)
