"""ITQ — iterative quantization (Gong & Lazebnik, CVPR 2011; PAMI 2013), the classic data-dependent baseline.

Fitted in closed form on the train split, as the authors' ``ITQ.m``: centre the features (mean μ), project them on
the K leading principal directions P (V = (X − μ) P), then alternate ``B = sign(V R)`` and the orthogonal
Procrustes update ``R = U Wᵀ`` from the SVD ``Vᵀ B = U S Wᵀ`` (which minimises ‖B − V R‖_F over rotations), starting
from a random rotation, for 50 iterations. Codes: ``sign((x − μ) P R)``.

PCA directions are defined up to sign; each column of P is oriented so that its largest-magnitude entry is
positive, so the fit is reproducible. K may not exceed the feature dimension.
"""
from __future__ import annotations

import torch

from .closed_form import ClosedFormHashModule
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method


def pca_directions(centred: torch.Tensor, k: int) -> torch.Tensor:
    """(D, k) leading eigenvectors of the covariance of ``centred`` (N, D), sign-normalised (see module doc)."""
    cov = centred.T @ centred / max(1, centred.shape[0] - 1)
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    p = vectors[:, -k:].flip(1)
    pivot = p.abs().argmax(0)
    return p * torch.sign(p[pivot, torch.arange(k)])[None, :]


def itq_rotation(v: torch.Tensor, iterations: int, generator: torch.Generator) -> tuple[torch.Tensor, list[float]]:
    """The ITQ rotation for projected data ``v`` (N, K) and the quantisation loss ‖B − V R‖² before each update."""
    k = v.shape[1]
    r, _ = torch.linalg.qr(torch.randn(k, k, generator=generator, dtype=v.dtype))
    losses = []
    for _ in range(iterations):
        z = v @ r
        b = torch.where(z >= 0, 1.0, -1.0).to(v.dtype)
        losses.append(float(((b - z) ** 2).sum()))
        u, _, wt = torch.linalg.svd(v.T @ b)
        r = u @ wt
    return r, losses


@register_method("itq")
class ITQ(ClosedFormHashModule):
    """Args (besides :class:`HashModule`'s):
        iterations: alternating updates of B and R (the paper and ``ITQ.m``: 50).
        seed: seed of the initial random rotation.
    """

    paper_settings = MethodSettings(
        "PCA + 50 iterations of orthogonal rotation (Gong & Lazebnik, CVPR 2011, ITQ.m), fitted in one pass over "
        "the train split",
        epochs=1, batch_size=256, val_every=1)

    def __init__(self, bits: int = 64, iterations: int = 50, seed: int = 0, backbone: str = "vgg16", **kwargs):
        super().__init__(bits=bits, backbone=backbone, **kwargs)
        self.register_pca_buffers(bits)
        self.register_buffer("rotation", torch.eye(bits, dtype=torch.float64))
        self.quantization_loss: list[float] = []

    def fit(self, features: torch.Tensor) -> None:
        if features.shape[0] < self.bits:
            raise ValueError(f"ITQ needs at least model.bits={self.bits} train images to find {self.bits} principal "
                             f"directions, got {features.shape[0]}")
        mean = features.mean(0)
        p = pca_directions(features - mean, self.bits)
        g = torch.Generator().manual_seed(int(self.hparams.seed))
        r, self.quantization_loss = itq_rotation((features - mean) @ p, int(self.hparams.iterations), g)
        self.mean.copy_(mean)
        self.projection.copy_(p)
        self.rotation.copy_(r)

    def hash_scores(self, x: torch.Tensor) -> torch.Tensor:
        return (((self.features(x).double() - self.mean) @ self.projection) @ self.rotation).float()
