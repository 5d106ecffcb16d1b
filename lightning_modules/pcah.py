"""PCAH — PCA hashing, the "PCA-Direct" baseline of Gong & Lazebnik (CVPR 2011, the authors' ITQ package) and of
cisip-FIRe (``functions/loss/pca.py``): centre the train features (mean μ), keep the K leading principal directions
P, and take the sign: ``code = sign((x − μ) P)``. ITQ is this followed by a learned rotation.

The directions are those of :func:`lightning_modules.itq.pca_directions` (each oriented so that its
largest-magnitude entry is positive, so the fit is reproducible). K may not exceed the feature dimension.
"""
from __future__ import annotations

import torch

from .closed_form import ClosedFormHashModule
from .itq import pca_directions
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method


@register_method("pcah", aliases=("pca", "pca_hashing"))
class PCAH(ClosedFormHashModule):
    """Args: those of :class:`HashModule`; nothing else to choose."""

    paper_settings = MethodSettings(
        "PCA + sign (PCAH, the PCA-Direct baseline of Gong & Lazebnik's ITQ code; CISiPLab/cisip-FIRe@e8826c4 "
        'functions/loss/pca.py), fitted in one pass over the train split',
        epochs=1, batch_size=256, val_every=1)

    def __init__(self, bits: int = 64, backbone: str = "vgg16", **kwargs):
        super().__init__(bits=bits, backbone=backbone, **kwargs)
        self.register_pca_buffers(bits)

    def fit(self, features: torch.Tensor) -> None:
        if features.shape[0] < self.bits:
            raise ValueError(f"PCAH needs at least model.bits={self.bits} train images to find {self.bits} principal "
                             f"directions, got {features.shape[0]}")
        mean = features.mean(0)
        self.mean.copy_(mean)
        self.projection.copy_(pca_directions(features - mean, self.bits))

    def hash_scores(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.features(x).double() - self.mean) @ self.projection).float()
