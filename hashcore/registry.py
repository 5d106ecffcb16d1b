"""The method registry (timm-style): each method class registers itself with ``@register_method``.

This module only holds what has registered so far and imports no method: the package holding the methods imports
its own modules before it answers a look-up by name, so a new method file (with its ``paper_settings =
MethodSettings(...)``) is seen everywhere with no other edit. Standard library only (the pure core stays importable
without Lightning).
"""
from __future__ import annotations

from typing import Callable, Dict, TypeVar

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


def registered() -> Dict[str, type]:
    """Every method registered so far, by registered name, in registration order."""
    return dict(_METHODS)


def resolve(name: str) -> str:
    """The registered name for ``name`` or one of its aliases, among the methods registered so far; ``ValueError``
    listing them otherwise."""
    key = _key(name)
    key = _ALIASES.get(key, key)
    if key not in _METHODS:
        raise ValueError(f"unknown method {name!r}; registered methods: {', '.join(_METHODS)}")
    return key
