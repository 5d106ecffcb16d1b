"""The Bi-half autoencoder study (Li & van Gemert, AAAI 2021, §4.3): three hash layers in one MLP autoencoder.

Official code ``liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a:AutoEncoder/{Sign.py, SignReg.py, BiHalf.py}``
(docs/methods.md#the-bi-half-autoencoder-study): binarised, flattened MNIST x (784) → Linear(784, 256) → ReLU →
Linear(256, K) = U → hash layer → B → Linear(K, 256) → ReLU → Linear(256, 784) → Sigmoid; loss = BCE(x̂, x), the mean
over pixels; Adam lr 1e-3, weight decay 1e-5, batch 128, 100 epochs, lr ×0.1 at epochs 60 and 80; the decoder is
initialised after ``torch.manual_seed(1)`` in every run (only the encoder's init varies). Codes are sign(U)
(``cal_map.py: compress``). The three layers, one registered method each so that a comparison names them:

* ``ae_sign``: sign with the straight-through gradient plus the pull γ(U − B)/(N·K), γ 0.2 (``Sign.py``);
* ``ae_signreg``: the same plus α · mean_k((Bᵀ1/N)_k²)/2, α 1 (``SignReg.py``);
* ``ae_bihalf``: the suite's Bi-half layer (``hash_layers.bihalf``) with γ 1 (``BiHalf.py``).

The data are ``datamodules.BinarizedMNIST`` (flattened 0/1 vectors held in memory). Under DDP the hash layer and the
balance term see the global batch (gathered with gradients) and each rank decodes its own rows.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import HashModule
from hashcore.distributed import gather_with_grad, global_rank, world_size
from hashcore.hash_layers import bihalf, sign_pull
from hashcore.losses import bit_balance_penalty
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method

OFFICIAL_MILESTONES = [60, 80]
#: the study's schedule (MNIST only); the official evaluation ranks a shuffled database with an unstable sort, so the
#: tie-averaged mAP is reported next to the suite's stable one; no radius metrics (the paper reports none)
_AE_SCHEDULE = dict(epochs=100, batch_size=128, val_every=25, datasets=("mnist",),
                    retrieval={"tie_averaged": True, "radius": None})


class HashAutoencoder(HashModule):
    """The autoencoder of the study with a hash layer chosen by the subclass (``layer``).

    Args (besides :class:`HashModule`'s):
        gamma: strength of the backward pull of U towards B, divided by N·K.
        alpha: weight of the bit-balance penalty on B (0 = none).
        input_dim: length of the flattened input the decoder reconstructs (784 for MNIST).
        hidden: width of the decoder's hidden layer (256; the encoder's is the ``mnist_mlp`` backbone's).
        decoder_seed: the decoder is initialised from ``torch.manual_seed(decoder_seed)`` without touching the global
            random state (official: 1 in every run); None draws it from the global state like the encoder.
        lr_milestones: epochs at which the lr is multiplied by ``lr_decay`` (official [60, 80]); None falls back to
            :class:`HashModule`'s ``lr_step``.
    """

    #: "sign" or "bihalf"
    layer: str = "sign"
    #: reconstructs flat binarised pixel vectors, not images: not part of ``hashbench compare --methods all``
    image_input = False
    #: the flattened input length the decoder reconstructs (set per instance from ``input_dim``)
    input_dim: int = 784

    def __init__(self, bits: int = 16, gamma: float = 0.2, alpha: float = 0.0, input_dim: int = 784,
                 hidden: int = 256, decoder_seed: Optional[int] = 1, backbone: str = "mnist_mlp",
                 pretrained: bool = False, freeze: bool = False,
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam", lr: float = 1e-3,
                 weight_decay: float = 1e-5, lr_milestones: Optional[list[int]] = None, lr_decay: float = 0.1,
                 **kwargs):
        if lr_milestones is not None and kwargs.get("lr_step") is not None:
            raise ValueError("set either model.lr_milestones (the autoencoder study's schedule) or model.lr_step, "
                             "not both")
        if alpha < 0 or gamma < 0:
            raise ValueError(f"gamma and alpha must be >= 0, got gamma={gamma!r}, alpha={alpha!r} (options "
                             "model.gamma, model.alpha)")
        super().__init__(bits=bits, backbone=backbone, pretrained=pretrained, freeze=freeze, optimizer=optimizer,
                         lr=lr, weight_decay=weight_decay, lr_decay=lr_decay, **kwargs)
        self.head = nn.Linear(self.backbone.out_dim, bits)
        with torch.random.fork_rng(devices=[]):  # the official torch.manual_seed(1), without its side effect
            if decoder_seed is not None:
                torch.manual_seed(decoder_seed)
            self.decoder = nn.Sequential(nn.Linear(bits, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, input_dim),
                                         nn.Sigmoid())
        self.input_dim = input_dim
        # this epoch's detached loss terms, one list per step; a list mutated in place costs no tensor op and no
        # nn.Module attribute write per step (both show in a profile of these few-millisecond steps)
        self._epoch_terms: list[list[torch.Tensor]] = []
        self._log_every = 0  # trainer.log_every_n_steps, read once at the start of training

    def hash_layer(self, u: torch.Tensor) -> torch.Tensor:
        """B from U (N, K) over the (global) batch, with the layer's training gradient."""
        if self.layer == "bihalf":
            return bihalf(u, self.hparams.gamma)
        return sign_pull(u, self.hparams.gamma)

    def training_step(self, batch, batch_idx):
        (x,), _, _ = self.split_batch(batch)
        target = x.flatten(1)
        if target.shape[1] != self.input_dim:
            raise ValueError(f"{type(self).__name__} reconstructs inputs of {self.input_dim} values (model.input_dim) "
                             f"but the batch has {target.shape[1]}; train it on datamodules.BinarizedMNIST "
                             "(flattened 28×28 = 784) or set model.input_dim")
        u = self.hash_scores(x)
        b_all = self.hash_layer(gather_with_grad(u))  # the global batch under DDP
        start = global_rank() * len(u) if world_size() > 1 else 0
        reconstruction = F.binary_cross_entropy(self.decoder(b_all[start:start + len(u)]), target)
        terms = {"loss": reconstruction, "reconstruction": reconstruction}
        if self.hparams.alpha:
            balance = bit_balance_penalty(b_all)
            terms.update(loss=reconstruction + self.hparams.alpha * balance, balance=balance)
        self.log_terms(terms, batch_size=len(x))
        return terms["loss"]

    # ---- logging: this step is a few milliseconds of MLP, so a self.log per term and step would be a large part of
    # it; the terms are kept on the side and logged as epoch means, plus the step values every log_every_n_steps
    def log_terms(self, terms: dict, batch_size: int) -> None:
        self._last_terms = terms  # named in the non-finite-loss message
        values = [v.detach() for v in terms.values()]
        self._epoch_terms.append(values)
        every = self._log_every  # 0 for a bare step (no Trainer): nothing to log to
        if every and (self.global_step + 1) % every == 0:  # the steps Lightning's loggers write
            self.log_dict({f"train/{k}_step": v for k, v in zip(terms, values)}, on_step=True, on_epoch=False)

    def on_train_start(self) -> None:
        self._log_every = self.trainer.log_every_n_steps or 0

    def on_train_epoch_start(self) -> None:
        self._epoch_terms.clear()

    def on_train_epoch_end(self) -> None:
        if not self._epoch_terms:
            return
        means = torch.stack([torch.stack(v) for v in self._epoch_terms]).mean(0)
        self.log_dict({f"train/{k}": v for k, v in zip(self._last_terms, means)}, on_step=False, on_epoch=True,
                      prog_bar=False)
        self._epoch_terms.clear()

    def configure_optimizers(self):
        milestones = self.hparams.lr_milestones
        if milestones is None:
            return super().configure_optimizers()
        opt = super().configure_optimizers()  # lr_step is None here: the bare optimiser
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=self.hparams.lr_decay)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


