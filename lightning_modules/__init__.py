"""Hashing methods as LightningModules over a shared base; hash layers and losses are pure torch.

Every method registers itself (``hashcore.registry``). Exports are lazy so that
``import hashcore.losses`` never imports Lightning.
"""
from importlib import import_module

_EXPORTS = {
    "HashModule": "lightning_modules.base",
    "CIBHash": "lightning_modules.cibhash",
    "BiHalfNet": "lightning_modules.bihalf",
    "DCH": "lightning_modules.dch",
    "GreedyHash": "lightning_modules.greedyhash",
    "LSH": "lightning_modules.lsh",
    "ITQ": "lightning_modules.itq",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightning_modules' has no attribute {name!r}")
