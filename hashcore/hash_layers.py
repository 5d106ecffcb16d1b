"""Binarization layers with hand-written gradients (pure torch; no Lightning, nothing of ours).

Each layer follows one official implementation; the docstrings name the file and say where the
paper differs (docs/methods.md has the whole comparison). Sources:

* ``ssppp/GreedyHash@e5089b2:unsupervised_vgg.py`` (``class hash``) and
  ``zexuanqiu/CIBHash@4c896ee:model/CIBHash.py`` (``class hash``): sign forward, identity backward.
* ``liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a:ImageHashing/Cifar10_I.py`` (``class hash``):
  the Bi-half layer.
* ``zexuanqiu/CIBHash@4c896ee:model/CIBHash.py`` (``forward``, ``encode_discrete``): ``sign(prob - 0.5)``.
* ``liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a:AutoEncoder/Sign.py`` and ``SignReg.py``
  (``class hash``): sign forward with the Bi-half paper's extra pull gradient (the autoencoder study's baselines).
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = [
    "SignSTE",
    "sign_ste",
    "BiHalf",
    "bihalf",
    "bernoulli_ste",
    "cib_binarize",
    "SignPull",
    "sign_pull",
]


# --------------------------------------------------------------------------------------------------
# sign with straight-through gradient
# --------------------------------------------------------------------------------------------------
class SignSTE(torch.autograd.Function):
    """``b = sign(x)`` forward, ``dL/dx = dL/db`` backward (straight-through estimator).

    Source: GreedyHash ``unsupervised_vgg.py`` / ``cifar*.py`` and CIBHash ``model/CIBHash.py``, both
    ``class hash(Function)``: ``forward = torch.sign(input)``, ``backward = grad_output``.

    ``torch.sign(0) == 0``: an exact zero stays 0 in training, as in the official code. Mapping 0 to
    +1 is the evaluator's job (``encode()`` contract), not this layer's.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - documented on the class
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # Identity: the gradient skips the (almost everywhere zero) derivative of sign.
        return grad_output


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """``sign(x)`` with the straight-through (identity) gradient; see :class:`SignSTE`."""
    return SignSTE.apply(x)