@register_method("ae_sign", aliases=("sign_autoencoder",))
class SignAutoencoder(HashAutoencoder):
    """The study's sign layer (``AutoEncoder/Sign.py``): sign, straight-through + γ(U − B)/(N·K), γ 0.2."""

    paper_settings = MethodSettings(
        "liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a (AutoEncoder/Sign.py): MLP autoencoder "
        "784-256-K-256-784 on binarised MNIST, BCE, sign layer (straight-through + γ(U−B)/(N·K), γ 0.2), Adam "
        "1e-3, wd 1e-5, batch 128, 100 epochs, lr ×0.1 at epochs 60 and 80",
        **_AE_SCHEDULE)

    layer = "sign"

    def __init__(self, bits: int = 16, gamma: float = 0.2, backbone: str = "mnist_mlp", pretrained: bool = False,
                 freeze: bool = False, optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam",
                 lr: float = 1e-3, weight_decay: float = 1e-5, lr_milestones: Optional[list[int]] = OFFICIAL_MILESTONES,
                 **kwargs):
        super().__init__(bits=bits, gamma=gamma, backbone=backbone, pretrained=pretrained, freeze=freeze,
                         optimizer=optimizer, lr=lr, weight_decay=weight_decay, lr_milestones=lr_milestones, **kwargs)


