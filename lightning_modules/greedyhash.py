"""GreedyHash (Su et al., NeurIPS 2018): sign forward, identity backward, cubic penalty towards ±1.

Official code (ssppp/GreedyHash, METHODS.md §4):
- unsupervised (``unsupervised_vgg.py``, the default here): frozen VGG16 fc7 (dropout live) → Linear(4096, K)
  → b = sign(h); loss = MSE(cos(b₁, b₂), cos(x₁, x₂)) over the batch halves + α·mean(| |h| − 1 |³), α 0.1;
  SGD lr 1e-4, momentum 0.9, wd 5e-4, batch 32, constant lr.
- supervised (``cifar1.py``/``cifar2.py``): AlexNet with all layers trained → Linear(4096, K) → sign →
  Linear(K, C, bias=False); loss = CE + α·penalty; SGD lr 1e-3 with step decay (set in the configs).
  Multi-hot labels: CE on the argmax label (DeepHash-pytorch) by default, ``multilabel_loss="bce"`` otherwise.
"""
from __future__ import annotations

from typing import Literal, Optional

from torch import nn

from .base import HashModule
from .hash_layers import sign_ste
from .losses import cosine_mse_halves, greedy_penalty, greedy_supervised_loss


class GreedyHash(HashModule):
    """Args (besides :class:`HashModule`'s):
        supervised: train the supervised variant (classifier on the codes) instead of the unsupervised one.
        alpha: weight of the cubic penalty (official 0.1; 1 for ImageNet).
        num_classes: classes for the supervised classifier; None reads the datamodule's ``num_classes``.
        multilabel_loss: ``argmax`` (CE on the first positive label, DeepHash-pytorch) or ``bce``.
    """

    def __init__(self, bits: int = 64, supervised: bool = False, alpha: float = 0.1,
                 num_classes: Optional[int] = None, multilabel_loss: Literal["argmax", "bce"] = "argmax",
                 backbone: str = "vgg16", freeze: bool = True,
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd", lr: float = 1e-4,
                 weight_decay: float = 5e-4, lr_step: Optional[int] = None, **kwargs):
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, lr_step=lr_step, **kwargs)
        self.head = nn.Linear(self.backbone.out_dim, bits)
        self.classifier: Optional[nn.Module] = None
        if supervised and num_classes is not None:
            self.classifier = nn.Linear(bits, num_classes, bias=False)

    def setup(self, stage: str) -> None:
        if self.hparams.supervised and self.classifier is None:
            num_classes = getattr(self.trainer.datamodule, "num_classes", None) if self.trainer else None
            if num_classes is None:
                raise ValueError("supervised GreedyHash needs the number of classes: set model.num_classes")
            self.hparams.num_classes = num_classes
            self.classifier = nn.Linear(self.bits, num_classes, bias=False)

    def training_step(self, batch, batch_idx):
        (images,), labels, _ = self.split_batch(batch)
        x = self.features(images)
        h = self.head(x)
        b = sign_ste(h)
        if self.hparams.supervised:
            terms = greedy_supervised_loss(self.classifier(b), labels, h, alpha=self.hparams.alpha,
                                           multilabel=self.hparams.multilabel_loss)
        else:
            similarity, penalty = cosine_mse_halves(b, x), greedy_penalty(h)
            terms = {"loss": similarity + self.hparams.alpha * penalty, "similarity": similarity,
                     "penalty": penalty}
        self.log_terms(terms, batch_size=len(images))
        return terms["loss"]
