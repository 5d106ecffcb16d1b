"""Hashing losses of CIBHash, Bi-half Net, GreedyHash and DCH (pure torch; no Lightning, nothing of ours).

Every function states its formula and the official file it follows. Where the paper and the official
code differ, the official behaviour is the default and the paper's is an option (documented per
function; docs/methods.md compares them method by method). Sources:

* CIBHash: ``zexuanqiu/CIBHash@4c896ee:model/CIBHash.py`` (``NtXentLoss``, ``compute_kl``).
* Bi-half: ``liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a:ImageHashing/Cifar10_I.py``.
* GreedyHash: ``ssppp/GreedyHash@e5089b2:unsupervised_vgg.py`` and ``cifar2.py``;
  ``swuxyj/DeepHash-pytorch@ab14068:GreedyHash.py`` for multi-hot labels.
* Bit balance: ``liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a:AutoEncoder/SignReg.py``.
* DCH: ``thulab/DeepHash@9907613:DeepHash/model/dch/dch.py`` (``cauchy_cross_entropy``,
  ``apply_loss_function``) and ``swuxyj/DeepHash-pytorch@ab14068:DCH.py`` (``DCHLoss``).
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

__all__ = [
    "nt_xent",
    "cib_kl",
    "cosine_mse_halves",
    "greedy_penalty",
    "greedy_supervised_loss",
    "dch_loss",
    "pair_similarity",
    "bit_balance_penalty",
]


# --------------------------------------------------------------------------------------------------
# CIBHash
# --------------------------------------------------------------------------------------------------
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.3) -> torch.Tensor:
    """NT-Xent (SimCLR) loss between two views, exactly as CIBHash's ``NtXentLoss``.

    With ``z = cat(z1, z2)`` (2N rows), ``sim_ab = cos(z_a, z_b) / tau`` and ``p(a)`` the other view
    of row ``a`` (``a +- N``)::

        loss = 1/(2N) * sum_a [ -sim_{a,p(a)} + log sum_{b != a} exp(sim_ab) ]

    i.e. cross-entropy with the positive as the target class and the 2N-2 other rows as negatives
    (self excluded), ``CrossEntropyLoss(reduction='sum') / 2N``.

    Source: ``model/CIBHash.py: NtXentLoss.forward`` (``nn.CosineSimilarity(dim=2)``, eps 1e-8,
    i.e. ``x.y / (max(|x|, eps) max(|y|, eps))``; we normalise with the same per-row eps and take one
    matrix product, which is identical and needs O(N^2) instead of O(N^2 K) memory). An all-zero row
    (a code of exact zeros) has cosine 0 with everything, as in the official code. For +-1 codes
    ``cos = b.b'/K``. Default ``temperature=0.3`` (official ``--temperature``).

    N = 1 gives 0 (the only other row is the positive), as the official code does. Under DDP, gather
    the views of all ranks first (the negatives are the whole global batch).
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"nt_xent expects two (N, K) views of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}."
        )
    n = z1.shape[0]
    if n < 1:
        raise ValueError("nt_xent needs at least one pair of views.")
    z = F.normalize(torch.cat((z1, z2), dim=0), dim=1, eps=1e-8)
    sim = z @ z.t() / temperature
    # Self-similarity is neither positive nor negative: drop it from the softmax.
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    # Row a's positive sits at column a + N (first view) or a - N (second view).
    target = torch.cat((torch.arange(n, 2 * n), torch.arange(0, n))).to(z.device)
    return F.cross_entropy(sim, target, reduction="sum") / (2 * n)


def _bernoulli_kl(p: torch.Tensor, q: torch.Tensor, eps: float) -> torch.Tensor:
    """Batch mean of ``sum_k KL(Bern(p_k) || Bern(q_k))`` with ``eps`` inside every log."""
    kl = p * (torch.log(p + eps) - torch.log(q + eps)) + (1 - p) * (
        torch.log(1 - p + eps) - torch.log(1 - q + eps)
    )
    return kl.sum(dim=1).mean()


