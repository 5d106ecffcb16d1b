"""Flattened binary images held in memory, as the Bi-half autoencoder study reads MNIST: the official binarisation
and a dataset that serves a whole batch by one tensor index."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .datasets import _SplitDataset


def binarize_official(images: np.ndarray) -> torch.Tensor:
    """(N, 28, 28) uint8 → (N, 784) uint8 in {0, 1}, exactly as the official transform computes it in float32:
    ``ToTensor`` (/255), per-image min-max normalisation to [0, 1], ``torch.round`` (half to even).

    Source: ``Deep-Unsupervised-Image-Hashing@1cd671a:AutoEncoder/BiHalf.py`` (``img_transform``). On MNIST every
    image spans 0..255, so this is ``pixel >= 128``.
    """
    out = torch.empty(len(images), 28 * 28, dtype=torch.uint8)
    for start in range(0, len(images), 8192):  # float32 work in chunks: bounded memory
        t = torch.from_numpy(np.ascontiguousarray(images[start:start + 8192])).flatten(1).float().div(255)
        t = t - t.amin(dim=1, keepdim=True)
        t = t / t.amax(dim=1, keepdim=True)
        out[start:start + len(t)] = torch.round(t * (1 - 0) + 0).to(torch.uint8)
    return out


def keep_batch(batch):
    """collate_fn: a batch that ``__getitems__`` already built passes as is; per-item lists (a replacement dataset
    without ``__getitems__``) are collated as usual."""
    if isinstance(batch, tuple):
        return batch
    return torch.utils.data.default_collate(batch)


class BinaryVectorDataset(_SplitDataset):
    """A split of flattened binary images held in memory: items ``(x float32 (784,), label, index)``.

    ``__getitems__`` serves a whole batch by one tensor index (the DataLoader calls it with the batch's indices), so a
    step costs no per-item work; ``loads_in_process`` makes the loader run in the main process.
    """

    loads_in_process = True

    def __init__(self, vectors: torch.Tensor, images: np.ndarray, labels: np.ndarray, indices: np.ndarray,
                 split: str = ""):
        super().__init__(labels, indices, None, split)
        self.vectors = vectors[torch.from_numpy(self.pool_indices)]  # this split's rows, uint8 0/1
        self.images = images  # the raw pool, for load_image

    def __getitem__(self, i: int):
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {self.split or 'split'} of size {len(self)}")
        return self.vectors[i].float(), self.labels[i], i

    def __getitems__(self, indices: Sequence[int]):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.vectors[idx].float(), self.labels[idx], idx

    def load_image(self, i: int) -> Image.Image:
        return Image.fromarray(np.asarray(self.images[self.pool_indices[i]])).convert("RGB")

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"hashbench-binary-vector-split-v1")
        h.update(f"n{len(self)}".encode())
        h.update(self.vectors.numpy().tobytes())
        self._hash_labels(h)
        return h.hexdigest()
