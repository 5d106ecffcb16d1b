"""Hashing datamodules: one base DataModule and a thin class per dataset.

Public API: ``CIFAR10``, ``NUSWIDE``, ``Flickr25k``, ``COCO``, ``MNIST``, ``FashionMNIST`` (all
subclasses of ``HashDataModule``), plus the ``protocols`` and ``transforms`` registries. Exports are
lazy (PEP 562) so that importing ``datamodules.protocols`` does not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "HashDataModule": "base",
    "FileHashDataModule": "base",
    "CIFAR10": "cifar",
    "MNIST": "mnist",
    "FashionMNIST": "mnist",
    "NUSWIDE": "nuswide",
    "COCO": "coco",
    "Flickr25k": "flickr",
    "DatasetNotFoundError": "errors",
    "DatasetFormatError": "errors",
    "ProtocolSizeError": "errors",
    "SplitFileMismatchError": "protocols",
}

__all__ = sorted(_EXPORTS)


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
    from .coco import COCO  # noqa: F401
    from .errors import DatasetFormatError, DatasetNotFoundError, ProtocolSizeError  # noqa: F401
    from .flickr import Flickr25k  # noqa: F401
    from .mnist import MNIST, FashionMNIST  # noqa: F401
    from .nuswide import NUSWIDE  # noqa: F401
    from .protocols import SplitFileMismatchError  # noqa: F401
