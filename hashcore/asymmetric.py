"""ADSH (Jiang & Li, AAAI 2018): the asymmetric loss between network outputs of sampled queries and database codes
V learned directly, the soft similarity it uses, and the closed-form bit-by-bit update of V.

Source: ``jiangqy/ADSH-AAAI2018@2e95574:ADSH_pytorch`` — ``utils/adsh_loss.py: ADSHLoss.forward`` (the loss),
``ADSH_CIFAR_10.py: calc_sim`` (the similarity) and ``ADSH_CIFAR_10.py: adsh_algo`` (the V update, "learning binary
codes: discrete coding"). Pure torch: no Lightning.
"""
from __future__ import annotations

from typing import Dict

import torch


def adsh_similarity(sample_labels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``S`` (n, N): 1 where a sampled query shares a label with a database row, ``-r`` otherwise, with
    ``r = #similar / #dissimilar`` (the official "soft constraint" that balances the two kinds of pairs)."""
    s = (sample_labels.float() @ labels.float().t() > 0).float()
    dissimilar = (1 - s).sum()
    r = s.sum() / dissimilar if dissimilar > 0 else s.new_zeros(())
    return s * (1 + r) - r


def adsh_loss(u: torch.Tensor, codes_v: torch.Tensor, similarity: torch.Tensor, v_omega: torch.Tensor,
              gamma: float = 200.0) -> Dict[str, torch.Tensor]:
    """The asymmetric loss of a batch ``u`` (n, K) of query outputs against every database code ``codes_v`` (N, K)::

        square       = sum_ij (u_i . v_j - K s_ij)^2 / (N n)
        quantization = sum_i |v_omega_i - u_i|^2 / (N n)
        loss = square + gamma * quantization

    ``similarity`` (n, N) from :func:`adsh_similarity`, ``v_omega`` (n, K) the batch's own rows of V. V gets no
    gradient: it is learned by :func:`adsh_update_codes`."""
    if u.dim() != 2 or codes_v.dim() != 2 or u.shape[1] != codes_v.shape[1]:
        raise ValueError(f"adsh_loss expects u (n, K) and codes_v (N, K), got {tuple(u.shape)} and "
                         f"{tuple(codes_v.shape)}")
    if similarity.shape != (u.shape[0], codes_v.shape[0]) or v_omega.shape != u.shape:
        raise ValueError("adsh_loss: similarity must be (n, N) and v_omega (n, K)")
    bits, norm = u.shape[1], codes_v.shape[0] * u.shape[0]
    square = (u @ codes_v.detach().t() - bits * similarity).pow(2).sum() / norm
    quantization = (v_omega.detach() - u).pow(2).sum() / norm
    return {"loss": square + gamma * quantization, "square": square, "quantization": quantization}


def adsh_update_codes(codes_v: torch.Tensor, u: torch.Tensor, similarity: torch.Tensor, sample_index: torch.Tensor,
                      gamma: float = 200.0) -> torch.Tensor:
    """New V (N, K) minimising ``|u V^T - K S|^2 + gamma |V_omega - u|^2`` one bit (column) at a time, the others
    fixed, in closed form: ``V_k = -sign(Q_k + 2 V_{-k} U_{-k}^T U_k)`` with ``Q = -2K S^T U - 2 gamma barU``
    (barU: U in the sampled rows, 0 elsewhere). ``u`` (n, K) the outputs of the sampled rows ``sample_index``.
    As the official numpy code, an exact 0 stays 0 (``np.sign``)."""
    v = codes_v.clone().double()
    u, s = u.double(), similarity.double()
    bits = u.shape[1]
    bar_u = torch.zeros_like(v)
    bar_u[sample_index] = u
    q = -2 * bits * s.t() @ u - 2 * gamma * bar_u
    for k in range(bits):
        others = [i for i in range(bits) if i != k]
        v[:, k] = -torch.sign(q[:, k] + 2 * v[:, others] @ (u[:, others].t() @ u[:, k]))
    return v.to(codes_v.dtype)
