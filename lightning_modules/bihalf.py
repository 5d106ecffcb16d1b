"""Bi-half Net (Li & van Gemert, AAAI 2021): maximise bit entropy with a parameter-free half/half layer.

Official code ``liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a:ImageHashing/Cifar10_I.py``
(docs/methods.md#bi-half-net): frozen VGG16 fc7 (dropout live) → Linear(4096, K) → Bi-half layer (per bit, the top
half of the batch gets +1, the rest −1; backward g + γ(U − B)/(N·K) with γ = 6); loss = MSE(cos(b₁, b₂), cos(x₁, x₂))
between the first and second half of the batch (different images, no augmentation); SGD lr 1e-4, momentum 0.9,
wd 5e-4, batch 32, lr ×0.1 every 120 epochs (CIFAR-10). At test time codes are sign(h), not the bi-half split
(the author, swuxyj/DeepHash-pytorch issue #20).

Paper vs code: the paper gives γ = 3·1/(N·K); the code uses 6. Default = code; ``gamma=3`` = paper.
Under DDP the half/half split and the pairs are taken over the global batch (gathered with gradients), so
W GPUs × B/W images train exactly as one GPU × B.
"""
from __future__ import annotations

from typing import Literal, Optional

from torch import nn

from .base import HashModule
from hashcore.distributed import gather_with_grad
from hashcore.hash_layers import bihalf
from hashcore.losses import cosine_mse_halves
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method


@register_method("bihalf", aliases=("bihalfnet", "bi_half"))
class BiHalfNet(HashModule):
    """Args (besides :class:`HashModule`'s):
        gamma: strength of the backward pull of U towards the half/half codes B, divided by N·K
            (official 6; paper 3).
    """

    paper_settings = MethodSettings(
        "liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a (ImageHashing/Cifar10_I.py): SGD 1e-4, momentum "
        "0.9, wd 5e-4, batch 32, γ 6, 300 epochs, lr ×0.1 every 120, evaluation every 10",
        epochs=300, batch_size=32, val_every=10)

    min_batch_size = 2
    even_batch_size = True

    def __init__(self, bits: int = 64, gamma: float = 6.0, backbone: str = "vgg16", freeze: bool = True,
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd", lr: float = 1e-4,
                 weight_decay: float = 5e-4, lr_step: Optional[int] = 120, **kwargs):
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, lr_step=lr_step, **kwargs)
        self.head = nn.Linear(self.backbone.out_dim, bits)

    def training_step(self, batch, batch_idx):
        (images,), _, _ = self.split_batch(batch)
        x = self.features(images)
        h, x = gather_with_grad(self.head(x)), gather_with_grad(x)  # the global batch under DDP
        b = bihalf(h, self.hparams.gamma)
        loss = cosine_mse_halves(b, x)
        self.log_terms({"loss": loss, "similarity": loss}, batch_size=len(images))
        return loss
