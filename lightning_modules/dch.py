"""DCH — Deep Cauchy Hashing (Cao et al., CVPR 2018), supervised and multi-label aware.

Two variants (METHODS.md §3):
- ``variant="paper"`` (default, as the issue asks and as the DeepHash-pytorch port does): Cauchy cross-entropy
  on d = K/2·(1 − cos(h_i, h_j)) with balance weights |S|/|S₁|, |S|/|S₀|, plus λ · Cauchy quantisation loss
  log(1 + d(|h|, 1)/γ); γ 20, λ 0.1; AlexNet with all layers trained, no tanh; RMSprop lr 1e-5, wd 1e-5,
  batch 128.
- ``variant="thulab"``: the official TensorFlow code (thulab/DeepHash): tanh outputs, squared Euclidean
  distance, its balance weights, quantisation q_lambda·mean((|u| − 1)²) with q_lambda 0; its optimiser
  (SGD momentum 0.9, lr 5e-3 — γ 30 per the maintainer for the paper's numbers — hash layer lr ×10)
  lives in ``experiments/*_dch_thulab.yaml``.
Codes are sign(h) in both variants (tanh does not change the sign).
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from .base import HashModule
from .losses import dch_loss


class DCH(HashModule):
    """Trains on Resize 256 → RandomCrop 224 + flip (DeepHash-pytorch; thulab: 227 crops of 256).

    Args (besides :class:`HashModule`'s):
        gamma: Cauchy scale γ (port 20; the maintainer's paper setting 30).
        lam: weight λ of the Cauchy quantisation loss (paper variant).
        variant: ``paper`` or ``thulab`` (official TF code).
        q_lambda: weight of the thulab quantisation loss (official default 0).
    """

    train_transform = "resize_crop_flip"

    def __init__(self, bits: int = 48, gamma: float = 20.0, lam: float = 0.1,
                 variant: Literal["paper", "thulab"] = "paper", q_lambda: float = 0.0,
                 backbone: str = "alexnet", freeze: bool = False,
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "rmsprop", lr: float = 1e-5,
                 weight_decay: float = 1e-5, lr_step: Optional[int] = None, **kwargs):
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, lr_step=lr_step, **kwargs)
        self.head = nn.Linear(self.backbone.out_dim, bits)

    def hash_scores(self, x: torch.Tensor) -> torch.Tensor:
        h = super().hash_scores(x)
        return torch.tanh(h) if self.hparams.variant == "thulab" else h

    def training_step(self, batch, batch_idx):
        (images,), labels, _ = self.split_batch(batch)
        terms = dch_loss(self.hash_scores(images), labels, gamma=self.hparams.gamma, lam=self.hparams.lam,
                         variant=self.hparams.variant, q_lambda=self.hparams.q_lambda)
        self.log_terms(terms, batch_size=len(images))
        return terms["loss"]
