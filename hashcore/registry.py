"""The method registry (timm-style): each method file registers its LightningModule with ``@register_method``.

Adding a method is one new file in ``lightning_modules/`` (with its ``paper_settings = MethodSettings(...)``):
:func:`discover` imports every module of the package, so the decorator runs and ``lightning fit --model <Class>``,
``hashbench compare --methods <name>`` and ``experiments/make_configs.py`` see the method without any other edit.
This module imports nothing but the standard library (the pure core must stay importable without Lightning).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Dict, List, TypeVar

T = TypeVar("T", bound=type)

_METHODS: Dict[str, type] = {}
_ALIASES: Dict[str, str] = {}


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def register_method(name: str, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
    """Class decorator: register a method under ``name`` (short, as in config file names) and ``aliases``.

    The class name itself is always an alias, so ``cibhash`` and ``CIBHash`` find the ``cib`` method.
    """
    def decorate(cls: T) -> T:
        key = _key(name)
        if key in _METHODS and _METHODS[key] is not cls:
            raise ValueError(f"method name {name!r} is registered twice: {_METHODS[key].__qualname__} and "
                             f"{cls.__qualname__}")
        _METHODS[key] = cls
        for alias in (*aliases, cls.__name__):
            _ALIASES[_key(alias)] = key
        cls.method_name = key
        return cls
    return decorate


def discover() -> None:
    """Import every module of ``lightning_modules`` so that each method registers itself."""
    package = importlib.import_module("lightning_modules")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"lightning_modules.{info.name}")


def method_names() -> List[str]:
    """Registered method names, in registration order after :func:`discover`."""
    discover()
    return list(_METHODS)


def method_classes() -> Dict[str, type]:
    """Every registered method class keyed by its class name (``{"HashNet": HashNet, ...}``), after :func:`discover`."""
    discover()
    return {cls.__name__: cls for cls in _METHODS.values()}


def resolve_method_name(name: str) -> str:
    """The registered name for ``name`` or one of its aliases; ``ValueError`` listing the choices otherwise."""
    discover()
    key = _key(name)
    key = _ALIASES.get(key, key)
    if key not in _METHODS:
        raise ValueError(f"unknown method {name!r}; registered methods: {', '.join(_METHODS)}")
    return key


def get_method(name: str) -> type:
    """The LightningModule class registered as ``name`` (or an alias)."""
    return _METHODS[resolve_method_name(name)]