def cib_kl(p1: torch.Tensor, p2: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Symmetric KL between the two views' Bernoulli posteriors, stop-gradient on the target.

    ``cib_kl = (KL(p1 || sg p2) + KL(p2 || sg p1)) / 2`` with, per view pair,
    ``KL(p || q) = mean_batch sum_bits [p (log(p+eps) - log(q+eps)) + (1-p)(log(1-p+eps) - log(1-q+eps))]``.

    Source: ``model/CIBHash.py: compute_kl(prob, prob_v)`` (``prob_v = prob_v.detach()``; eps 1e-8
    added inside each of the four logs) and ``forward``:
    ``kl_loss = (compute_kl(prob_i, prob_j) + compute_kl(prob_j, prob_i)) / 2``, weight 0.001.
    This is *not* the paper's KL to a Bernoulli(0.5) prior (docs/methods.md#cibhash); the official form
    is the only one implemented.
    """
    if p1.dim() != 2 or p1.shape != p2.shape:
        raise ValueError(
            f"cib_kl expects two (N, K) probability tensors of equal shape, got {tuple(p1.shape)} and {tuple(p2.shape)}."
        )
    return (_bernoulli_kl(p1, p2.detach(), eps) + _bernoulli_kl(p2, p1.detach(), eps)) / 2


# --------------------------------------------------------------------------------------------------
# Unsupervised Bi-half / GreedyHash
# --------------------------------------------------------------------------------------------------
def cosine_mse_halves(b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving loss of unsupervised Bi-half and GreedyHash.

    With ``n = B/2``: ``mean_i (cos(b_i, b_{n+i}) - cos(x_i, x_{n+i}))^2`` for i < n, i.e.
    ``F.mse_loss(cos(b[:n], b[n:]), cos(x[:n], x[n:]))`` -- pairs of *different* images (first half
    of the batch against the second), no augmented views. ``x`` is the (frozen-backbone) feature and
    is not detached here: the official backbone is frozen, so it has no gradient there anyway.

    Source: ``Cifar10_I.py`` training loop (``target_b``, ``target_x``, ``F.mse_loss``) and
    GreedyHash ``unsupervised_vgg.py`` (``loss1``). The paper writes ``||cos(a1,a2) - cos(b1,b2)||^2``.
    """
    n_rows = b.shape[0]
    if n_rows < 2 or n_rows % 2:
        raise ValueError(
            f"cosine_mse_halves pairs the first half of the batch with the second half, so the batch "
            f"must be even and >= 2; got {n_rows}. Use drop_last=True with an even batch_size."
        )
    if x.shape[0] != n_rows:
        raise ValueError(f"b and x must have the same batch size, got {n_rows} and {x.shape[0]}.")
    n = n_rows // 2
    target_b = F.cosine_similarity(b[:n], b[n:], dim=1)
    target_x = F.cosine_similarity(x[:n], x[n:], dim=1)
    return F.mse_loss(target_b, target_x)


def greedy_penalty(h: torch.Tensor) -> torch.Tensor:
    """GreedyHash's cubic penalty ``mean(| |h| - 1 |^3)`` (= mean |h - sign h|^3 away from 0).

    Source: GreedyHash ``unsupervised_vgg.py`` / ``cifar*.py``:
    ``torch.mean(torch.abs(torch.pow(torch.abs(h) - 1, 3)))``.
    Gradient: ``3 (|h|-1)^2 sign(|h|-1) sign(h) / numel``.
    """
    return (h.abs() - 1).abs().pow(3).mean()


def greedy_supervised_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    h: torch.Tensor,
    alpha: float = 0.1,
    multilabel: str = "argmax",
) -> Dict[str, torch.Tensor]:
    """Supervised GreedyHash: ``CE(fc(sign h), y) + alpha * greedy_penalty(h)``.

    ``logits`` is ``fc(code)`` computed by the caller (``fc = Linear(K, C, bias=False)`` on the sign
    codes in the official code), ``h`` the continuous pre-sign output.

    Labels: class indices (1-D integer) or multi-hot/one-hot (B, C) floats. The official code is
    single-label CE (``cifar*.py``, ``imagenet.py``: ``nn.CrossEntropyLoss``). For (B, C) labels:

    * ``multilabel="argmax"`` (default; DeepHash-pytorch ``GreedyHash.py``: ``onehot_y.argmax``):
      CE against the first positive class; exact for one-hot labels, drops the other labels of a
      multi-label sample.
    * ``multilabel="bce"``: ``binary_cross_entropy_with_logits`` averaged over all B*C entries, a
      deviation that keeps every label of multi-label data.

    ``alpha`` default 0.1 (``cifar1.py``, ``cifar2.py``); ``imagenet.py`` uses 1.
    Returns ``dict(loss=, classification=, penalty=)`` with the unweighted penalty.
    """
    if labels.dim() == 1:
        cls = F.cross_entropy(logits, labels.long())
    elif multilabel == "argmax":
        cls = F.cross_entropy(logits, labels.argmax(dim=1))
    elif multilabel == "bce":
        cls = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    else:
        raise ValueError(f"multilabel must be 'argmax' or 'bce', got {multilabel!r}.")
    penalty = greedy_penalty(h)
    return {"loss": cls + alpha * penalty, "classification": cls, "penalty": penalty}


