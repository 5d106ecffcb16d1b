"""DPSH (Li, Wang & Kang, IJCAI 2016): pairwise likelihood against the whole training set + quantization.

Official code ``jiangqy/DPSH-pytorch@0423181:DPSH_CIFAR_10.py: DPSH_algo`` (docs/methods.md#dpsh): AlexNet with every
layer trained, its last layer replaced by Linear(4096, K); the outputs U and codes B = sign(U) of every training
image are kept and overwritten by index as the batches come; the loss of a batch is its likelihood against all of U
(hashcore/losses.py: dpsh_loss) + λ·|B − u|², λ 10; plain SGD lr 0.05 (no momentum), wd 1e-5, batch
128, 150 epochs, lr ×0.1 every 50 epochs; Resize 256 → CenterCrop 224, no augmentation.
U, B and the labels Y seen so far are buffers: saved in and restored from checkpoints, and under DDP every rank
writes the rows of the global batch, so every rank holds the same U and the step equals the single-process one.
"""
from __future__ import annotations

from typing import Literal, Optional

from torch import nn

from .base import HashModule
from hashcore.distributed import gather_with_grad
from hashcore.losses import dpsh_loss
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method
from .train_rows import TrainRows


@register_method("dpsh")
class DPSH(TrainRows, HashModule):
    """Args (besides :class:`HashModule`'s):
        lam: weight λ of the quantization term (official ``lamda`` 10, DPSH_CIFAR_10_demo.py).
        num_train: rows of U; None takes the size of the train loader's dataset when training starts.
    """

    paper_settings = MethodSettings(
        "jiangqy/DPSH-pytorch@0423181 (DPSH_CIFAR_10.py): AlexNet fully trained, SGD lr 0.05 (no momentum), wd "
        "1e-5, batch 128, λ 10, U and B of the whole train set by index, 150 epochs, lr ×0.1 every 50",
        epochs=150, batch_size=128, val_every=5)

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
        self.init_train_rows(int(num_train or 0), bits)

    def training_step(self, batch, batch_idx):
        (images,), labels, index = self.split_batch(batch)
        labels = labels.float()
        # the global batch: every rank writes the same rows, so U stays identical across ranks
        u, labels, index = gather_with_grad(self.hash_scores(images)), gather_with_grad(labels), gather_with_grad(index)
        self.remember(u, labels, index)
        s = (labels @ self.Y.t() > 0).to(u.dtype)
        terms = dpsh_loss(u, self.U, s, self.B[index], lam=self.hparams.lam)
        self.log_terms(terms, batch_size=len(images))
        return terms["loss"]
