"""GreedyHash (Su et al., NeurIPS 2018): sign forward, identity backward, cubic penalty towards ±1.

Official code ``ssppp/GreedyHash@e5089b2`` (docs/methods.md#greedyhash):
- unsupervised (``unsupervised_vgg.py``, the default here): frozen VGG16 fc7 (dropout live) → Linear(4096, K)
  → b = sign(h); loss = MSE(cos(b₁, b₂), cos(x₁, x₂)) over the batch halves + α·mean(| |h| − 1 |³), α 0.1;
  SGD lr 1e-4, momentum 0.9, wd 5e-4, batch 32, constant lr.
- supervised (``cifar1.py``/``cifar2.py``): AlexNet with all layers trained → Linear(4096, K) → sign →
  Linear(K, C, bias=False); loss = CE + α·penalty; SGD lr 1e-3 with step decay (set in the configs).
  Multi-hot labels: CE on the argmax label (swuxyj/DeepHash-pytorch@ab14068:GreedyHash.py) by default,
  ``multilabel_loss="bce"`` otherwise.
Under DDP the unsupervised pairs (first half of the batch against the second) are taken over the global batch.
"""
from __future__ import annotations

from typing import Literal, Optional

from torch import nn

from .base import HashModule
from hashcore.distributed import gather_with_grad
from hashcore.hash_layers import sign_ste
from hashcore.losses import cosine_mse_halves, greedy_penalty, greedy_supervised_loss
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method


@register_method("greedy", aliases=("greedyhash",))
class GreedyHash(HashModule):
    """Args (besides :class:`HashModule`'s):
        supervised: train the supervised variant (classifier on the codes) instead of the unsupervised one.
        alpha: weight of the cubic penalty (official 0.1; 1 for ImageNet).
        num_classes: classes of the supervised classifier; None takes the datamodule's (handed over by the CLI).
        multilabel_loss: ``argmax`` (CE on the first positive label, DeepHash-pytorch) or ``bce``.
    """

    paper_settings = MethodSettings(
        "ssppp/GreedyHash@e5089b2 (unsupervised_vgg.py): SGD 1e-4, momentum 0.9, wd 5e-4, batch 32, α 0.1, "
        "constant lr, 60 epochs (300 at 16 bits), evaluation every 5",
        epochs=60, batch_size=32, val_every=5, epochs_at_bits={16: 300})

    min_batch_size = 2

    def __init__(self, bits: int = 64, supervised: bool = False, alpha: float = 0.1,
                 num_classes: Optional[int] = None, multilabel_loss: Literal["argmax", "bce"] = "argmax",
                 backbone: str = "vgg16", freeze: bool = True,
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd", lr: float = 1e-4,
                 weight_decay: float = 5e-4, lr_step: Optional[int] = None, **kwargs):
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, lr_step=lr_step, **kwargs)
        self.supervised = bool(supervised)
        self.even_batch_size = not self.supervised  # the unsupervised loss pairs batch halves
        self.head = nn.Linear(self.backbone.out_dim, bits)
        self.classifier: Optional[nn.Module] = None
        if supervised and num_classes is not None:
            self.set_num_classes(num_classes)

    def set_num_classes(self, num_classes: int) -> None:
        if self.hparams.num_classes is None:  # recorded in both variants: the run's hparams agree with the data's
            # save_hyperparameters also updates the initial copy Lightning logs and compares with the data's
            self.save_hyperparameters({**self.hparams, "num_classes": int(num_classes)})
        if not self.supervised or (self.classifier is not None and self.hparams.num_classes == num_classes):
            return
        if self.classifier is not None or self.hparams.num_classes != num_classes:
            raise ValueError(f"GreedyHash was built for model.num_classes={self.hparams.num_classes} but the data has "
                             f"{num_classes} classes; leave model.num_classes unset to take the data's")
        self.classifier = nn.Linear(self.bits, int(num_classes), bias=False)

    def on_fit_start(self) -> None:
        if self.supervised and self.classifier is None:
            raise ValueError("supervised GreedyHash needs the number of classes: set model.num_classes, or run through "
                             "the hashbench CLI, which hands the datamodule's num_classes over")

    def training_step(self, batch, batch_idx):
        (images,), labels, _ = self.split_batch(batch)
        x = self.features(images)
        h = self.head(x)
        if self.supervised:  # per-image losses: DDP's gradient average is the global batch mean already
            terms = greedy_supervised_loss(self.classifier(sign_ste(h)), labels, h, alpha=self.hparams.alpha,
                                           multilabel=self.hparams.multilabel_loss)
        else:
            h, x = gather_with_grad(h), gather_with_grad(x)  # the global batch's halves under DDP
            similarity, penalty = cosine_mse_halves(sign_ste(h), x), greedy_penalty(h)
            terms = {"loss": similarity + self.hparams.alpha * penalty, "similarity": similarity,
                     "penalty": penalty}
        self.log_terms(terms, batch_size=len(images))
        return terms["loss"]
