"""Hashing methods as LightningModules over a shared base; hash layers and losses are pure torch (``hashcore``).

Every method registers itself (``hashcore.registry``). This package finds them: :func:`discover` imports each of its
modules, and the look-ups by name below call it first, so a new method file needs no edit anywhere else. Classes are
exported here by name, lazily (``import lightning_modules`` alone imports no Lightning).
"""
import importlib
import pkgutil
from typing import Dict, List

from hashcore import registry

_BASE_EXPORTS = {"HashModule": "lightning_modules.base"}


def discover() -> None:
    """Import every module of this package, so that each method registers itself."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def method_names() -> List[str]:
    """Every method's registered name, in registration order."""
    discover()
    return list(registry.registered())


def method_classes() -> Dict[str, type]:
    """Every method class keyed by its class name (``{"HashNet": HashNet, ...}``)."""
    discover()
    return {cls.__name__: cls for cls in registry.registered().values()}


def resolve_method_name(name: str) -> str:
    """The registered name for ``name`` or one of its aliases; ``ValueError`` listing the choices otherwise."""
    discover()
    return registry.resolve(name)


def get_method(name: str) -> type:
    """The LightningModule class registered as ``name`` (or an alias)."""
    resolved = resolve_method_name(name)  # discovers first: registered() is a snapshot
    return registry.registered()[resolved]


def _exports() -> dict:
    return {**{name: getattr(importlib.import_module(module), name) for name, module in _BASE_EXPORTS.items()},
            **method_classes()}


def __getattr__(name):
    if name == "__all__":
        return sorted(_exports())
    if name in _BASE_EXPORTS:
        return getattr(importlib.import_module(_BASE_EXPORTS[name]), name)
    if name[:1].isupper():  # class names only: lower-case names are this package's submodules
        classes = _exports()
        if name in classes:
            return classes[name]
    raise AttributeError(f"module 'lightning_modules' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_exports()))