# --------------------------------------------------------------------------------------------------
# DCH
# --------------------------------------------------------------------------------------------------
def pair_similarity(labels: torch.Tensor) -> torch.Tensor:
    """``s_ij = 1[y_i . y_j > 0]`` for multi-hot (B, C) labels, or ``1[y_i == y_j]`` for 1-D indices.

    For 0/1 labels this equals thulab's ``clip(y_i . y_j, 0, 1)`` and DeepHash-pytorch's
    ``(y @ y.t() > 0)``.
    """
    if labels.dim() == 1:
        return (labels[:, None] == labels[None, :]).float()
    y = labels.float()
    return (y @ y.t() > 0).float()


def _port_cos_distance(a: torch.Tensor, b: torch.Tensor, bits: int) -> torch.Tensor:
    """DeepHash-pytorch ``DCHLoss.d``: ``K/2 * (1 - clamp(cos, max=0.99))``.

    ``cos = a_i.b_j / clamp(|a_i| |b_j|, min=1e-4)``. The clamp at 0.99 keeps ``d >= 0.005 K`` so
    ``log(1 + gamma/d)`` stays finite (and gives zero gradient where cos > 0.99, e.g. the diagonal).
    The paper's eq. 6 is the unclamped ``K/2 (1 - cos)``.
    """
    inner = a @ b.t()
    norms = a.norm(dim=1, keepdim=True) @ b.norm(dim=1, keepdim=True).t()
    cos = inner / norms.clamp(min=1e-4)
    return (1 - cos.clamp(max=0.99)) * bits / 2


def _dch_paper(u: torch.Tensor, s: torch.Tensor, gamma: float) -> Dict[str, torch.Tensor]:
    """Paper DCH terms as in DeepHash-pytorch ``DCH.py`` (eq. 2, 6, 8, 9)."""
    bits = u.shape[1]
    n_all, n_sim = s.numel(), s.sum()
    n_dis = n_all - n_sim
    # eq. 2; |S|, |S1|, |S0| count all B^2 entries, diagonal included (as the port). For a
    # one-sided batch the port sets w = 1; the clamped denominators give exactly that without a
    # host sync (S1 empty: s = 0 and |S|/|S0| = 1; S0 empty: |S|/|S1| = 1).
    w = s * n_all / n_sim.clamp(min=1) + (1 - s) * n_all / n_dis.clamp(min=1)
    d = _port_cos_distance(u, u, bits)
    # eq. 8, written as s log(1 + d/g) + (1-s) log(1 + g/d); the port's
    # s log(d/g) + log(1 + g/d) is the same number.
    cauchy = (w * (s * torch.log1p(d / gamma) + (1 - s) * torch.log1p(gamma / d))).mean()
    # eq. 9 with d(|u_i|, 1); the port builds a (B, batch_size) matrix of identical columns,
    # whose mean is this per-row mean.
    ones = torch.ones(1, bits, dtype=u.dtype, device=u.device)
    quant = torch.log1p(_port_cos_distance(u.abs(), ones, bits) / gamma).mean()
    return {"cauchy": cauchy, "quantization": quant}


