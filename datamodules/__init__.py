"""Hashing datamodules: one base DataModule, a thin class per dataset, and ``ImageList`` for list files.

Public API: ``CIFAR10``, ``MNIST``, ``BinarizedMNIST``, ``FashionMNIST``, ``Flickr25k``, ``ImageList`` and any dataset
class a module of this package defines (all subclasses of ``HashDataModule``, found by ``discover()``: no file lists
them), ``dataset_classes()``, ``describe()`` (one line per registered protocol), ``image_dataset()`` (a list
file or image folder as a dataset), the errors, plus the ``protocols`` and ``transforms`` modules.
Exports are lazy (PEP 562) so that importing ``datamodules.protocols`` does not import Lightning.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Optional

# the names that are not dataset classes; a dataset class (``datamodules.MNIST``, or one a new module defines) is
# found by discover(), so no file lists the datasets
_EXPORTS = {
    "HashDataModule": "base",
    "FileHashDataModule": "base",
    "image_dataset": "image_sources",
    "DatasetNotFoundError": "errors",
    "DatasetFormatError": "errors",
    "ProtocolSizeError": "errors",
    "UnsafePickleError": "safe_pickle",
    "SplitFileMismatchError": "split_files",
}

__all__ = sorted([*_EXPORTS, "describe", "discover", "dataset_classes"])


def discover() -> None:
    """Import every module of this package, so that each dataset class exists for short ``class_path`` names
    (jsonargparse only finds imported subclasses) and registers its protocols. Adding a dataset module is then
    one new file: nothing else lists it. Called where class paths are resolved (the Lightning CLI) and by
    :func:`describe`; plain ``import datamodules`` stays Lightning-free."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def describe(dataset: Optional[str] = None) -> str:
    """One line per registered protocol (all datasets, or one). Importing the dataset modules registers
    theirs; an ``ImageList`` registers its protocol when constructed."""
    discover()
    from .protocols import describe as _describe

    return _describe(dataset)


def dataset_classes() -> dict:
    """``{class name: class}`` of every DataModule class defined in this package (the datasets and their bases)."""
    discover()
    from .base import HashDataModule

    found, stack = {}, [HashDataModule]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith(f"{__name__}."):
            found.setdefault(cls.__name__, cls)
    return found


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name[:1].isupper() and name in dataset_classes():  # class names only: `from . import protocols` stays an import
        value = dataset_classes()[name]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(dataset_classes()))


if TYPE_CHECKING:  # pragma: no cover
    from .base import FileHashDataModule, HashDataModule  # noqa: F401
    from .cifar import CIFAR10  # noqa: F401
    from .errors import DatasetFormatError, DatasetNotFoundError, ProtocolSizeError  # noqa: F401
    from .image_sources import image_dataset  # noqa: F401
    from .flickr import Flickr25k  # noqa: F401
    from .image_list import ImageList  # noqa: F401
    from .mnist import MNIST, BinarizedMNIST, FashionMNIST  # noqa: F401
    from .split_files import SplitFileMismatchError  # noqa: F401
    from .safe_pickle import UnsafePickleError  # noqa: F401
