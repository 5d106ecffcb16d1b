"""DCH — Deep Cauchy Hashing (Cao et al., CVPR 2018), supervised and multi-label aware.

Two variants (docs/methods.md#dch):
- ``variant="paper"`` (default, as the swuxyj/DeepHash-pytorch@ab14068:DCH.py port does): Cauchy cross-entropy on
  d = K/2·(1 − cos(h_i, h_j)) with balance weights |S|/|S₁|, |S|/|S₀|, plus λ · Cauchy quantisation loss
  log(1 + d(|h|, 1)/γ); γ 20, λ 0.1; AlexNet with all layers trained, no tanh; RMSprop lr 1e-5, wd 1e-5,
  batch 128.
- ``variant="thulab"``: the official TensorFlow code (thulab/DeepHash@9907613:DeepHash/model/dch/dch.py): tanh
  outputs, squared Euclidean distance, its balance weights, quantisation q_lambda·mean((|u| − 1)²) with
  q_lambda 0; its optimiser (momentum SGD, lr 5e-3 and γ 30 per the maintainer for the paper's numbers, lr
  multipliers 1×/2× on conv1–fc7 weights/biases and 10×/20× on the hash layer's, ×0.1 every 10,000 steps) lives in
  ``experiments/cifar_dch_thulab.yaml``.
Codes are sign(h) in both variants (tanh does not change the sign). Under DDP the pairwise loss is computed over
the global batch (outputs and labels gathered with gradients), so W GPUs × B/W images equal one GPU × B.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from .base import HashModule
from hashcore.distributed import gather_with_grad
from hashcore.losses import dch_loss
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method


@register_method("dch")
class DCH(HashModule):
    """Trains on Resize 256 → RandomCrop 224 + flip (DeepHash-pytorch; thulab: 227 crops of 256).

    Args (besides :class:`HashModule`'s):
        gamma: Cauchy scale γ (port 20; the maintainer's paper setting 30).
        lam: weight λ of the Cauchy quantisation loss (paper variant).
        variant: ``paper`` or ``thulab`` (official TF code).
        q_lambda: weight of the thulab quantisation loss (official default 0).
    """

    paper_settings = MethodSettings(
        "swuxyj/DeepHash-pytorch@ab14068 (DCH.py, the paper's loss): AlexNet fully trained, RMSprop 1e-5, wd "
        '1e-5, batch 128, γ 20, λ 0.1, 150 epochs, evaluation every 5',
        epochs=150, batch_size=128, val_every=5)

    train_transform = "resize_crop_flip"
    min_batch_size = 2  # a pairwise loss
    supervised = True

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
        u, labels = gather_with_grad(self.hash_scores(images)), gather_with_grad(labels)
        terms = dch_loss(u, labels, gamma=self.hparams.gamma, lam=self.hparams.lam,
                         variant=self.hparams.variant, q_lambda=self.hparams.q_lambda)
        self.log_terms(terms, batch_size=len(images))
        return terms["loss"]