def _dch_thulab(u: torch.Tensor, s: torch.Tensor, gamma: float) -> Dict[str, torch.Tensor]:
    """Official TF DCH terms: ``cauchy_cross_entropy(u, label, gamma, normed=False)`` and q_loss."""
    n = u.shape[0]
    sq = (u * u).sum(dim=1)
    # Squared Euclidean distance + 0.001 (the TF constant keeps log(1 + g/dist) finite).
    dist = sq[:, None] - 2 * (u @ u.t()) + sq[None, :] + 0.001
    # -log c and -log(1 - c) for c = g/(dist + g), in log1p form.
    pair = s * torch.log1p(dist / gamma) + (1 - s) * torch.log1p(gamma / dist)
    n_sim = s.sum()  # diagonal included, as tf.reduce_sum(s)
    # TF: |s - 1| + (sum|2s - 1| / sum s) * s  ->  n^2 / sum(s) on similar pairs, 1 otherwise.
    # sum(s) = 0 (every label row empty) is NaN in TF; the clamp makes every weight 1 instead.
    balance = (1 - s) + s * (n * n) / n_sim.clamp(min=1)
    off_diag = ~torch.eye(n, dtype=torch.bool, device=u.device)
    cauchy = (pair * balance)[off_diag].mean()
    quant = ((u.abs() - 1) ** 2).mean()
    return {"cauchy": cauchy, "quantization": quant}


def dch_loss(
    u: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 20.0,
    lam: float = 0.1,
    variant: str = "paper",
    q_lambda: float = 0.0,
) -> Dict[str, torch.Tensor]:
    """Deep Cauchy Hashing loss. Returns ``dict(loss=, cauchy=, quantization=)``.

    ``quantization`` is always the *unweighted* term; ``loss = cauchy + lam * quantization`` for
    ``variant="paper"`` and ``loss = cauchy + q_lambda * quantization`` for ``variant="thulab"``.
    ``s_ij = 1[y_i . y_j > 0]`` (:func:`pair_similarity`).

    ``variant="paper"`` -- the paper's formulas as ported in DeepHash-pytorch ``DCH.py: DCHLoss``
    (raw network outputs, no tanh; defaults gamma 20, lambda 0.1):

    * ``d_ij = K/2 (1 - clamp(cos(u_i, u_j), max=0.99))``, cos denominator clamped at >= 1e-4;
    * ``w_ij = s |S|/|S1| + (1-s) |S|/|S0|`` over all B^2 entries (diagonal included); ``w = 1`` when
      S1 or S0 is empty;
    * ``cauchy = mean_{i,j} w_ij [s log(1 + d/gamma) + (1-s) log(1 + gamma/d)]`` over all B^2 pairs,
      diagonal included (it adds a constant with zero gradient because of the 0.99 clamp);
    * ``quantization = mean_i log(1 + d(|u_i|, 1)/gamma)``.

    ``variant="thulab"`` -- the official TF code, ``dch.py: cauchy_cross_entropy(normed=False)`` and
    ``apply_loss_function`` (``u`` should be tanh outputs; the method module applies tanh):

    * ``dist_ij = |u_i|^2 - 2 u_i.u_j + |u_j|^2 + 0.001`` (squared Euclidean, not the paper's
      cosine "Hamming" distance);
    * ``c = gamma/(dist + gamma)``, ``l_ij = -s log c - (1-s) log(1-c)``;
    * balance ``n^2 / sum(s)`` on similar pairs (sums over all n^2 entries, diagonal included) and
      1 on dissimilar pairs (the paper weights those by |S|/|S0|);
    * ``cauchy = mean over the n(n-1) off-diagonal pairs of balance * l``;
    * ``quantization = mean((|u| - 1)^2)`` with weight ``q_lambda`` (official default 0), not the
      paper's Cauchy quantization loss.

    The TF code's ``gamma`` default is 20 (``train_val_script.py``); the maintainer says the paper's
    results used gamma 30, lr 5e-3 (thulab/DeepHash issue #38). Needs a batch of >= 2 rows.
    """
    if u.dim() != 2:
        raise ValueError(f"dch_loss expects u of shape (B, K), got {tuple(u.shape)}.")
    if u.shape[0] < 2:
        raise ValueError(f"dch_loss is a pairwise loss and needs a batch of >= 2 rows, got {u.shape[0]}.")
    if labels.shape[0] != u.shape[0]:
        raise ValueError(f"u and labels must have the same batch size, got {u.shape[0]} and {labels.shape[0]}.")
    s = pair_similarity(labels).to(u.dtype)
    if variant == "paper":
        terms, weight = _dch_paper(u, s, gamma), lam
    elif variant == "thulab":
        terms, weight = _dch_thulab(u, s, gamma), q_lambda
    else:
        raise ValueError(f"variant must be 'paper' or 'thulab', got {variant!r}.")
    return {"loss": terms["cauchy"] + weight * terms["quantization"], **terms}



