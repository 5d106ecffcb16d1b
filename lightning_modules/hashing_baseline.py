"""Hashing-Baseline (Moummad, Zaher, Rauch & Joly, arXiv 2509.14427, 2025): training-free codes from a strong frozen
backbone by PCA → random orthogonal rotation → threshold, as ``ilyassmoummad/hashing-baseline`` computes them
(``image/pca.py: compute_pca, ImageEncoderWithPCA``; ``image/get_model.py: get_buckethead``):

1. Features: the frozen backbone's embedding as it comes (DINOv2's normalised CLS token, DFN's image embedding);
   no L2 normalisation, no whitening.
2. PCA on the train split: ``torch.pca_lowrank(X, q=K, center=True, niter=2)`` (randomised, ``pca: lowrank``, the
   default) or the exact leading eigenvectors (``pca: exact``); ``z = (x − μ) V`` with μ the train mean.
3. A random orthogonal K × K matrix W (``nn.init.orthogonal_``: QR of a Gaussian matrix, columns signed by
   diag(R)), applied as ``nn.Linear(K, K, bias=False)``: ``u = z Wᵀ``.
4. Code bit = ``u > 0`` (here ``sign(u)`` with 0 → +1).

The official code draws W (and the PCA's random start) from the unseeded global RNG, a new W for each of its
``--n_runs 10`` evaluations; here both come from ``seed`` alone, so a run is reproducible on every machine and rank.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .closed_form import ClosedFormHashModule
from .itq import pca_directions
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method


def random_rotation(bits: int, seed: int) -> torch.Tensor:
    """(K, K) ``Wᵀ`` for ``nn.init.orthogonal_``'s W drawn from ``seed`` (so ``z @ rotation = z Wᵀ``)."""
    w = torch.empty(bits, bits, dtype=torch.float64)
    nn.init.orthogonal_(w, generator=torch.Generator().manual_seed(int(seed)))
    return w.T.contiguous()


def lowrank_directions(features: torch.Tensor, bits: int, seed: int) -> torch.Tensor:
    """(D, K) ``V[:, :K]`` of ``torch.pca_lowrank(features, q=K, center=True, niter=2)`` with its random start drawn
    from ``seed`` (computed on the CPU: the same numbers on every device)."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        _, _, v = torch.pca_lowrank(features.cpu(), q=bits, center=True, niter=2)
    return v[:, :bits].to(features.device)


@register_method("pcarr", aliases=("hashing_baseline", "pca_rr"))
class HashingBaseline(ClosedFormHashModule):
    """Args (besides :class:`HashModule`'s):
        pca: ``lowrank`` (the official code's randomised ``torch.pca_lowrank``, 2 power iterations) or ``exact``.
        seed: seed of the random rotation (and of ``pca_lowrank``'s random start).
    The default backbone is DINOv2 ViT-B/14 (LVD-142M) through timm, one of the official code's encoders.
    """

    paper_settings = MethodSettings(
        "Hashing-Baseline, ilyassmoummad/hashing-baseline@d894a14 (image/pca.py, get_model.py): frozen backbone, "
        "PCA (torch.pca_lowrank, q = K, niter 2), random orthogonal rotation, threshold at 0; batch 256; fitted "
        "in one pass over the train split",
        epochs=1, batch_size=256, val_every=1)

    def __init__(self, bits: int = 64, pca: Literal["lowrank", "exact"] = "lowrank", seed: int = 0,
                 backbone: str = "timm:vit_base_patch14_dinov2.lvd142m", **kwargs):
        super().__init__(bits=bits, backbone=backbone, **kwargs)
        if pca not in ("lowrank", "exact"):
            raise ValueError(f"model.pca must be 'lowrank' (the official code) or 'exact', got {pca!r}")
        self.register_pca_buffers(bits)
        self.register_buffer("rotation", random_rotation(bits, seed))

    def fit(self, features: torch.Tensor) -> None:
        if features.shape[0] < self.bits:
            raise ValueError(f"HashingBaseline needs at least model.bits={self.bits} train images to find "
                             f"{self.bits} principal directions, got {features.shape[0]}")
        mean = features.mean(0)
        if self.hparams.pca == "lowrank":
            p = lowrank_directions(features, self.bits, self.hparams.seed)
        else:
            p = pca_directions(features - mean, self.bits)
        self.mean.copy_(mean)
        self.projection.copy_(p)

    def hash_scores(self, x: torch.Tensor) -> torch.Tensor:
        return (((self.features(x).double() - self.mean) @ self.projection) @ self.rotation).float()
