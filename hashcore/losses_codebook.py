"""Losses that pull each image's code towards fixed per-class target codes: OrthoHash's cosine-margin cross-entropy
to orthogonal class codes and DPN's polarization hinge (pure torch, no Lightning).

Kept apart from ``losses.py`` (already 500+ lines) so that these two methods are one file of losses each can read
whole. Sources are named per function (repo@commit:file:function); docs/methods.md has the differences.
"""
from __future__ import annotations

from typing import Dict, Literal

import torch
import torch.nn.functional as F


def bernoulli_codebook(num_classes: int, bits: int, generator: torch.Generator) -> torch.Tensor:
    """(C, K) ±1 class codes, each bit +1 with probability 1/2.

    Source: ``kamwoh/orthohash@94c4a03:scripts/train_hashing.py: main`` (``--codebook-method B``, the default:
    ``torch.bernoulli(0.5) * 2 - 1``). Drawn from ``generator`` here, so a run's codebook is a function of its seed.
    """
    return torch.randint(0, 2, (num_classes, bits), generator=generator).float() * 2 - 1


def gaussian_sign_codebook(num_classes: int, bits: int, generator: torch.Generator) -> torch.Tensor:
    """(C, K) ±1 class codes, the signs of standard normal draws.

    Source: ``kamwoh/DPN@b4d721e:scripts/train_hashing.py: main`` (``--centroid-method N``, the default:
    ``torch.randn(nclass, nbit).sign()``).
    """
    return torch.randn(num_classes, bits, generator=generator).sign()


def half_negative_codebook(num_classes: int, bits: int, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """(C, K) class codes with exactly ``int(K·p)`` bits −1 at random positions, the rest +1.

    Source: ``swuxyj/DeepHash-pytorch@ab14068:DPN.py: DPNLoss.get_target_vectors`` (its 20 redraws keep only the
    last, so one draw is the same distribution).
    """
    codes = torch.ones(num_classes, bits)
    for row in codes:
        row[torch.randperm(bits, generator=generator)[: int(bits * p)]] = -1
    return codes


def as_multi_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B,) class indices or (B, C) 0/1 labels as (B, C) float 0/1 labels."""
    if labels.dim() == 1:
        return F.one_hot(labels.long(), num_classes).float()
    return labels.float()


def orthohash_loss(
    v: torch.Tensor,
    labels: torch.Tensor,
    codebook: torch.Tensor,
    scale: float = 8.0,
    margin: float = 0.2,
    margin_type: Literal["cos", "arc"] = "cos",
    multiclass_loss: Literal["label_smoothing", "bce"] = "label_smoothing",
    quan: float = 0.0,
    quan_type: Literal["cs", "l1", "l2"] = "cs",
) -> Dict[str, torch.Tensor]:
    """OrthoHash: cross-entropy over scaled cosines to the class codes with an additive (``cos``) or angular (``arc``)
    margin on the labelled classes, plus ``quan`` × a quantization term.

    ``v`` are the (B, K) hash-layer outputs (before sign), ``labels`` (B,) indices or (B, C) 0/1 labels,
    ``codebook`` the (C, K) ±1 class codes. Logits: ``s·(cos(v, c_j) − m·y_j)`` (cos) or ``s·cos(acos(cos) + m·y_j)``
    (arc, cosines clamped to ±0.99999). ``label_smoothing``: −Σ_j (y_j/Σy) log softmax_j — the plain cross-entropy
    for one label per image (an image without labels adds 0); ``bce``: BCE-with-logits, mean over B·C. Quantization: ``cs`` 1 − cos(v, sign(v)),
    ``l1`` |v − sign(v)|, ``l2`` (v − sign(v))², mean, sign(v) detached.

    Source: ``kamwoh/orthohash@94c4a03:functions/loss/orthohash.py: OrthoHashLoss.forward, compute_margin_logits``
    and ``models/alexnet.py: CosSim.forward``. The official single-label branch (``F.cross_entropy``) equals the
    label-smoothing branch on one-hot labels, so one formula serves both; its ``imbalance`` multi-label loss is not
    ported.
    """
    y = as_multi_hot(labels, codebook.shape[0]).to(v.dtype)
    cos = F.normalize(v, dim=1) @ F.normalize(codebook.to(v.dtype), dim=1).t()
    if margin_type == "cos":
        logits = scale * (cos - margin * y)
    elif margin_type == "arc":
        logits = scale * torch.cos(torch.acos(cos.clamp(-0.99999, 0.99999)) + margin * y)
    else:
        raise ValueError(f"margin_type must be 'cos' or 'arc', got {margin_type!r} (option model.margin_type)")
    if multiclass_loss == "label_smoothing":
        # an image without labels (MIRFlickr, NUS-WIDE lists have some) adds 0 instead of the official 0/0 = NaN
        ce = -(y / y.sum(dim=1, keepdim=True).clamp_min(1) * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    elif multiclass_loss == "bce":
        ce = F.binary_cross_entropy_with_logits(logits, y)
    else:
        raise ValueError(f"multiclass_loss must be 'label_smoothing' or 'bce', got {multiclass_loss!r} "
                         "(option model.multiclass_loss)")
    target = v.detach().sign()
    if quan_type == "cs":
        q = (1 - F.cosine_similarity(v, target, dim=1)).mean()
    elif quan_type == "l1":
        q = (v - target).abs().mean()
    elif quan_type == "l2":
        q = (v - target).pow(2).mean()
    else:
        raise ValueError(f"quan_type must be 'cs', 'l1' or 'l2', got {quan_type!r} (option model.quan_type)")
    return {"loss": ce + quan * q, "ce": ce, "quantization": q}


def dpn_loss(
    u: torch.Tensor,
    labels: torch.Tensor,
    centers: torch.Tensor,
    margin: float = 1.0,
    variant: Literal["official", "deephash"] = "official",
    random_center: torch.Tensor | None = None,
) -> Dict[str, torch.Tensor]:
    """DPN's polarization loss: a hinge ``max(0, m − u·t)`` on every bit of every image towards its class code t.

    ``official`` (``kamwoh/DPN@b4d721e:scripts/train_hashing.py: calculate_loss``, ``sl`` branch): summed over the
    K bits; an image with several labels pays the hinge to each of its classes' codes (summed), then the mean over
    the batch. ``deephash`` (``swuxyj/DeepHash-pytorch@ab14068:DPN.py: DPNLoss.forward, label2center``): the mean
    over B·K entries towards one target per image — the class code, or for several labels the sign of the sum of
    their codes with ties from ``random_center`` (CSQ's rule).
    """
    y = as_multi_hot(labels, centers.shape[0]).to(u.dtype)
    c = centers.to(u.dtype)
    if variant == "official":
        hinge = torch.relu(margin - u.unsqueeze(1) * c.unsqueeze(0)).sum(dim=2)  # (B, C)
        polar = (hinge * y).sum(dim=1).mean()
    elif variant == "deephash":
        total = y @ c
        ties = random_center.to(u.dtype).expand_as(total) if random_center is not None else torch.ones_like(total)
        t = torch.where(total > 0, 1.0, torch.where(total < 0, -1.0, ties)).to(u.dtype)
        polar = torch.relu(margin - u * t).mean()
    else:
        raise ValueError(f"variant must be 'official' or 'deephash', got {variant!r} (option model.variant)")
    return {"loss": polar, "polarization": polar}
