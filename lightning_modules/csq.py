"""CSQ — Central Similarity Quantization (Yuan et al., CVPR 2020): pull each code to its label's hash centre.

Official code ``yuanli2333/Hadamard-Matrix-for-hashing@55cab00`` (docs/methods.md#csq):
- centres (``train.py`` loads ``data/<d>/hash_centers/<K>_<d>_<C>_class.pkl``, made as in
  ``Tutorial_ hash_center_generation.ipynb``): rows of [H_K; −H_K] of a Hadamard matrix, Bernoulli rows with K/2
  −1s beyond 2K classes (hashcore/losses.py: csq_hash_centers, generated here from ``center_seed``);
- multi-label targets: the sign of the mean of the labels' centres, ties from one fixed random centre
  (``Hash_center_multilables``);
- network (``network.py: AlexNetFc``): backbone → Linear(D, D) → ReLU → Linear(D, D) → ReLU → Linear(D, K) → tanh;
- loss: BCE((u + 1)/2, (c + 1)/2) + λ·mean((|u| − 1)²) (``--lambda1 0``: no pairwise term in any README command);
- Adam, head lr 1e-4 and backbone lr ×0.01 (``--multi_lr``), lr ×0.7 every 10 epochs, batch 64, 90 epochs;
  λ 1e-3 at 16 and 32 bits, 1e-4 at 64 (README, AlexNet).
The centres and the random tie-breaking centre are buffers (seeded by ``center_seed``, saved in checkpoints).
The loss is per image, so DDP's gradient average is already the global-batch mean.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch

from .base import HashModule, mlp_head
from hashcore.losses import csq_hash_centers, csq_label_centers, csq_loss
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method


@register_method("csq")
class CSQ(HashModule):
    """Args (besides :class:`HashModule`'s):
        lam: weight λ of the quantization term.
        num_classes: classes (rows of the centre matrix); None takes the datamodule's (handed over by the CLI).
        center_seed: seed of the Bernoulli centres and of the random tie-breaking centre.
        hidden_layers: Linear(D, D) + ReLU layers before the hash layer (official 2; the DeepHash-pytorch port 0).
    """

    paper_settings = MethodSettings(
        "yuanli2333/Hadamard-Matrix-for-hashing@55cab00 (train.py, network.py; README AlexNet commands): Adam, "
        "hash layers lr 1e-4, backbone ×0.01, lr ×0.7 every 10 epochs, batch 64, Hadamard/Bernoulli centres, λ "
        "1e-4 (1e-3 at 16/32 bits), 90 epochs, evaluation every 5",
        epochs=90, batch_size=64, val_every=5)

    train_transform = "resize_crop_flip"
    supervised = True

    def __init__(self, bits: int = 64, lam: float = 1e-4, num_classes: Optional[int] = None, center_seed: int = 0,
                 hidden_layers: int = 2, backbone: str = "alexnet", freeze: bool = False,
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam", lr: float = 1e-4,
                 weight_decay: float = 0.0, backbone_lr_multiplier: float = 0.01, lr_step: Optional[int] = 10,
                 lr_decay: float = 0.7, **kwargs):
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, backbone_lr_multiplier=backbone_lr_multiplier, lr_step=lr_step,
                         lr_decay=lr_decay, **kwargs)
        dim = self.backbone.out_dim
        self.head = mlp_head(dim, [dim] * hidden_layers, bits)
        self.register_buffer("centers", torch.zeros(0, bits))
        self.register_buffer("random_center", torch.zeros(bits))
        if num_classes is not None:
            self.set_num_classes(num_classes)

    def set_num_classes(self, num_classes: int) -> None:
        """Build the centres for the data's classes (seeded: the same run gets the same centres)."""
        self.record_num_classes(num_classes)
        if self.centers.shape[0] == num_classes:
            return
        g = torch.Generator().manual_seed(self.hparams.center_seed)
        device = self.centers.device
        self.centers = csq_hash_centers(int(num_classes), self.bits, g).to(device)
        self.random_center = (torch.randint(0, 2, (self.bits,), generator=g).float() * 2 - 1).to(device)

    def on_fit_start(self) -> None:
        if self.centers.shape[0] == 0:
            raise ValueError("CSQ needs the number of classes for its hash centres: set model.num_classes, or run "
                             "through the hashbench CLI, which hands the datamodule's num_classes over")

    def hash_scores(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(super().hash_scores(x))

    def training_step(self, batch, batch_idx):
        (images,), labels, _ = self.split_batch(batch)
        u = self.hash_scores(images)
        terms = csq_loss(u, csq_label_centers(labels, self.centers, self.random_center), lam=self.hparams.lam)
        self.log_terms(terms, batch_size=len(images))
        return terms["loss"]
