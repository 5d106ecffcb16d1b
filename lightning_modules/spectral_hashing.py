"""SH — spectral hashing (Weiss, Torralba & Fergus, NIPS 2008), as the authors' MATLAB ``trainSH.m`` /
``compressSH.m`` compute it (docs/methods.md names the copies read and where cisip-FIRe's port differs):

1. PCA: the ``npca = min(K, D)`` leading eigenvectors P of ``cov(X)``; ``X ← X P`` without removing the mean (the
   box below absorbs it).
2. Fit a uniform distribution: the bounding box ``mn = min(X) − eps``, ``mx = max(X) + eps`` per PCA direction
   (MATLAB's ``eps`` = 2.2e-16; the 5th/95th percentiles computed first in ``trainSH.m`` are overwritten).
3. Enumerate the 1-D eigenfunctions of the box: along direction d, modes 1 … ``maxMode_d − 1`` with
   ``maxMode_d = ceil((K + 1) R_d / max R)``, ``R = mx − mn``, plus the all-zero mode; eigenvalue
   ``Σ (m_d π / R_d)²``; sort ascending (MATLAB's sort is stable), drop the first (the constant mode) and keep the
   next K modes.
4. Code: bit i = ``sign(Π_d sin(π/2 + ω_id (x_d − mn_d)))`` with ``ω_i = modes_i π / R`` (``compressSH.m``: bit =
   U > 0; here U = 0 → +1 as everywhere in the suite).

Each column of P is oriented so that its largest-magnitude entry is positive (reproducible; flipping a direction
only flips the odd-mode bits, so Hamming distances are unchanged).
"""
from __future__ import annotations

import math

import torch

from .closed_form import ClosedFormHashModule
from .itq import pca_directions
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method

#: MATLAB's ``eps`` (the spacing of doubles at 1.0), added to the box in ``trainSH.m``
MATLAB_EPS = 2.220446049250313e-16


def spectral_modes(ranges: torch.Tensor, bits: int) -> torch.Tensor:
    """(bits, npca) mode numbers of the ``bits`` smallest non-zero eigenvalues of the box with side ``ranges``."""
    npca = len(ranges)
    max_mode = torch.ceil((bits + 1) * ranges / ranges.max()).long().tolist()
    modes = torch.zeros(sum(max_mode) - npca + 1, npca, dtype=ranges.dtype)  # row 0: the constant mode
    row = 1
    for d, top in enumerate(max_mode):
        modes[row:row + top - 1, d] = torch.arange(1, top, dtype=ranges.dtype)
        row += top - 1
    eigenvalues = ((modes * (math.pi / ranges)) ** 2).sum(1)
    order = torch.sort(eigenvalues, stable=True).indices
    return modes[order[1:bits + 1]]


def spectral_scores(projected: torch.Tensor, mn: torch.Tensor, mx: torch.Tensor, modes: torch.Tensor) -> torch.Tensor:
    """``compressSH.m``'s U (N, bits): the eigenfunction values of PCA-projected rows ``projected`` (N, npca)."""
    omegas = modes * (math.pi / (mx - mn))  # (bits, npca)
    x = (projected - mn)[:, None, :]        # (N, 1, npca)
    return torch.sin(x * omegas[None] + math.pi / 2).prod(-1)


@register_method("sh", aliases=("spectral_hashing", "spech"))
class SpectralHashing(ClosedFormHashModule):
    """Args: those of :class:`HashModule`; ``trainSH.m`` has no other parameter."""

    paper_settings = MethodSettings(
        "spectral hashing (Weiss, Torralba & Fergus, NIPS 2008), the authors' trainSH.m/compressSH.m: PCA, "
        'bounding box, the K smallest analytical eigenfunctions; fitted in one pass over the train split',
        epochs=1, batch_size=256, val_every=1)

    def __init__(self, bits: int = 64, backbone: str = "vgg16", **kwargs):
        super().__init__(bits=bits, backbone=backbone, **kwargs)
        dim = self.backbone.out_dim
        npca = min(bits, dim)
        self.register_buffer("projection", torch.eye(dim, npca, dtype=torch.float64))
        self.register_buffer("mn", torch.zeros(npca, dtype=torch.float64))
        self.register_buffer("mx", torch.ones(npca, dtype=torch.float64))
        self.register_buffer("modes", torch.zeros(bits, npca, dtype=torch.float64))

    def fit(self, features: torch.Tensor) -> None:
        npca = self.projection.shape[1]
        if features.shape[0] < 2:
            raise ValueError(f"SpectralHashing needs at least 2 train images to fit, got {features.shape[0]}")
        p = pca_directions(features - features.mean(0), npca)  # eigs(cov(X)): cov centres
        x = features @ p                                       # "no need to remove the mean"
        mn, mx = x.min(0).values - MATLAB_EPS, x.max(0).values + MATLAB_EPS
        self.projection.copy_(p)
        self.mn.copy_(mn)
        self.mx.copy_(mx)
        self.modes.copy_(spectral_modes(mx - mn, self.bits))

    def hash_scores(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.features(x).double() @ self.projection
        return spectral_scores(projected, self.mn, self.mx, self.modes).float()
