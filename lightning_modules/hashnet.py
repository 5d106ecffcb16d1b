"""HashNet (Cao et al., ICCV 2017): weighted pairwise cross-entropy on tanh(β·h), β grown by continuation.

Official code ``thuml/HashNet@85387b8`` (docs/methods.md#hashnet):
- ``pytorch/src/network.py: AlexNetFc/ResNetFc``: backbone → Linear(D, K) (weights N(0, 0.01), bias 0) →
  tanh(β·h); ``iter_num`` counts training forwards and every 200 of them β = (1 + 0.005·iter_num)^0.5.
- ``pytorch/src/loss.py: pairwise_loss`` (hashcore/losses.py: hashnet_loss): pairs between two
  independently drawn batches of 36 (here the first and second half of a batch of 72), similar pairs weighted by
  ``class_num``, dot products scaled by α = 10/K, log-sum replaced by its asymptote above 15.
- ``pytorch/src/train.py``: SGD lr (README: 3e-4), momentum 0.9, Nesterov, wd 5e-4, hash layer ×10,
  lr ×0.5 every 2,000 iterations, 10,000 iterations (an iteration schedule: ``max_steps`` in its ``paper_settings``).
β here is a function of the optimiser step (``global_step``), so a resumed run continues the same continuation.
Paper vs code: ``weighting="paper"`` gives eq. 2's |S|/|S1|, |S|/|S0| weights; ``pairs="all"`` takes every pair of
the batch (swuxyj/DeepHash-pytorch@ab14068:HashNet.py). Under DDP the pairs are taken over the global batch.
"""
from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from torch import nn

from .base import HashModule
from hashcore.distributed import gather_with_grad
from hashcore.losses import hashnet_loss
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method


@register_method("hashnet")
class HashNet(HashModule):
    """Args (besides :class:`HashModule`'s):
        alpha: scale of the dot products in the sigmoid (official ``sigmoid_param`` 10/K; None = 10/bits).
        class_num: weight of similar pairs (official ``--class_num``, README 1.0).
        threshold: above it log(1 + e^d) is taken as d (official 15).
        weighting: ``official`` (class_num) or ``paper`` (|S|/|S1|, |S|/|S0|).
        pairs: ``halves`` (first half × second half of the batch, official) or ``all`` (every pair of the batch).
        beta_step, beta_gamma, beta_power: β = (1 + beta_gamma·n)^beta_power with n the number of training steps
            rounded down to a multiple of beta_step (official 200, 0.005, 0.5).
    """

    paper_settings = MethodSettings(
        "thuml/HashNet@85387b8 (pytorch/src/train.py, loss.py, network.py): AlexNet fully trained, SGD lr 3e-4 "
        "(README), momentum 0.9, Nesterov, wd 5e-4, hash layer ×10, lr ×0.5 every 2,000 iterations, batch 2×36 "
        "paired across halves, α 10/K, class_num 1, β = (1 + 0.005·t)^0.5 every 200 iterations, 10,000 iterations",
        epochs=-1, batch_size=72, val_every=5, max_steps=10000)

    train_transform = "resize_crop_flip"
    min_batch_size = 2
    supervised = True

    def __init__(self, bits: int = 48, alpha: Optional[float] = None, class_num: float = 1.0, threshold: float = 15.0,
                 weighting: Literal["official", "paper"] = "official", pairs: Literal["halves", "all"] = "halves",
                 beta_step: int = 200, beta_gamma: float = 0.005, beta_power: float = 0.5,
                 backbone: str = "alexnet", freeze: bool = False,
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd", lr: float = 3e-4,
                 weight_decay: float = 5e-4, momentum: float = 0.9, nesterov: bool = True,
                 lr_step: Optional[int] = 2000, lr_decay: float = 0.5,
                 lr_step_interval: Literal["epoch", "step"] = "step", head_lr_multiplier: float = 10.0, **kwargs):
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, momentum=momentum, nesterov=nesterov, lr_step=lr_step,
                         lr_decay=lr_decay, lr_step_interval=lr_step_interval,
                         head_lr_multiplier=head_lr_multiplier, **kwargs)
        if beta_step < 1:
            raise ValueError(f"beta_step must be a positive number of steps, got {beta_step!r} (option model.beta_step)")
        self.even_batch_size = pairs == "halves"
        self.head = nn.Linear(self.backbone.out_dim, bits)
        nn.init.normal_(self.head.weight, 0.0, 0.01)
        nn.init.zeros_(self.head.bias)

    def beta(self, step: int) -> float:
        """β at optimiser step ``step`` (0-based): the official forward counter is step + 1, and β is refreshed
        whenever that counter is a multiple of beta_step."""
        hp = self.hparams
        n = (step + 1) // hp.beta_step * hp.beta_step
        return math.pow(1.0 + hp.beta_gamma * n, hp.beta_power)

    def training_step(self, batch, batch_idx):
        (images,), labels, _ = self.split_batch(batch)
        hp = self.hparams
        beta = self.beta(self.global_step)
        u = torch.tanh(beta * self.hash_scores(images))
        u, labels = gather_with_grad(u), gather_with_grad(labels.float())  # the global batch under DDP
        alpha = hp.alpha if hp.alpha is not None else 10.0 / self.bits
        if hp.pairs == "halves":
            n = u.shape[0] // 2
            loss = hashnet_loss(u[:n], u[n:], labels[:n], labels[n:], alpha, hp.class_num, hp.threshold, hp.weighting)
        else:
            loss = hashnet_loss(u, u, labels, labels, alpha, hp.class_num, hp.threshold, hp.weighting)
        self.log_terms({"loss": loss, "beta": beta}, batch_size=len(images))
        return loss