# --------------------------------------------------------------------------------------------------
# Bi-half layer
# --------------------------------------------------------------------------------------------------
def _bihalf_codes(u: torch.Tensor) -> torch.Tensor:
    """Per column: the ``N // 2`` largest rows get +1, the other ``N - N // 2`` rows get -1.

    Ties are broken by a *stable* descending sort, so among equal values the lower row index
    ranks higher (gets +1 first). The official code uses ``U.sort(0, descending=True)``, which is
    not stable, so its tie order is unspecified; ours is deterministic.
    """
    n = u.shape[0]
    order = torch.sort(u, dim=0, descending=True, stable=True).indices
    # Rank-ordered template: top half +1, bottom half -1 (odd N: the extra row is -1).
    template = torch.full_like(u, -1.0)
    template[: n // 2] = 1.0
    # Put each rank's value back at the row that holds that rank.
    return torch.empty_like(u).scatter_(0, order, template)


def _check_bihalf_input(u: torch.Tensor) -> None:
    if u.dim() != 2:
        raise ValueError(
            f"Bi-half expects a 2-D (batch, bits) tensor, got shape {tuple(u.shape)}."
        )
    if u.shape[0] < 2:
        raise ValueError(
            "Bi-half splits every bit half/half over the batch, so it needs a batch of at least 2 "
            f"rows; got {u.shape[0]}. Use drop_last=True (or a batch_size >= 2) for training; at "
            "test time the official code encodes with sign(h), not with the Bi-half layer."
        )



def code_pull(u: torch.Tensor, b: torch.Tensor, gamma: float) -> torch.Tensor:
    """The extra gradient that pulls U towards its code B, ``gamma (U - B) / numel`` with numel = N*K as in the
    official Bi-half code (bi-half and the autoencoders' sign layers)."""
    return gamma * (u - b) / b.numel()

class BiHalf(torch.autograd.Function):
    """Bi-half layer (Li & van Gemert, AAAI 2021), applied column-wise over the mini-batch.

    Forward, for U of shape (N, K): in every column the top ``floor(N/2)`` values map to +1 and the
    remaining ``N - floor(N/2)`` to -1 (odd N: the extra row is -1). Ties: stable descending sort,
    the lower row index wins.

    Backward: ``dL/dU = dL/dB + gamma * (U - B) / (N * K)``.

    Source: ``Deep-Unsupervised-Image-Hashing:ImageHashing/Cifar10_I.py`` ``class hash``:
    ``grad = g + gamma * (U - B) / B.numel()`` with ``gamma = 6`` in every image script. The paper
    (eq. 9 and Sec. 4 "implementation details"; docs/methods.md#bi-half-net) writes
    ``dL/dU = dL/dB + gamma' (U - B)`` with ``gamma' = 3 / (N K)``: the same form with constant
    3 instead of 6, i.e. ``gamma=3.0`` here. The official value 6 is the default.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, gamma: float) -> torch.Tensor:  # noqa: D102
        _check_bihalf_input(u)
        b = _bihalf_codes(u)
        ctx.save_for_backward(u, b)
        ctx.gamma = float(gamma)
        return b

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # noqa: D102
        u, b = ctx.saved_tensors
        return grad_output + code_pull(u, b, ctx.gamma), None


def bihalf(u: torch.Tensor, gamma: float = 6.0) -> torch.Tensor:
    """Bi-half codes of ``u`` (N, K) with the Bi-half gradient; see :class:`BiHalf`.

    ``gamma=6.0`` is the official code's value; ``gamma=3.0`` is the paper's ``3/(N*K)``.
    Raises ``ValueError`` for a batch of one row or a non 2-D input.
    """
    return BiHalf.apply(u, gamma)


# --------------------------------------------------------------------------------------------------
# CIBHash binarization
# --------------------------------------------------------------------------------------------------
def bernoulli_ste(prob: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Stochastic binary code ``b = +1 if prob > u else -1``, ``u ~ U[0, 1)``, identity gradient.

    The CIBHash *paper's* stochastic layer: ``b~ = (sign(sigmoid(z) - u) + 1) / 2`` with a
    straight-through gradient (a Bernoulli(prob) sample). We return the {-1, +1} form so that the
    only change from the official path (:func:`cib_binarize`) is the threshold ``u`` instead of 0.5.
    ``prob == u`` (probability zero, but ``torch.rand`` can return exactly 0) maps to -1, so the
    output is always +-1. Gradient: ``dL/dprob = dL/db`` (``u`` is a constant).

    ``generator`` makes the draw reproducible; it must live on ``prob``'s device.
    """
    u = torch.rand(prob.shape, generator=generator, device=prob.device, dtype=prob.dtype)
    hard = torch.where(prob > u, 1.0, -1.0).to(prob.dtype)
    # Straight-through: value of `hard`, gradient of `prob`.
    return prob + (hard - prob).detach()


def cib_binarize(
    prob: torch.Tensor, stochastic: bool = False, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """CIBHash codes from the sigmoid probabilities ``prob``.

    * ``stochastic=False`` (default, official code): ``sign(prob - 0.5)`` with the identity gradient
      (``model/CIBHash.py``: ``z = hash_layer(prob - 0.5)`` in ``forward`` and ``encode_discrete``).
      ``prob == 0.5`` exactly gives 0, as in the official code.
    * ``stochastic=True`` (paper): :func:`bernoulli_ste`, a Bernoulli(prob) sample in {-1, +1}.
    """
    if stochastic:
        return bernoulli_ste(prob, generator=generator)
    return sign_ste(prob - 0.5)


# --------------------------------------------------------------------------------------------------
# sign with the pull gradient (the Bi-half autoencoder study's sign layers)
# --------------------------------------------------------------------------------------------------
class SignPull(torch.autograd.Function):
    """``b = sign(u)`` forward; backward ``dL/du = dL/db + gamma * (u - b) / (N * K)`` for u of shape (N, K).

    Source: ``Deep-Unsupervised-Image-Hashing@1cd671a:AutoEncoder/Sign.py`` and ``SignReg.py``, ``class hash``:
    ``extrgrad = (uu - B_code) / (size[0] * size[1]); grad_output + gamma * extrgrad`` with ``gamma = 0.2``. It is
    the Bi-half layer's backward (:class:`BiHalf`) with the sign in place of the half/half split, so the study
    compares the two forwards under the same gradient. ``gamma=0`` is the plain straight-through sign
    (:class:`SignSTE`). ``torch.sign(0) == 0`` stays 0, as in the official code.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, gamma: float) -> torch.Tensor:  # noqa: D102
        if u.dim() != 2:
            raise ValueError(f"sign_pull expects a 2-D (batch, bits) tensor, got shape {tuple(u.shape)}.")
        b = torch.sign(u)
        ctx.save_for_backward(u, b)
        ctx.gamma = float(gamma)
        return b

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # noqa: D102
        u, b = ctx.saved_tensors
        return grad_output + code_pull(u, b, ctx.gamma), None


def sign_pull(u: torch.Tensor, gamma: float = 0.2) -> torch.Tensor:
    """``sign(u)`` with the straight-through gradient plus the pull ``gamma (u - b) / (N K)``; see :class:`SignPull`.

    ``gamma=0.2`` is the official autoencoder scripts' value.
    """
    return SignPull.apply(u, gamma)
