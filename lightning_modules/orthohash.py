"""OrthoHash (Hoe et al., NeurIPS 2021): one loss — cross-entropy with a cosine margin to fixed ±1 class codes.

Official code ``kamwoh/orthohash@94c4a03`` (docs/methods.md#orthohash):
- codebook (``scripts/train_hashing.py: main``, ``--codebook-method B``): Bernoulli ±1 codes per class, fixed
  (``models/alexnet.py: CosSim(learn_cent=False)``); drawn from ``codebook_seed`` here, a buffer in checkpoints;
- network (``models/alexnet.py: AlexNet``): backbone → Linear(D, K, bias=False, N(0, 0.01)) → BatchNorm1d(K); the
  codes are sign of that output;
- loss (``functions/loss/orthohash.py: OrthoHashLoss``): hashcore/losses_codebook.py: orthohash_loss, s 8, m 0.2
  (README CIFAR-10 command: 0.3), cos margin, label-smoothing CE for multi-label data, quantization weight 0;
- Adam 1e-4, wd 5e-4, backbone lr ×0.1, batch 256, 100 epochs, lr ×0.1 at epoch 80 (``main.py``).
The hash layer's BatchNorm couples the batch: in training the linear outputs are gathered from every DDP rank first,
so the normalisation statistics (and the running ones) are the global batch's, as on one GPU.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from .base import HashModule
from .class_codes import ClassCodes
from hashcore.distributed import gather_with_grad
from hashcore.losses_codebook import bernoulli_codebook, orthohash_loss
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method


@register_method("orthohash")
class OrthoHash(ClassCodes, HashModule):
    """Args (besides :class:`HashModule`'s):
        cos_scale, margin, margin_type: the cosine-margin logits ``s·(cos − m)`` (``cos``) or
            ``s·cos(θ + m)`` (``arc``); not ``scale``, which the datamodule's split-size option already uses.
        multiclass_loss: ``label_smoothing`` (official default) or ``bce`` for multi-label data.
        quan, quan_type: weight (official 0) and form (``cs``, ``l1``, ``l2``) of the quantization term.
        num_classes: classes (rows of the codebook); None takes the datamodule's (handed over by the CLI).
        codebook_seed: seed of the Bernoulli codebook.
    """

    paper_settings = MethodSettings(
        "kamwoh/orthohash@94c4a03 (main.py, scripts/train_hashing.py, functions/loss/orthohash.py, "
        "models/alexnet.py): AlexNet fully trained, Adam 1e-4, wd 5e-4, backbone lr ×0.1, batch 256, Bernoulli "
        "codebook, s 8, m 0.2 (0.3 in the README's CIFAR-10 command), quantization 0, 100 epochs, lr ×0.1 at "
        'epoch 80',
        epochs=100, batch_size=256, val_every=5)

    train_transform = "resize_crop_flip"
    supervised = True
    min_batch_size = 2  # BatchNorm1d in the hash layer

    def __init__(self, bits: int = 64, cos_scale: float = 8.0, margin: float = 0.2,
                 margin_type: Literal["cos", "arc"] = "cos",
                 multiclass_loss: Literal["label_smoothing", "bce"] = "label_smoothing", quan: float = 0.0,
                 quan_type: Literal["cs", "l1", "l2"] = "cs", num_classes: Optional[int] = None,
                 codebook_seed: int = 0, backbone: str = "alexnet", freeze: bool = False,
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam", lr: float = 1e-4,
                 weight_decay: float = 5e-4, backbone_lr_multiplier: float = 0.1, lr_step: Optional[int] = 80,
                 lr_decay: float = 0.1, **kwargs):
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, backbone_lr_multiplier=backbone_lr_multiplier, lr_step=lr_step,
                         lr_decay=lr_decay, **kwargs)
        linear = nn.Linear(self.backbone.out_dim, bits, bias=False)
        nn.init.normal_(linear.weight, std=0.01)
        self.head = nn.Sequential(linear, nn.BatchNorm1d(bits, momentum=0.1))
        self.init_class_codes(num_classes)

    def make_class_codes(self, num_classes: int, generator: torch.Generator) -> torch.Tensor:
        return bernoulli_codebook(num_classes, self.bits, generator)

    def training_step(self, batch, batch_idx):
        (images,), labels, _ = self.split_batch(batch)
        hp = self.hparams
        linear, batch_norm = self.head
        v = batch_norm(gather_with_grad(linear(self.features(images))))  # BatchNorm over the global batch
        terms = orthohash_loss(v, gather_with_grad(labels), self.class_codes, scale=hp.cos_scale, margin=hp.margin,
                               margin_type=hp.margin_type, multiclass_loss=hp.multiclass_loss, quan=hp.quan,
                               quan_type=hp.quan_type)
        self.log_terms(terms, batch_size=len(images))
        return terms["loss"]
