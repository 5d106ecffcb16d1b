"""DFH (Deep Fisher Hashing, Li, Pei, Zha & van Gemert, BMVC 2019): DPSH-style pairwise likelihood against the
whole training set (with a margin), plus Fisher-like class centres: codes are pulled towards their class centre,
centres are pushed apart.

Official code ``liyunqianggyn/Push-for-Quantization-Deep-Fisher-Hashing@43c62aa:Main.py: main`` (docs/methods.md#dfh):
AlexNet fully trained, its last layer replaced by Linear(4096, K); per batch, the outputs are written into U (every
training image's output, by index), the B-step gives the batch's codes ``b = sign(mu·C·y + u)``, the C-step updates
the class centres C from (y, b) by discrete cyclic coordinate descent, and the U-step trains on the likelihood of
the batch against all of U + eta·|b − u|² (hashcore/losses_dfh.py). SGD lr 0.01, momentum 0.9, wd 5e-4, batch 128,
150 epochs, lr ×0.1 every 50; RandomHorizontalFlip, Resize 256, RandomCrop 224.
U, Y (TrainRows) and the centres are buffers: saved in and restored from checkpoints; under DDP every rank writes the
rows of the global batch and runs the same B- and C-steps on it, so every rank holds the same state.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from .base import HashModule
from hashcore.distributed import gather_with_grad
from hashcore.losses_dfh import (
    dfh_binary_codes,
    dfh_discrete_centers,
    dfh_label_weights,
    dfh_loss,
    dfh_relaxed_centers,
)
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method
from .train_rows import TrainRows


@register_method("dfh", aliases=("DeepFisherHashing",))
class DFH(TrainRows, HashModule):
    """Args (besides :class:`HashModule`'s):
        margin: m of the pairwise loss (official ``Main.py`` 0, "Without Margin"; the DeepHash-pytorch port 3).
        eta: weight of the quantization term |b − u|² (official 0.5).
        mu: weight of the class centre in the B-step ``b = sign(mu·C·y + u)`` (official 1; the port 0.1).
        vul: weight of the between-centre term of the C-step (official 1).
        nta: weight of the quantization of the relaxed centres (``center_update: relaxed`` only; official 1).
        center_update: ``discrete`` (``center.py: Discretecenter``, the official code's) or ``relaxed``
            (``Relaxcenter``: 200 gradient steps on real centres V, C = sign(V); the port's).
        normalize_labels: divide each image's label row by its number of labels in the B- and C-steps (official);
            false: the raw multi-hot rows (the port).
        num_train: rows of U; None takes the size of the train loader's dataset when training starts.
    """

    paper_settings = MethodSettings(
        "liyunqianggyn/Push-for-Quantization-Deep-Fisher-Hashing@43c62aa (Main.py, models/DFH_loss.py, center.py): "
        "AlexNet fully trained, SGD lr 0.01, momentum 0.9, wd 5e-4, batch 128, U of the train set by index, class "
        "centres by discrete cyclic coordinate descent, margin 0, η 0.5, μ 1, ν 1, 150 epochs, lr ×0.1 every 50, "
        "evaluation every 10",
        epochs=150, batch_size=128, val_every=10)

    train_transform = "resize_crop_flip"  # Main.py: flip, Scale(256), RandomCrop(224): the same draws
    supervised = True

    def __init__(self, bits: int = 48, margin: float = 0.0, eta: float = 0.5, mu: float = 1.0, vul: float = 1.0,
                 nta: float = 1.0, center_update: Literal["discrete", "relaxed"] = "discrete",
                 normalize_labels: bool = True, num_train: Optional[int] = None,
                 backbone: str = "alexnet", freeze: bool = False,
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd", lr: float = 0.01,
                 weight_decay: float = 5e-4, momentum: float = 0.9, lr_step: Optional[int] = 50,
                 lr_decay: float = 0.1, **kwargs):
        if center_update not in ("discrete", "relaxed"):
            raise ValueError(f"center_update must be 'discrete' or 'relaxed', got {center_update!r} "
                             "(option model.center_update)")
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, momentum=momentum, lr_step=lr_step, lr_decay=lr_decay, **kwargs)
        self.head = nn.Linear(self.backbone.out_dim, bits)
        self.init_train_rows(int(num_train or 0), bits)
        # class centres C (C, K) and, for the relaxed C-step, their real-valued V; zero until the first batch gives
        # the number of classes (as in Main.py: ``Relax_center = zeros``, ``CenTer = Relax_center``)
        self.register_buffer("centers", torch.zeros(0, bits))
        self.register_buffer("relaxed_centers", torch.zeros(0, bits))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Size the centres (and U, B, Y) as the checkpoint's, so that loading the state dict restores them."""
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict", {})
        for name in ("centers", "relaxed_centers"):
            if name in state:
                setattr(self, name, torch.zeros_like(state[name], device=getattr(self, name).device))

    def training_step(self, batch, batch_idx):
        (images,), labels, index = self.split_batch(batch)
        labels = labels.float()
        # the global batch: every rank writes the same rows and computes the same centres
        u, labels, index = gather_with_grad(self.hash_scores(images)), gather_with_grad(labels), gather_with_grad(index)
        self.remember(u, labels, index)
        if self.centers.shape[0] != labels.shape[1]:
            self.centers = u.new_zeros(labels.shape[1], self.bits)
            self.relaxed_centers = u.new_zeros(labels.shape[1], self.bits)
        hp = self.hparams
        weights = dfh_label_weights(labels, hp.normalize_labels)
        b = dfh_binary_codes(u, self.centers, weights, hp.mu)                      # B-step
        if hp.center_update == "discrete":                                        # C-step
            self.centers = dfh_discrete_centers(self.centers, weights, b, hp.vul)
        else:
            self.relaxed_centers = dfh_relaxed_centers(self.relaxed_centers, weights, b, hp.vul, hp.nta)
            self.centers = torch.sign(self.relaxed_centers)
        s = (labels @ self.Y.t() > 0).to(u.dtype)                               # U-step
        terms = dfh_loss(u, self.U, s, b, margin=hp.margin, eta=hp.eta)
        self.log_terms(terms, batch_size=len(images))
        return terms["loss"]
