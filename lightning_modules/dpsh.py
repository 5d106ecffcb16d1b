"""DPSH (Li, Wang & Kang, IJCAI 2016): pairwise likelihood against the whole training set + quantization.

Official code ``jiangqy/DPSH-pytorch@0423181:DPSH_CIFAR_10.py: DPSH_algo`` (docs/methods.md#dpsh): AlexNet with every
layer trained, its last layer replaced by Linear(4096, K); the outputs U and codes B = sign(U) of every training
image are kept and overwritten by index as the batches come; the loss of a batch is its likelihood against all of U
(lightning_modules/losses.py: dpsh_loss) + λ·|B − u|², λ 10; plain SGD lr 0.05 (no momentum), wd 1e-5, batch
128, 150 epochs, lr ×0.1 every 50 epochs; Resize 256 → CenterCrop 224, no augmentation.
U, B and the labels Y seen so far are buffers: saved in and restored from checkpoints, and under DDP every rank
writes the rows of the global batch, so every rank holds the same U and the step equals the single-process one.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from .base import HashModule
from .distributed import gather_with_grad
from .losses import dpsh_loss
from .registry import register_method


@register_method("dpsh")
class DPSH(HashModule):
    """Args (besides :class:`HashModule`'s):
        lam: weight λ of the quantization term (official ``lamda`` 10 on CIFAR-10, 50 on NUS-WIDE).
        num_train: rows of U; None takes the size of the train loader's dataset when training starts.
    """

    train_transform = "resize_center_crop"
    supervised = True

    def __init__(self, bits: int = 48, lam: float = 10.0, num_train: Optional[int] = None,
                 backbone: str = "alexnet", freeze: bool = False,
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd", lr: float = 0.05,
                 weight_decay: float = 1e-5, momentum: float = 0.0, lr_step: Optional[int] = 50,
                 lr_decay: float = 0.1, **kwargs):
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, momentum=momentum, lr_step=lr_step, lr_decay=lr_decay, **kwargs)
        self.head = nn.Linear(self.backbone.out_dim, bits)
        rows = int(num_train or 0)
        self.register_buffer("U", torch.zeros(rows, bits))       # outputs of every training image, by index
        self.register_buffer("B", torch.zeros(rows, bits))       # their codes sign(U)
        self.register_buffer("Y", torch.zeros(rows, 0))          # their labels (width set by the first batch)

    # ---- the training-set state -------------------------------------------------------------------
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Size U, B and Y as the checkpoint's, so that loading the state dict restores them."""
        state = checkpoint.get("state_dict", {})
        for name in ("U", "B", "Y"):
            if name in state:
                setattr(self, name, torch.zeros_like(state[name], device=getattr(self, name).device))

    def on_train_start(self) -> None:
        rows = len(self.trainer.train_dataloader.dataset)
        if self.U.shape[0] == 0:
            self.U = self.U.new_zeros(rows, self.bits)
            self.B = self.B.new_zeros(rows, self.bits)
            self.Y = self.Y.new_zeros(rows, 0)
        elif self.U.shape[0] != rows:
            raise ValueError(f"DPSH keeps one row of U per training image: this model holds {self.U.shape[0]} rows "
                             f"but the train split has {rows} images; train it on the split it was started on, or "
                             "start a new run")

    def _remember(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> None:
        """Write the batch's outputs, codes and labels into their rows (the official ``U[ind, :] = ...``)."""
        if self.U.shape[0] == 0:
            raise ValueError("DPSH needs the number of training images: set model.num_train, or train it with "
                             "trainer.fit, which sizes U from the train loader")
        if int(index.max()) >= self.U.shape[0]:
            raise ValueError(f"DPSH got train index {int(index.max())} but U has {self.U.shape[0]} rows: the train "
                             "loader must give each image's position in the train split as its index")
        if self.Y.shape[1] != labels.shape[1]:
            self.Y = self.Y.new_zeros(self.U.shape[0], labels.shape[1])
        self.U[index] = u.detach()
        self.B[index] = torch.sign(u.detach())
        self.Y[index] = labels.to(self.Y.dtype)

    def training_step(self, batch, batch_idx):
        (images,), labels, index = self.split_batch(batch)
        if labels.dim() != 2:
            raise ValueError(f"DPSH compares multi-hot label rows (B, C); the train loader gave shape {tuple(labels.shape)}")
        labels = labels.float()
        # the global batch: every rank writes the same rows, so U stays identical across ranks
        u, labels, index = gather_with_grad(self.hash_scores(images)), gather_with_grad(labels), gather_with_grad(index)
        self._remember(u, labels, index)
        s = (labels @ self.Y.t() > 0).to(u.dtype)
        terms = dpsh_loss(u, self.U, s, self.B[index], lam=self.hparams.lam)
        self.log_terms(terms, batch_size=len(images))
        return terms["loss"]
