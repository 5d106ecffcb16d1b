"""Code-quality statistics of a code matrix: per-bit balance and entropy, share of distinct codes."""

from __future__ import annotations

import torch

from .inputs import to_signed_codes


def bit_statistics(codes) -> dict:
    """Code-quality statistics of a (N, K) code matrix (binarised with :func:`to_signed_codes`).

    Returns ``plus_one_rate`` (K,) share of +1 per bit, ``bit_entropy`` (K,) binary entropy of each bit
    in bits, ``mean_bit_entropy`` (float, 1.0 = perfectly balanced) and ``distinct_code_fraction``
    (float: distinct codes / N).
    """
    signed = to_signed_codes(codes)
    if signed.shape[0] == 0:
        raise ValueError("bit_statistics needs at least one code")
    p = (signed > 0).double().mean(0)
    entropy = torch.zeros_like(p)
    for share in (p, 1 - p):  # -sum p log2 p, with 0 log 0 = 0
        entropy -= torch.where(share > 0, share * torch.log2(share.clamp(min=1e-300)), torch.zeros_like(share))
    distinct = torch.unique(signed > 0, dim=0).shape[0]
    return {
        "plus_one_rate": p,
        "bit_entropy": entropy,
        "mean_bit_entropy": float(entropy.mean()),
        "distinct_code_fraction": distinct / signed.shape[0],
    }