# --------------------------------------------------------------------------------------------------
# HashNet, DPSH, CSQ, DTSH (supervised; sources named per function, docs/methods.md compares them)
# --------------------------------------------------------------------------------------------------
__all__ += [
    "hashnet_loss",
    "dpsh_loss",
    "hadamard",
    "csq_hash_centers",
    "csq_label_centers",
    "csq_loss",
    "dtsh_loss",
]


def hashnet_loss(
    u1: torch.Tensor,
    u2: torch.Tensor,
    y1: torch.Tensor,
    y2: torch.Tensor,
    alpha: float,
    class_num: float = 1.0,
    threshold: float = 15.0,
    weighting: str = "official",
) -> torch.Tensor:
    """HashNet's weighted pairwise cross-entropy between the rows of ``u1`` and the rows of ``u2``.

    With ``s_ij = 1[y1_i . y2_j > 0]`` and ``d_ij = alpha * u1_i . u2_j`` (``u`` = tanh(beta h), computed by the
    caller), the per-pair loss is ``l_ij = log(1 + exp(d_ij)) - s_ij d_ij``.

    ``weighting="official"`` -- ``thuml/HashNet@85387b8:pytorch/src/loss.py: pairwise_loss`` (what ``train.py``
    calls): where ``d > threshold`` the log-sum is replaced by its asymptote, ``l = (1 - s) d``; similar pairs are
    weighted by ``class_num`` (the ``--class_num`` "positive/negative balance weight"), dissimilar pairs by 1::

        loss = (class_num * sum_{s=1} l + sum_{s=0} l) / (class_num |S1| + |S0|)

    ``weighting="paper"`` -- the paper's eq. 2 weights as in ``pairwise_loss_updated`` (same file, unused by
    ``train.py``) and ``swuxyj/DeepHash-pytorch@ab14068:HashNet.py: HashNetLoss``: ``w = |S|/|S1|`` on similar
    and ``|S|/|S0|`` on dissimilar pairs, ``loss = sum w l / |S|`` with the exact (stable) log-sum; an empty
    S1 or S0 gets weight 1 (the clamped count) instead of the division by zero.
    """
    if u1.dim() != 2 or u2.dim() != 2 or u1.shape[1] != u2.shape[1]:
        raise ValueError(f"hashnet_loss expects (N, K) and (M, K) outputs, got {tuple(u1.shape)} and {tuple(u2.shape)}.")
    if y1.shape[0] != u1.shape[0] or y2.shape[0] != u2.shape[0]:
        raise ValueError("hashnet_loss: each output block needs one label row per output row.")
    s = (y1.float() @ y2.float().t() > 0).to(u1.dtype)
    d = alpha * (u1 @ u2.t())
    if weighting == "official":
        exact = torch.log1p(torch.exp(d.clamp(max=threshold))) - s * d  # clamp: no overflow in the unused branch
        pair = torch.where(d > threshold, d * (1 - s), exact)
        weight = s * class_num + (1 - s)
        return (pair * weight).sum() / (class_num * s.sum() + (1 - s).sum())
    if weighting == "paper":
        pair = F.softplus(d) - s * d
        n_all, n_sim = s.numel(), s.sum()
        weight = s * n_all / n_sim.clamp(min=1) + (1 - s) * n_all / (n_all - n_sim).clamp(min=1)
        return (pair * weight).sum() / n_all
    raise ValueError(f"weighting must be 'official' or 'paper', got {weighting!r}.")