@register_method("ae_signreg", aliases=("signreg_autoencoder",))
class SignRegAutoencoder(HashAutoencoder):
    """The study's sign + reg layer (``AutoEncoder/SignReg.py``): the sign layer plus α · bit-balance penalty, α 1."""

    paper_settings = MethodSettings(
        "liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a (AutoEncoder/SignReg.py): MLP autoencoder "
        "784-256-K-256-784 on binarised MNIST, BCE, sign layer (γ 0.2) + bit balance α·mean((Bᵀ1/N)²)/2, α 1, "
        "Adam 1e-3, wd 1e-5, batch 128, 100 epochs, lr ×0.1 at epochs 60 and 80",
        **_AE_SCHEDULE)

    layer = "sign"

    def __init__(self, bits: int = 16, gamma: float = 0.2, alpha: float = 1.0, backbone: str = "mnist_mlp",
                 pretrained: bool = False, freeze: bool = False,
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam", lr: float = 1e-3,
                 weight_decay: float = 1e-5, lr_milestones: Optional[list[int]] = OFFICIAL_MILESTONES, **kwargs):
        super().__init__(bits=bits, gamma=gamma, alpha=alpha, backbone=backbone, pretrained=pretrained, freeze=freeze,
                         optimizer=optimizer, lr=lr, weight_decay=weight_decay, lr_milestones=lr_milestones, **kwargs)


@register_method("ae_bihalf", aliases=("bihalf_autoencoder",))
class BiHalfAutoencoder(HashAutoencoder):
    """The study's Bi-half layer (``AutoEncoder/BiHalf.py``): half/half per bit over the batch, γ 1."""

    paper_settings = MethodSettings(
        "liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a (AutoEncoder/BiHalf.py): MLP autoencoder "
        "784-256-K-256-784 on binarised MNIST, BCE, Bi-half layer (γ 1), Adam 1e-3, wd 1e-5, batch 128, 100 "
        "epochs, lr ×0.1 at epochs 60 and 80",
        **_AE_SCHEDULE)

    layer = "bihalf"
    min_batch_size = 2

    def __init__(self, bits: int = 16, gamma: float = 1.0, backbone: str = "mnist_mlp", pretrained: bool = False,
                 freeze: bool = False, optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam",
                 lr: float = 1e-3, weight_decay: float = 1e-5, lr_milestones: Optional[list[int]] = OFFICIAL_MILESTONES,
                 **kwargs):
        super().__init__(bits=bits, gamma=gamma, backbone=backbone, pretrained=pretrained, freeze=freeze,
                         optimizer=optimizer, lr=lr, weight_decay=weight_decay, lr_milestones=lr_milestones, **kwargs)
