"""CIBHash (Qiu et al., IJCAI 2021): contrastive information bottleneck hashing, unsupervised.

Official code ``zexuanqiu/CIBHash@4c896ee:model/CIBHash.py`` (docs/methods.md#cibhash): frozen VGG16 fc7 (dropout
live) → Linear(4096,1024) → ReLU → Linear(1024,K) → σ → sign(σ − 0.5) with an identity straight-through gradient;
loss = NT-Xent over the two augmented views' codes (τ 0.3) + β · symmetric KL between the views' Bernoulli
posteriors with a stop-gradient on the target view (β 1e-3); Adam 1e-3, batch 64.

Paper vs code: the paper describes stochastic Bernoulli codes b ~ Bernoulli(σ) during training; the official
code binarises deterministically. Default = code; ``stochastic=True`` = paper. Under DDP the codes of both
views are gathered from every rank with gradients, so the negatives are the global batch, as on one GPU.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch

from .base import HashModule, mlp_head
from hashcore.distributed import gather_with_grad
from hashcore.hash_layers import cib_binarize
from hashcore.losses import cib_kl, nt_xent
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method


@register_method("cib", aliases=("cibhash",))
class CIBHash(HashModule):
    """Args (besides :class:`HashModule`'s):
        temperature: NT-Xent temperature τ (official 0.3).
        beta: weight of the symmetric KL term (official 1e-3).
        stochastic: sample Bernoulli codes in training as the paper describes (official code: False).
        hidden_dim: width of the hidden layer of the hash MLP (official 1024).
        gather_negatives: under DDP use every rank's samples as negatives (the global batch, as on one GPU).
    """

    paper_settings = MethodSettings(
        "zexuanqiu/CIBHash@4c896ee (model/CIBHash.py, main.py): Adam 1e-3, batch 64, τ 0.3, β 1e-3, 60 epochs (≥ "
        "80 at 16 bits), validation every 20 epochs, best validation epoch kept",
        epochs=60, batch_size=64, val_every=20, select_on_validation=True, epochs_at_bits={16: 80})

    train_views = 2
    train_transform = "cibhash"
    min_batch_size = 2  # with one image the only other row is its positive: the loss is identically 0

    def __init__(self, bits: int = 64, temperature: float = 0.3, beta: float = 1e-3, stochastic: bool = False,
                 hidden_dim: int = 1024, gather_negatives: bool = True, backbone: str = "vgg16",
                 freeze: bool = True, optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam",
                 lr: float = 1e-3, weight_decay: float = 0.0, lr_step: Optional[int] = None, **kwargs):
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, lr_step=lr_step, **kwargs)
        self.head = mlp_head(self.backbone.out_dim, [hidden_dim], bits)

    def training_step(self, batch, batch_idx):
        views, _, _ = self.split_batch(batch)
        p1, p2 = (torch.sigmoid(self.hash_scores(v)) for v in views)
        b1, b2 = (cib_binarize(p, stochastic=self.hparams.stochastic) for p in (p1, p2))
        if self.hparams.gather_negatives:
            b1, b2 = gather_with_grad(b1), gather_with_grad(b2)
        contrastive = nt_xent(b1, b2, temperature=self.hparams.temperature)
        kl = cib_kl(p1, p2)  # a per-image mean: DDP's gradient average makes it the global mean
        loss = contrastive + self.hparams.beta * kl
        self.log_terms({"loss": loss, "contrastive": contrastive, "kl": kl}, batch_size=len(p1))
        return loss
