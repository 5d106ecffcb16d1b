"""Load dataset pickles (CIFAR-10 batches, ``mnist.pkl.gz``) without running code from them.

A pickle can name any importable callable (``os.system``, ``builtins.open`` ...) and the unpickler
calls it. The official files hold only dicts, lists, tuples, bytes/str, ints and numpy arrays, so
:class:`DataOnlyUnpickler` resolves nothing but the numpy array/dtype/scalar constructors (and
``_codecs.encode``, which protocol-2 pickles use for bytes); any other global is refused with
:class:`UnsafePickleError` before anything is called.
"""

from __future__ import annotations

import importlib
import pickle
from typing import IO, Any

from .errors import DatasetFormatError, abspath

# (module, name) as written in pickles made by numpy 1.x (numpy.core) or 2.x (numpy._core)
_NUMPY_CORE = {("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")}
_ALLOWED = ({(f"numpy.{core}.{sub}", name) for core in ("core", "_core") for sub, name in _NUMPY_CORE}
            | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})


class UnsafePickleError(DatasetFormatError):
    """A dataset pickle names a callable that plain data files never contain."""


def _resolve(module: str, name: str) -> Any:
    """The allowed callable, imported from whichever numpy layout is installed (never numpy.core's
    deprecated shim when numpy._core exists)."""
    if module.startswith(("numpy.core.", "numpy._core.")):
        sub = module.split(".", 2)[2]
        for candidate in (f"numpy._core.{sub}", f"numpy.core.{sub}"):
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise AttributeError(f"numpy has no {module}.{name}")
    return getattr(importlib.import_module(module), name)


class DataOnlyUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that admits only the globals of plain numpy/builtin data."""

    def __init__(self, file: IO[bytes], path: str, expected: str, encoding: str = "ASCII"):
        super().__init__(file, encoding=encoding)
        self._path, self._expected = path, expected

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"{abspath(self._path)}: refused to load '{module}.{name}' from this pickle: the official "
                f"files hold only plain data (dicts, lists, bytes, ints, numpy arrays), so this file is not "
                f"one of them (crafted or foreign?); nothing from it was run. Replace it with the original "
                f"file. Expected {self._expected}.")
        return _resolve(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{abspath(self._path)}: refused a persistent reference in this pickle; "
                                f"nothing from it was run. Expected {self._expected}.")


def load_data_pickle(file: IO[bytes], path: str, expected: str, encoding: str = "ASCII") -> Any:
    """Unpickle ``file`` (opened from ``path``) admitting plain data only; see the module docstring."""
    return DataOnlyUnpickler(file, path, expected, encoding=encoding).load()