def dpsh_loss(
    u: torch.Tensor,
    codes_u: torch.Tensor,
    similarity: torch.Tensor,
    b: torch.Tensor,
    lam: float = 10.0,
) -> Dict[str, torch.Tensor]:
    """DPSH: pairwise likelihood of the batch against every training row + the quantization term.

    ``u`` (n, K) the batch outputs, ``codes_u`` (N, K) the outputs of the whole training set kept by index (the
    batch's own rows already written, no gradient), ``similarity`` (n, N) ``s_ij = 1[y_i . Y_j > 0]``, ``b`` (n, K)
    the batch's binary codes ``sign(u)`` (no gradient). With ``theta_ij = u_i . U_j / 2``::

        likelihood   = sum_ij [log(1 + exp(theta_ij)) - s_ij theta_ij] / (N n)
        quantization = sum_i |b_i - u_i|^2 / (N n)
        loss = likelihood + lam * quantization

    Source: ``jiangqy/DPSH-pytorch@0423181:DPSH_CIFAR_10.py: DPSH_algo`` (``theta_x``, ``Logtrick``, ``logloss``,
    ``regterm``, both divided by ``num_train * len(train_label)``; ``lamda`` 10 in ``DPSH_CIFAR_10_demo.py``).
    Rows of U not yet seen are zero, as there: they add log 2 each and no gradient. The DeepHash-pytorch port
    (``DPSH.py``) takes means instead and weights ``(u - sign u)^2`` averaged over the bits by 0.1.
    """
    if u.dim() != 2 or codes_u.dim() != 2 or u.shape[1] != codes_u.shape[1]:
        raise ValueError(f"dpsh_loss expects u (n, K) and codes_u (N, K), got {tuple(u.shape)} and {tuple(codes_u.shape)}.")
    if similarity.shape != (u.shape[0], codes_u.shape[0]) or b.shape != u.shape:
        raise ValueError("dpsh_loss: similarity must be (n, N) and b (n, K).")
    norm = codes_u.shape[0] * u.shape[0]
    theta = u @ codes_u.detach().t() / 2
    likelihood = (F.softplus(theta) - similarity * theta).sum() / norm
    quantization = (b.detach() - u).pow(2).sum() / norm
    return {"loss": likelihood + lam * quantization, "likelihood": likelihood, "quantization": quantization}


