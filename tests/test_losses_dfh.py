"""DFH's loss, B-step and C-steps against hand computations: python loops in the official code's column layout
((K, n) codes, (C, n) labels, (K, C) centres), gradients written out by the chain rule, never a call of the code
under test (hashcore/losses_dfh.py keeps rows: (n, K), (n, C), (C, K))."""
import math

import numpy as np
import pytest
import torch

from hashcore.losses_dfh import (
    dfh_binary_codes,
    dfh_discrete_centers,
    dfh_label_weights,
    dfh_loss,
    dfh_relaxed_centers,
)

D = torch.float64
RNG = np.random.default_rng(11)


def _softplus(x):
    return math.log1p(math.exp(x)) if x < 30 else x + math.log1p(math.exp(-x))


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _dfh_by_hand(u, U, s, b, m, eta):
    """θ_ij = u_i·U_j/2 clamped to [−100, 50]; f_ij = (1 − s) log(1 + e^{m+θ}) + s log(1 + e^{m−θ}), mean over n·N;
    df/dθ = (1 − s) σ(m + θ) − s σ(m − θ) (0 where the clamp is active), dθ_ij/du_i = U_j / 2;
    quantization mean_{n·K}(b − u)², d/du = −2 (b − u) / (n·K)."""
    n, k = u.shape
    N = U.shape[0]
    metric, grad = 0.0, np.zeros_like(u)
    for i in range(n):
        for j in range(N):
            raw = sum(u[i, t] * U[j, t] for t in range(k)) / 2
            th = min(max(raw, -100.0), 50.0)
            metric += ((1 - s[i, j]) * _softplus(m + th) + s[i, j] * _softplus(m - th)) / (n * N)
            if -100 < raw < 50:
                d = (1 - s[i, j]) * _sigmoid(m + th) - s[i, j] * _sigmoid(m - th)
                grad[i] += d * U[j] / 2 / (n * N)
    quant = sum((b[i, t] - u[i, t]) ** 2 for i in range(n) for t in range(k)) / (n * k)
    grad += -2 * (b - u) / (n * k) * eta
    return metric + eta * quant, metric, quant, grad


def _run(u, *args, **kw):
    ut = torch.tensor(u, dtype=D, requires_grad=True)
    out = dfh_loss(ut, *[torch.tensor(a, dtype=D) for a in args], **kw)
    out["loss"].backward()
    return out, ut.grad.numpy()


@pytest.mark.parametrize("margin", [0.0, 3.0])
def test_dfh_loss_value_and_gradient_by_hand(margin):
    n, N, k = 3, 7, 5
    u, U = RNG.normal(size=(n, k)), RNG.normal(size=(N, k))
    U[:n] = u  # the batch's own rows are written before the loss, as in Main.py
    U[5] = 0.0  # a row not seen yet
    U[6] = 60 * np.sign(u[0])  # θ_06 > 50 and θ of other rows maybe beyond: the clamp cuts their gradient
    s = (RNG.random((n, N)) < 0.4).astype(float)
    b = np.sign(RNG.normal(size=(n, k)))
    want, want_metric, want_quant, want_grad = _dfh_by_hand(u, U, s, b, margin, 0.5)
    out, grad = _run(u, U, s, b, margin=margin, eta=0.5)
    assert out["loss"].item() == pytest.approx(want, rel=1e-12)
    assert out["metric"].item() == pytest.approx(want_metric, rel=1e-12)
    assert out["quantization"].item() == pytest.approx(want_quant, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-14)
    assert sum(u[0] * U[6]) / 2 > 50  # the clamped pair is really in the test


def test_margin_zero_is_the_official_without_margin_line():
    """models/DFH_loss.py runs ``(log(1 + exp(θ)) − S θ).mean()``: the margin form at m = 0 is that function."""
    u, U = RNG.normal(size=(4, 6)), RNG.normal(size=(9, 6))
    s = (RNG.random((4, 9)) < 0.5).astype(float)
    official = np.mean([[math.log(1 + math.exp(u[i] @ U[j] / 2)) - s[i, j] * (u[i] @ U[j] / 2) for j in range(9)]
                        for i in range(4)])
    out, _ = _run(u, U, s, np.sign(u), margin=0.0, eta=0.0)
    assert out["metric"].item() == pytest.approx(official, rel=1e-12)


