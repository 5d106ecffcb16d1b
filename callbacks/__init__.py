"""Retrieval evaluation: exact metrics (pure torch) and the Lightning callback that logs them.

Exports are lazy so that ``import hashcore.retrieval_metrics`` never imports Lightning.
"""
from importlib import import_module

_EXPORTS = {"RetrievalEvaluation": "callbacks.retrieval", "FeatureCache": "callbacks.feature_cache"}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'callbacks' has no attribute {name!r}")
