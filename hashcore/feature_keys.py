"""Feature-cache keys: fingerprints of an encoder's weights and of a split's inputs, and the cache key over them.

An entry is valid for one key; these functions decide when a cached split must be rebuilt, so their output must not
change between releases (tests/test_layout_compat.py pins it).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Dict

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset


def module_fingerprint(module: nn.Module) -> str:
    """sha256 over the architecture (``repr``) and every state_dict entry's name, dtype, shape and bytes."""
    h = hashlib.sha256(repr(module).encode())
    for name, tensor in module.state_dict().items():
        t = tensor.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        t = t.to("cpu").contiguous()
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the raw 16-bit words
            t = t.view(torch.int16)
        if t.numel():
            h.update(memoryview(t.numpy()).cast("B"))
    return h.hexdigest()


def array_fingerprint(*arrays: Any) -> str:
    """sha256 of arrays' dtypes, shapes and bytes (split indices, labels)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a))
        h.update(f"{a.dtype}|{a.shape}".encode())
        h.update(memoryview(a).cast("B") if a.size else b"")
    return h.hexdigest()


def cache_key(fields: Dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the key fields."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


#: key fields that describe the split's inputs; every other field is part of the entry's identity
CONTENT_FIELDS = ("data_fingerprint", "num_items")


def dataset_fingerprint(dataset: Dataset) -> str:
    """What the split's items are made of: the dataset's own ``fingerprint()`` (image bytes or file path/size/mtime,
    labels), else the pool indices and labels."""
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return str(own())
    labels = getattr(dataset, "labels", None)
    return array_fingerprint(np.asarray(getattr(dataset, "pool_indices", np.arange(len(dataset)))),
                             labels if labels is not None else np.zeros(0))


def encoder_fields(encoder: nn.Module, name: str = "") -> Dict[str, Any]:
    """Key fields describing an encoder: its name and a fingerprint of its architecture and weights."""
    return {"encoder": name or type(encoder).__name__, "encoder_fingerprint": module_fingerprint(encoder)}

