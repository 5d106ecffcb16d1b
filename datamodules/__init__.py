"""Hashing datamodules: one base DataModule, a thin class per dataset, and ``ImageList`` for list files.

Public API: ``CIFAR10``, ``MNIST``, ``BinarizedMNIST``, ``FashionMNIST``, ``Flickr25k``, ``ImageList`` (all subclasses of
``HashDataModule``), ``describe()`` (one line per registered protocol), ``image_dataset()`` (a list
file or image folder as a dataset), the errors, plus the ``protocols`` and ``transforms`` modules.
Exports are lazy (PEP 562) so that importing ``datamodules.protocols`` does not import Lightning.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Optional

_EXPORTS = {
    "HashDataModule": "base",
    "FileHashDataModule": "base",
    "CIFAR10": "cifar",
    "MNIST": "mnist",
    "FashionMNIST": "mnist",
    "BinarizedMNIST": "mnist",
    "Flickr25k": "flickr",
    "ImageList": "image_list",
    "image_dataset": "image_sources",
    "DatasetNotFoundError": "errors",
    "DatasetFormatError": "errors",
    "ProtocolSizeError": "errors",
    "UnsafePickleError": "safe_pickle",
    "SplitFileMismatchError": "split_files",
}

__all__ = sorted([*_EXPORTS, "describe", "discover"])


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


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


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