def test_label_weights_divide_by_the_label_count_and_keep_an_unlabelled_row_zero():
    y = torch.tensor([[1, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=D)
    want = torch.tensor([[1 / 3, 0, 1 / 3, 1 / 3], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=D)
    assert torch.equal(dfh_label_weights(y), want)
    assert torch.equal(dfh_label_weights(y, normalize=False), y)


def test_binary_codes_by_hand():
    """batchB = sign(mu · CenTer @ batchY + U_batch), CenTer (K, C), batchY (C, n), U_batch (K, n)."""
    k, c, n = 5, 3, 4
    centers = np.sign(RNG.normal(size=(k, c)))  # official layout (K, C)
    y = np.array([[0.5, 0, 0.5], [0, 1, 0], [1 / 3, 1 / 3, 1 / 3], [0, 0, 0]]).T  # (C, n)
    u = RNG.normal(size=(k, n))
    u[0, 3] = 0.0  # an unlabelled image with a zero output: sign(0) = 0, as torch.sign there
    want = np.array([[np.sign(0.1 * sum(centers[t, j] * y[j, i] for j in range(c)) + u[t, i]) for i in range(n)]
                     for t in range(k)])
    got = dfh_binary_codes(torch.tensor(u.T, dtype=D), torch.tensor(centers.T, dtype=D), torch.tensor(y.T, dtype=D),
                           mu=0.1)
    np.testing.assert_array_equal(got.numpy().T, want)
    assert got[3, 0] == 0


def _discrete_by_hand(Y, B, C, vul):
    """center.py: Discretecenter, transcribed: Y (classes, n), B (K, n), C (classes, K) updated row by row in place:
    C[i] = sign(q − C'ᵀ Y' v − vul · C'ᵀ 1) with q = (Y Bᵀ)[i], v = Y[i], primes = every row but i."""
    C = C.copy()
    nc = C.shape[0]
    for i in range(nc):
        q = Y @ B.T
        rows = [j for j in range(nc) if j != i]
        yp, cp = Y[rows], C[rows]
        C[i] = np.sign(q[i] - cp.T @ (yp @ Y[i]) - vul * cp.T @ np.ones(nc - 1))
    return C


@pytest.mark.parametrize("vul", [1.0, 0.25])
def test_discrete_centres_follow_the_official_cyclic_update(vul):
    k, c, n = 8, 4, 10
    B = np.sign(RNG.normal(size=(k, n)))
    Y = dfh_label_weights(torch.tensor((RNG.random((n, c)) < 0.4).astype(float))).numpy().T
    for start in (np.zeros((c, k)), np.sign(RNG.normal(size=(c, k)))):  # the official start is 0
        want = _discrete_by_hand(Y, B, start, vul)
        got = dfh_discrete_centers(torch.tensor(start, dtype=D), torch.tensor(Y.T, dtype=D),
                                   torch.tensor(B.T, dtype=D), vul=vul)
        np.testing.assert_array_equal(got.numpy(), want)
    # the update is sequential: a later class sees the earlier classes' new rows (a batch step would differ)
    batch_update = np.sign((Y @ B.T) - ((Y @ Y.T) * (1 - np.eye(c))) @ start - vul * (start.sum(0) - start))
    assert not np.array_equal(batch_update, want)


def test_relaxed_centres_follow_200_gradient_steps_by_hand():
    """center.py: Relaxcenter with the gradients written out: intra mean_{K·n}((V Y − B)²) → 2 (V Y − B) Yᵀ / (K n);
    inter mean_{C·C}((VᵀV − K T)²), T = 2I − 1 → 4 V (VᵀV − K T) / C²; quantization mean_{K·C}((V − sign V)²) →
    2 (V − sign V) / (K C). Step 0.03; ×0.1 when the counter (1 + steps taken) reaches 150 and 180."""
    k, c, n = 6, 3, 8
    B = np.sign(RNG.normal(size=(k, n)))
    Y = dfh_label_weights(torch.tensor(np.eye(c)[RNG.integers(0, c, n)])).numpy().T  # (C, n)
    V0 = RNG.normal(scale=0.5, size=(k, c))
    T = k * (2 * np.eye(c) - np.ones((c, c)))
    V, alpha, num = V0.copy(), 0.03, 1
    for _ in range(200):
        g = (2 * (V @ Y - B) @ Y.T / (k * n) + 0.7 * 4 * V @ (V.T @ V - T) / c ** 2
             + 0.3 * 2 * (V - np.sign(V)) / (k * c))
        num += 1
        if num in (150, 180):
            alpha *= 0.1
        V = V - alpha * g
    got = dfh_relaxed_centers(torch.tensor(V0.T, dtype=D), torch.tensor(Y.T, dtype=D), torch.tensor(B.T, dtype=D),
                              vul=0.7, nta=0.3)
    np.testing.assert_allclose(got.numpy(), V.T, rtol=1e-10, atol=1e-12)
    # the inter-class term pushes the centres apart: their signs end up distinct
    assert len({tuple(r) for r in np.sign(V.T)}) == c


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="similarity must be"):
        dfh_loss(torch.zeros(2, 4), torch.zeros(5, 4), torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="codes_u"):
        dfh_loss(torch.zeros(2, 4), torch.zeros(5, 3), torch.zeros(2, 5), torch.zeros(2, 4))
