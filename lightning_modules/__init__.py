"""Hashing methods as LightningModules over a shared base; hash layers and losses are pure torch.

Every method registers itself (``hashcore.registry``) and is exported here by its class name, lazily and
from the registry (a new method file needs no edit here); lazy so that ``import hashcore.losses`` never
imports Lightning.
"""
from importlib import import_module

_BASE_EXPORTS = {"HashModule": "lightning_modules.base"}


def _exports() -> dict:
    from hashcore.registry import method_classes
    return {**{name: getattr(import_module(module), name) for name, module in _BASE_EXPORTS.items()}, **method_classes()}


def __getattr__(name):
    if name == "__all__":
        return sorted(_exports())
    if name in _BASE_EXPORTS:
        return getattr(import_module(_BASE_EXPORTS[name]), name)
    if name[:1].isupper():  # class names only: lower-case names are this package's submodules
        classes = _exports()
        if name in classes:
            return classes[name]
    raise AttributeError(f"module 'lightning_modules' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_exports()))
