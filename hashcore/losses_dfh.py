"""DFH (Deep Fisher Hashing, Li, Pei, Zha & van Gemert, BMVC 2019): the pairwise likelihood of a batch against the
whole training set with a margin, the binary codes of the B-step and the class centres of the C-step (pure torch).

Official code ``liyunqianggyn/Push-for-Quantization-Deep-Fisher-Hashing@43c62aa`` (``Main.py: main``,
``models/DFH_loss.py: DFHLoss_margin``, ``center.py: Discretecenter, Relaxcenter``); the DeepHash-pytorch port
``swuxyj/DeepHash-pytorch@ab14068:DFH.py: DFHLoss``. Shapes here are row-major — (n, K) codes, (C, K) centres —
where the official code keeps (K, n) and (K, C) columns. docs/methods.md#dfh compares them.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F


def dfh_label_weights(labels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """(n, C) 0/1 labels → the weights the B- and C-steps use: each image's row divided by its number of labels
    (``Main.py``'s "multi-label process", ``Y = Y / Y.sum(0)``), or the labels as they are (``normalize=False``, the
    DeepHash-pytorch port). An image without labels keeps a zero row (the official 0/0 would be NaN)."""
    y = labels.float() if not labels.is_floating_point() else labels
    return y / y.sum(dim=1, keepdim=True).clamp_min(1) if normalize else y


def dfh_binary_codes(u: torch.Tensor, centers: torch.Tensor, weights: torch.Tensor, mu: float = 1.0) -> torch.Tensor:
    """The B-step: ``b_i = sign(mu · Σ_c w_ic c_c + u_i)``, no gradient (``Main.py``: ``batchB = (mu * CenTer @
    batchY + U_batch).sign()``). ``torch.sign``: a 0 stays 0, as there."""
    return torch.sign(mu * weights.to(u.dtype) @ centers.to(u.dtype) + u.detach())


def dfh_discrete_centers(centers: torch.Tensor, weights: torch.Tensor, b: torch.Tensor, vul: float = 1.0
                         ) -> torch.Tensor:
    """The C-step by discrete cyclic coordinate descent (``center.py: Discretecenter``, the official default).

    One pass over the classes, each using the rows already updated in this pass:
    ``c_i = sign(Σ_n w_ni b_n − Σ_{j≠i} (Σ_n w_nj w_ni) c_j − vul · Σ_{j≠i} c_j)``. ``centers`` (C, K), ``weights``
    (n, C), ``b`` (n, K); returns new (C, K) centres (the input is not changed)."""
    c = centers.detach().clone().to(b.dtype)
    w = weights.to(b.dtype)
    q = w.t() @ b            # (C, K): Σ_n w_ni b_n
    overlap = w.t() @ w      # (C, C): Σ_n w_nj w_ni
    for i in range(c.shape[0]):
        others = torch.ones(c.shape[0], dtype=torch.bool, device=c.device)
        others[i] = False
        c[i] = torch.sign(q[i] - overlap[i, others] @ c[others] - vul * c[others].sum(dim=0))
    return c


def dfh_relaxed_centers(relaxed: torch.Tensor, weights: torch.Tensor, b: torch.Tensor, vul: float = 1.0,
                        nta: float = 1.0, steps: int = 200, lr: float = 0.03) -> torch.Tensor:
    """The C-step relaxed to real centres V (``center.py: Relaxcenter``, commented out in ``Main.py``; the
    DeepHash-pytorch port's only one): ``steps`` plain gradient steps on

        mean_{n×K}((w V − b)²) + vul · mean_{C×C}((V Vᵀ − K·T)²) + nta · mean_{C×K}((V − sign V)²),

    ``T = 2I − 1`` (+1 between a class and itself, −1 between classes), the step ``lr`` ×0.1 from step 148 and again
    from 178 (the official counter ``num`` starts at 1 and is raised before the check). Returns the new (C, K) V;
    the centres are ``sign(V)``."""
    v = relaxed.detach().clone().to(b.dtype)
    w, k = weights.to(b.dtype), v.shape[1]
    target = k * (2 * torch.eye(v.shape[0], dtype=v.dtype, device=v.device) - 1)
    with torch.enable_grad():
        for step in range(steps):
            v.requires_grad_(True)
            loss = ((w @ v - b).pow(2).mean() + vul * (v @ v.t() - target).pow(2).mean()
                    + nta * (v - v.detach().sign()).pow(2).mean())
            (grad,) = torch.autograd.grad(loss, v)
            if step in (148, 178):
                lr = lr * 0.1
            v = (v - lr * grad).detach()
    return v


def dfh_loss(
    u: torch.Tensor,
    codes_u: torch.Tensor,
    similarity: torch.Tensor,
    b: torch.Tensor,
    margin: float = 0.0,
    eta: float = 0.5,
) -> Dict[str, torch.Tensor]:
    """DFH's U-step loss: pairwise likelihood of the batch against every training row with a margin + quantization
    towards the B-step codes.

    ``u`` (n, K) batch outputs, ``codes_u`` (N, K) the outputs of the whole training set kept by index (the batch's
    own rows already written; no gradient), ``similarity`` (n, N) ``s_ij = 1[y_i · Y_j > 0]``, ``b`` (n, K) the B-step
    codes (no gradient). With ``θ_ij = clamp(u_i · U_j / 2, −100, 50)``::

        metric       = mean_{n×N} [(1 − s_ij) log(1 + e^{m + θ_ij}) + s_ij log(1 + e^{m − θ_ij})]
        quantization = mean_{n×K} (b − u)²
        loss = metric + eta · quantization

    With ``margin`` 0 (the official default: ``Main.py``, ``margin = 0``; ``DFH_loss.py`` runs the line marked
    "Without Margin", ``log(1 + e^θ) − s θ``, the same function) this is DPSH's likelihood with means instead of sums;
    the DeepHash-pytorch port uses the margin form with m = 3. Rows of U not seen yet are zero: each adds
    ``log(1 + e^m)`` and no gradient, whatever its label.
    """
    if u.dim() != 2 or codes_u.dim() != 2 or u.shape[1] != codes_u.shape[1]:
        raise ValueError(f"dfh_loss expects u (n, K) and codes_u (N, K), got {tuple(u.shape)} and "
                         f"{tuple(codes_u.shape)}")
    if similarity.shape != (u.shape[0], codes_u.shape[0]) or b.shape != u.shape:
        raise ValueError("dfh_loss: similarity must be (n, N) and b (n, K)")
    theta = (u @ codes_u.detach().t() / 2).clamp(min=-100, max=50)  # the official overflow guard
    s = similarity.to(u.dtype)
    metric = ((1 - s) * F.softplus(margin + theta) + s * F.softplus(margin - theta)).mean()
    quantization = (b.detach() - u).pow(2).mean()
    return {"loss": metric + eta * quantization, "metric": metric, "quantization": quantization}
