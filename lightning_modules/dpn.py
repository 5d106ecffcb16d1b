"""DPN — Deep Polarized Network (Fan et al., IJCAI 2020): a per-bit hinge pushes each output past ±m towards its
class's fixed ±1 code.

Official code ``kamwoh/DPN@b4d721e`` (docs/methods.md#dpn):
- centres (``scripts/train_hashing.py: main``, ``--centroid-method N``): signs of Gaussian draws per class, fixed
  (``--centroid-update-time 0``: the adaptive update is off by default and not ported); from ``codebook_seed`` here,
  a buffer in checkpoints;
- network (``models/alexnet.py``): backbone → Linear(D, K, bias=False, N(0, 0.01)); codes = sign;
- loss (``calculate_loss``, ``sl`` 1, ``ce`` 0, ``reg`` 0): hashcore/losses_codebook.py: dpn_loss, margin 1;
- SGD 1e-4, momentum 0.9, wd 5e-4, batch 256, 200 epochs, lr ×0.1 at epoch 100 (``main.py``).
``variant: deephash`` is the swuxyj/DeepHash-pytorch@ab14068 ``DPN.py`` port (mean over bits, CSQ-style multi-label
target, codes with exactly K/2 −1s, RMSprop 1e-5 there). The loss is per image, so DDP's gradient average is the
global-batch mean.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from .base import HashModule
from .class_codes import ClassCodes
from hashcore.losses_codebook import dpn_loss, gaussian_sign_codebook, half_negative_codebook
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method


@register_method("dpn")
class DPN(ClassCodes, HashModule):
    """Args (besides :class:`HashModule`'s):
        margin: the polarization margin m.
        variant: ``official`` (kamwoh/DPN) or ``deephash`` (the DeepHash-pytorch port's loss and codes).
        num_classes: classes (rows of the centres); None takes the datamodule's (handed over by the CLI).
        codebook_seed: seed of the class codes (and of the port's tie-breaking code).
    """

    paper_settings = MethodSettings(
        "kamwoh/DPN@b4d721e (main.py, scripts/train_hashing.py, models/alexnet.py): AlexNet fully trained, SGD "
        "1e-4, momentum 0.9, wd 5e-4, batch 256, Gaussian-sign centres (no centre update), margin 1, 200 epochs, "
        "lr ×0.1 at epoch 100",
        epochs=200, batch_size=256, val_every=5)

    train_transform = "resize_crop_flip"
    supervised = True

    def __init__(self, bits: int = 64, margin: float = 1.0, variant: Literal["official", "deephash"] = "official",
                 num_classes: Optional[int] = None, codebook_seed: int = 0, backbone: str = "alexnet",
                 freeze: bool = False, optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd",
                 lr: float = 1e-4, weight_decay: float = 5e-4, momentum: float = 0.9, lr_step: Optional[int] = 100,
                 lr_decay: float = 0.1, **kwargs):
        if variant not in ("official", "deephash"):
            raise ValueError(f"variant must be 'official' or 'deephash', got {variant!r} (option model.variant)")
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, momentum=momentum, lr_step=lr_step, lr_decay=lr_decay, **kwargs)
        self.head = nn.Linear(self.backbone.out_dim, bits, bias=False)
        nn.init.normal_(self.head.weight, std=0.01)
        self.register_buffer("random_center", torch.ones(bits))
        self.init_class_codes(num_classes)

    def make_class_codes(self, num_classes: int, generator: torch.Generator) -> torch.Tensor:
        if self.hparams.variant == "deephash":
            codes = half_negative_codebook(num_classes, self.bits, generator)
            self.random_center = torch.randint(0, 2, (self.bits,), generator=generator).float().mul(2).sub(1).to(
                self.random_center.device)
            return codes
        return gaussian_sign_codebook(num_classes, self.bits, generator)

    def training_step(self, batch, batch_idx):
        (images,), labels, _ = self.split_batch(batch)
        terms = dpn_loss(self.hash_scores(images), labels, self.class_codes, margin=self.hparams.margin,
                         variant=self.hparams.variant, random_center=self.random_center)
        self.log_terms(terms, batch_size=len(images))
        return terms["loss"]
