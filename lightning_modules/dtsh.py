"""DTSH — Deep Supervised Hashing with Triplet Labels (Wang, Shi & Kitani, ACCV 2016).

No official PyTorch code; this follows the anchor reimplementation ``swuxyj/DeepHash-pytorch@ab14068:DTSH.py``
(docs/methods.md#dtsh): AlexNet with every layer trained → Linear(4096, K), raw outputs u; the triplet likelihood
over every (anchor, positive, negative) of the batch with margin α 5 + λ·mean((u − sign u)²), λ 1
(lightning_modules/losses.py: dtsh_loss); RMSprop lr 1e-5, wd 1e-5, batch 128, 150 epochs. The paper samples
triplets per mini-batch instead of taking all of them. Under DDP the triplets are taken over the global batch.
"""
from __future__ import annotations

from typing import Literal, Optional

from torch import nn

from .base import HashModule
from .distributed import gather_with_grad
from .losses import dtsh_loss
from .registry import register_method


@register_method("dtsh")
class DTSH(HashModule):
    """Args (besides :class:`HashModule`'s):
        alpha: margin α of the triplet likelihood (port 5).
        lam: weight λ of the quantization term (port 1).
    """

    train_transform = "resize_crop_flip"
    min_batch_size = 2
    supervised = True

    def __init__(self, bits: int = 48, alpha: float = 5.0, lam: float = 1.0, backbone: str = "alexnet",
                 freeze: bool = False, optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "rmsprop",
                 lr: float = 1e-5, weight_decay: float = 1e-5, lr_step: Optional[int] = None, **kwargs):
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, lr_step=lr_step, **kwargs)
        self.head = nn.Linear(self.backbone.out_dim, bits)

    def training_step(self, batch, batch_idx):
        (images,), labels, _ = self.split_batch(batch)
        u, labels = gather_with_grad(self.hash_scores(images)), gather_with_grad(labels)  # the global batch
        terms = dtsh_loss(u, labels, alpha=self.hparams.alpha, lam=self.hparams.lam)
        self.log_terms(terms, batch_size=len(images))
        return terms["loss"]
