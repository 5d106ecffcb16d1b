"""LSH — locality-sensitive hashing by random projections (Charikar, STOC 2002), the classic data-independent
baseline: ``code = sign((x − μ) W)`` with ``W ~ N(0, 1)`` (D × K) and μ the mean of the train features.

The projection is drawn from ``seed`` alone (not the global RNG), so the same seed gives the same hash function on
every machine and rank; fitting only computes μ on the train split.
"""
from __future__ import annotations

import torch

from .closed_form import ClosedFormHashModule
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method


@register_method("lsh")
class LSH(ClosedFormHashModule):
    """Args (besides :class:`HashModule`'s): seed: seed of the Gaussian projection W."""

    paper_settings = MethodSettings(
        "random Gaussian projections of the centred features (Charikar, STOC 2002), fitted in one pass over the "
        "train split",
        epochs=1, batch_size=256, val_every=1)

    def __init__(self, bits: int = 64, seed: int = 0, backbone: str = "vgg16", **kwargs):
        super().__init__(bits=bits, backbone=backbone, **kwargs)
        dim = self.backbone.out_dim
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("projection", torch.randn(dim, bits, generator=g, dtype=torch.float64))

    def fit(self, features: torch.Tensor) -> None:
        self.mean.copy_(features.mean(0))

    def hash_scores(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.features(x).double() - self.mean) @ self.projection).float()
