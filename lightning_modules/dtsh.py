"""DTSH — Deep Supervised Hashing with Triplet Labels (Wang, Shi & Kitani, ACCV 2016).

Two variants (docs/methods.md#dtsh):
- ``variant="official"`` (default): the authors' MatConvNet code ``Minione/DTSH@4be0707`` (``DTSH.m``,
  ``train_triplet.m``, ``tripletSampling.m``, ``update.m``): the outputs U of every training image are kept by index
  (as DPSH); each batch image is an anchor against, for every other class, 50 stored rows of its own class × 50 of
  that class drawn from the train set outside the batch; θ = u·U/2, margin K/2, quantization η 100
  (hashcore/losses.py: dtsh_sampled_loss); plain SGD lr 5e-4, wd 5e-4, ×2/3 every 20 epochs, 100 epochs,
  batch 128 (VGG-F there, AlexNet here). Single-label data only, as the code. The draw of each step comes from
  ``triplet_seed`` and the step number, so a resumed run draws what the uninterrupted one drew; it is taken among the
  rows seen so far (the code draws among all N, whose unseen rows are zero and add no gradient).
- ``variant="port"``: ``swuxyj/DeepHash-pytorch@ab14068:DTSH.py``: every (anchor, positive, negative) of the batch,
  θ = u·u, margin α 5, λ 1 (hashcore/losses.py: dtsh_loss); multi-label by shared labels; the port's
  optimiser is RMSprop 1e-5, wd 1e-5, 150 epochs (set them with the variant).
Under DDP both take the global batch: every rank writes the same rows and draws the same triplets.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from .base import HashModule
from hashcore.distributed import gather_with_grad
from hashcore.losses import dtsh_loss, dtsh_sampled_loss
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method
from .train_rows import TrainRows


def _draw(rows: int, available: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """(rows, count) positions out of ``available``, each row without replacement (as ``randperm(n, M)``) when there
    are enough, with replacement otherwise."""
    if available >= count:
        return torch.rand(rows, available, generator=generator).argsort(dim=1)[:, :count]
    return torch.randint(0, available, (rows, count), generator=generator)


def sample_triplet_rows(labels: torch.Tensor, index: torch.Tensor, seen_labels: torch.Tensor, m1: int, m2: int,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``tripletSampling.m``: for anchor i of class c and every other class c', ``m1`` train rows of class c and
    ``m2`` of class c', outside the batch, among the rows seen so far. Returns row indices (n, C-1, m1), (n, C-1, m2)
    and which (anchor, class) groups exist (n, C-1); group g of an anchor of class c is class g + (g >= c)."""
    labels, index, seen_labels = labels.cpu(), index.cpu(), seen_labels.cpu()
    n, classes = labels.shape
    if bool((labels.sum(1) != 1).any()):
        raise ValueError("DTSH's official triplet sampling is single-label (one class per image); use "
                         "model.variant: port for multi-label data")
    outside = torch.ones(len(seen_labels), dtype=torch.bool)
    outside[index] = False
    seen = (seen_labels.sum(1) > 0) & outside
    by_class = [((seen_labels[:, c] > 0) & seen).nonzero().squeeze(1) for c in range(classes)]
    pos = torch.zeros(n, classes - 1, m1, dtype=torch.long)
    neg = torch.zeros(n, classes - 1, m2, dtype=torch.long)
    valid = torch.zeros(n, classes - 1, dtype=torch.bool)
    anchor_class = labels.argmax(1)
    for c in range(classes):
        anchors, same = (anchor_class == c).nonzero().squeeze(1), by_class[c]
        if len(anchors) == 0 or len(same) == 0:
            continue
        for other in range(classes):
            diff = by_class[other]
            if other == c or len(diff) == 0:
                continue
            g = other - (other > c)
            pos[anchors, g] = same[_draw(len(anchors), len(same), m1, generator)]
            neg[anchors, g] = diff[_draw(len(anchors), len(diff), m2, generator)]
            valid[anchors, g] = True
    return pos, neg, valid


@register_method("dtsh")
class DTSH(TrainRows, HashModule):
    """Args (besides :class:`HashModule`'s):
        variant: ``official`` (MatConvNet code) or ``port`` (DeepHash-pytorch).
        margin: official margin; None = bits / 2.
        eta: official quantization weight η (100).
        positives, negatives: official rows drawn per anchor and other class (50, 50).
        triplet_seed: seed of the official draw (combined with the step number).
        alpha, lam: the port's margin α (5) and quantization weight λ (1).
        num_train: rows of U (official); None takes the size of the train loader's dataset.
    """

    paper_settings = MethodSettings(
        "Minione/DTSH@4be0707 (MatConvNet: DTSH.m, train_triplet.m, update.m): AlexNet (VGG-F there) fully "
        "trained, SGD lr 5e-4, wd 5e-4, ×2/3 every 20 epochs, batch 128, U of the train set by index, 50×50 "
        "triplets per other class, margin K/2, η 100, 100 epochs; multi-label data: the "
        "swuxyj/DeepHash-pytorch@ab14068 DTSH.py port",
        epochs=100, batch_size=128, val_every=5)

    train_transform = "resize_crop_flip"
    min_batch_size = 2
    supervised = True

    def __init__(self, bits: int = 48, variant: Literal["official", "port"] = "official",
                 margin: Optional[float] = None, eta: float = 100.0, positives: int = 50, negatives: int = 50,
                 triplet_seed: int = 0, alpha: float = 5.0, lam: float = 1.0, num_train: Optional[int] = None,
                 backbone: str = "alexnet", freeze: bool = False,
                 optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd", lr: float = 5e-4,
                 weight_decay: float = 5e-4, momentum: float = 0.0, lr_step: Optional[int] = 20,
                 lr_decay: float = 2 / 3, **kwargs):
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, momentum=momentum, lr_step=lr_step, lr_decay=lr_decay, **kwargs)
        if variant not in ("official", "port"):
            raise ValueError(f"variant must be 'official' or 'port', got {variant!r} (option model.variant)")
        self.head = nn.Linear(self.backbone.out_dim, bits)
        self.init_train_rows(int(num_train or 0) if variant == "official" else 0, bits)

    def uses_train_rows(self) -> bool:
        return self.hparams.variant == "official"

    def training_step(self, batch, batch_idx):
        (images,), labels, index = self.split_batch(batch)
        hp = self.hparams
        # the global batch under DDP
        u, labels, index = gather_with_grad(self.hash_scores(images)), gather_with_grad(labels), gather_with_grad(index)
        if hp.variant == "port":
            terms = dtsh_loss(u, labels, alpha=hp.alpha, lam=hp.lam)
        else:
            self.remember(u, labels.float(), index)
            g = torch.Generator().manual_seed(hp.triplet_seed * 1_000_003 + self.global_step)
            pos, neg, valid = sample_triplet_rows(labels, index, self.Y, hp.positives, hp.negatives, g)
            device = u.device
            margin = hp.margin if hp.margin is not None else self.bits / 2
            terms = dtsh_sampled_loss(u, self.U[pos.to(device)], self.U[neg.to(device)], valid.to(device), margin,
                                      hp.eta, self.U.shape[0])
        self.log_terms(terms, batch_size=len(images))
        return terms["loss"]