def hadamard(n: int) -> torch.Tensor:
    """The n x n Sylvester Hadamard matrix (``n`` a power of 2), ``H_2n = [[H, H], [H, -H]]``, as
    ``scipy.linalg.hadamard`` builds it."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"a Sylvester Hadamard matrix needs a power of 2, got {n}.")
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
    return h


def csq_hash_centers(num_classes: int, bits: int, generator: torch.Generator, tries: int = 20) -> torch.Tensor:
    """CSQ's hash centres (``num_classes``, ``bits``) in {-1, +1}.

    Rows of ``[H_K; -H_K]`` (K = ``bits`` a power of 2) for the first ``min(C, 2K)`` classes; every further class
    (or all classes when K is not a power of 2) gets a Bernoulli centre with exactly K/2 entries -1, redrawn up to
    ``tries`` times until the smallest pairwise Hamming distance exceeds K/4 and the mean reaches K/2.
    Source: ``swuxyj/DeepHash-pytorch@ab14068:CSQ.py: CSQLoss.get_hash_targets`` (the official repo
    ``yuanli2333/Hadamard-Matrix-for-hashing@55cab00`` ships the centres as .pkl files made the same way,
    ``Tutorial_ hash_center_generation.ipynb``). ``generator`` makes them reproducible (a model's seed).
    """
    power_of_two = bits >= 1 and not bits & (bits - 1)
    first = hadamard(bits) if power_of_two else torch.empty(0, bits)
    first = torch.cat((first, -first), 0)[:num_classes]
    centers = torch.empty(num_classes, bits)
    centers[: len(first)] = first
    if len(first) == num_classes:
        return centers
    for _ in range(tries):
        for c in range(len(first), num_classes):
            row = torch.ones(bits)
            row[torch.randperm(bits, generator=generator)[: bits // 2]] = -1
            centers[c] = row
        dist = (centers[:, None, :] != centers[None, :, :]).sum(-1).float()
        pairs = dist[torch.triu(torch.ones(num_classes, num_classes, dtype=torch.bool), diagonal=1)]
        if pairs.numel() == 0 or (pairs.min() > bits / 4 and pairs.mean() >= bits / 2):
            break
    return centers


def csq_label_centers(labels: torch.Tensor, centers: torch.Tensor, random_center: torch.Tensor) -> torch.Tensor:
    """Each sample's target centre: the sign of the sum of its labels' centres; a 0 (a tie, or no label) takes
    the bit of the fixed ``random_center``. One-hot labels give their class centre; 1-D labels index ``centers``.

    Source: ``yuanli2333/Hadamard-Matrix-for-hashing@55cab00:train.py: Hash_center_multilables`` (sign of the
    mean, zeros from one fixed random {-1, +1} vector) = ``DeepHash-pytorch CSQ.py: label2center``.
    """
    if labels.dim() == 1:
        return centers[labels.long()]
    total = labels.to(centers.dtype) @ centers
    return torch.where(total > 0, 1.0, torch.where(total < 0, -1.0, random_center.expand_as(total))).to(centers.dtype)


def csq_loss(u: torch.Tensor, target: torch.Tensor, lam: float = 1e-4) -> Dict[str, torch.Tensor]:
    """Central Similarity Quantization: ``BCE((u + 1)/2, (c + 1)/2) + lam * mean((|u| - 1)^2)``.

    ``u`` are tanh outputs, ``target`` the (B, K) centres of :func:`csq_label_centers`. BCE is
    ``nn.BCELoss`` (mean over B*K entries, logs clamped at -100). Source:
    ``yuanli2333/Hadamard-Matrix-for-hashing@55cab00:train.py: train`` (``center_loss``, ``Q_loss``; the pairwise
    term has ``--lambda1 0`` in every README command, so it is left out).
    """
    if u.shape != target.shape:
        raise ValueError(f"csq_loss expects outputs and centres of equal shape, got {tuple(u.shape)} and {tuple(target.shape)}.")
    center = F.binary_cross_entropy(0.5 * (u + 1), 0.5 * (target.to(u.dtype) + 1))
    quantization = (u.abs() - 1).pow(2).mean()
    return {"loss": center + lam * quantization, "center": center, "quantization": quantization}


def dtsh_loss(u: torch.Tensor, labels: torch.Tensor, alpha: float = 5.0, lam: float = 1.0) -> Dict[str, torch.Tensor]:
    """DTSH triplet likelihood over every triplet of the batch + quantization.

    With ``theta = u u^T`` and ``s_ij = 1[y_i . y_j > 0]`` (the anchor is its own positive, as in the port), for
    every anchor i with at least one positive and one negative::

        l_i = mean_{p: s_ip = 1, n: s_in = 0} -(t - log(1 + exp(t))),  t = clamp(theta_ip - theta_in - alpha, -100, 50)

    ``triplet = mean_i l_i`` over those anchors (0 if none), ``quantization = mean((u - sign u)^2)``,
    ``loss = triplet + lam * quantization``. Source: ``swuxyj/DeepHash-pytorch@ab14068:DTSH.py: DTSHLoss``
    (alpha 5, lambda 1); the paper (Wang et al., ACCV 2016) samples triplets instead of taking them all.
    """
    if u.dim() != 2 or labels.shape[0] != u.shape[0]:
        raise ValueError(f"dtsh_loss expects u (B, K) and one label row per output row, got {tuple(u.shape)}.")
    s = pair_similarity(labels).bool()
    theta = u @ u.t()
    t = (theta[:, :, None] - theta[:, None, :] - alpha).clamp(min=-100, max=50)  # [anchor, positive, negative]
    mask = (s[:, :, None] & ~s[:, None, :]).to(u.dtype)
    count = mask.sum(dim=(1, 2))
    per_anchor = (F.softplus(-t) * mask).sum(dim=(1, 2)) / count.clamp(min=1)  # -(t - log(1+e^t)) = softplus(-t)
    valid = (count > 0).to(u.dtype)
    triplet = (per_anchor * valid).sum() / valid.sum().clamp(min=1)
    quantization = (u - u.detach().sign()).pow(2).mean()
    return {"loss": triplet + lam * quantization, "triplet": triplet, "quantization": quantization}


def dtsh_sampled_loss(
    u: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    valid: torch.Tensor,
    margin: float,
    eta: float,
    num_train: int,
) -> Dict[str, torch.Tensor]:
    """DTSH as the authors' MatConvNet code trains it: anchors of the batch against stored rows of the train set.

    ``u`` (n, K) anchors; for each anchor and each of G other classes, ``pos`` (n, G, M1, K) stored outputs of
    same-class images and ``neg`` (n, G, M2, K) of that other class (no gradient), ``valid`` (n, G) which groups
    exist. ``t_iapq = u_i . pos_iap / 2 - u_i . neg_iaq / 2 - margin`` over all M1 x M2 combinations::

        loss = (2 sum_valid softplus(-t) + 2 eta sum_i |u_i - sign u_i|^2) / (n N)

    whose gradient is the code's hand-written ``dJdU = (1 - sigmoid(T)) (U_p - U_n) - 4 eta (U0 - sign U0)``
    divided by ``batch_size * N`` in ``update.m`` (gradient ascent there, descent here). Reported terms: ``triplet``
    = mean of -log sigmoid(t) over the valid triplets (the code's printed likelihood loss), ``quantization`` =
    ``sum |u - sign u|^2 / n`` (its printed qloss). Source: ``Minione/DTSH@4be0707:train_triplet.m``, ``update.m``.
    """
    if u.dim() != 2 or pos.dim() != 4 or neg.dim() != 4 or pos.shape[:2] != valid.shape or neg.shape[:2] != valid.shape:
        raise ValueError("dtsh_sampled_loss expects u (n, K), pos (n, G, M1, K), neg (n, G, M2, K), valid (n, G).")
    theta_p = torch.einsum("nk,ngak->nga", u, pos.detach()) / 2
    theta_n = torch.einsum("nk,ngbk->ngb", u, neg.detach()) / 2
    t = theta_p[:, :, :, None] - theta_n[:, :, None, :] - margin
    per = F.softplus(-t) * valid.to(u.dtype)[:, :, None, None]
    quant = (u - u.detach().sign()).pow(2).sum()
    n = u.shape[0]
    loss = (2 * per.sum() + 2 * eta * quant) / (n * num_train)
    count = valid.sum() * t.shape[2] * t.shape[3]
    return {"loss": loss, "triplet": per.sum().detach() / count.clamp(min=1), "quantization": quant.detach() / n}


__all__ += ["dtsh_sampled_loss"]
# Bit balance (the "sign + reg" layer of the Bi-half autoencoder study)
# --------------------------------------------------------------------------------------------------
def bit_balance_penalty(b: torch.Tensor) -> torch.Tensor:
    """``mean_k (m_k)^2 / 2`` with ``m_k = (1/N) sum_n b_nk`` the mean of bit k over the batch (N, K).

    Zero when every bit is +1 on exactly half of the batch. Gradient: ``d/db_nk = m_k / (N K)``.

    Source: ``AutoEncoder/SignReg.py``: ``loss_reg = torch.mean(torch.pow(Tcode.mm(onesvec) / h.size(0), 2)) / 2``
    with ``Tcode = b^T``, ``onesvec`` an (N, 1) column of ones, weighted by ``Alpha = 1``. Under DDP pass the
    gathered codes of the global batch.
    """
    if b.dim() != 2 or b.shape[0] < 1:
        raise ValueError(f"bit_balance_penalty expects a non-empty (batch, bits) tensor, got shape {tuple(b.shape)}")
    return b.mean(dim=0).pow(2).mean() / 2
