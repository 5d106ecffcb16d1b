"""ADSH's loss, similarity and V update against hand computations: python loops over pairs for the value and the
gradient derived by hand, and a brute-force per-bit minimisation of the objective for the closed-form V update."""
import numpy as np
import pytest
import torch

from hashcore.asymmetric import adsh_loss, adsh_similarity, adsh_update_codes

D = torch.float64


def _labels(rng, rows, classes=3):
    y = np.zeros((rows, classes))
    y[np.arange(rows), rng.integers(0, classes, rows)] = 1
    return y


def test_similarity_is_one_for_shared_labels_and_minus_ratio_otherwise():
    ya = np.array([[1, 0], [0, 1]], float)
    yb = np.array([[1, 0], [1, 0], [0, 1]], float)
    s = adsh_similarity(torch.tensor(ya), torch.tensor(yb)).numpy()
    # similar pairs: (0,0), (0,1), (1,2) = 3; dissimilar 3 → r = 1
    assert np.allclose(s, [[1, 1, -1], [-1, -1, 1]])
    yb2 = np.array([[1, 0], [0, 1], [0, 1], [0, 1]], float)
    s2 = adsh_similarity(torch.tensor(ya[:1]), torch.tensor(yb2)).numpy()  # 1 similar, 3 dissimilar → r = 1/3
    assert np.allclose(s2, [[1, -1 / 3, -1 / 3, -1 / 3]])


def test_loss_value_and_gradient_match_the_hand_derivation():
    rng = np.random.default_rng(0)
    n, big_n, k, gamma = 3, 5, 4, 7.0
    u = rng.normal(size=(n, k))
    v = np.sign(rng.normal(size=(big_n, k)))
    s = rng.choice([1.0, -0.5], size=(n, big_n))
    omega = np.array([4, 0, 2])
    total, grad = 0.0, np.zeros_like(u)
    for i in range(n):
        for j in range(big_n):
            e = float(u[i] @ v[j]) - k * s[i, j]
            total += e * e
            grad[i] += 2 * e * v[j]          # d/du_i (u_i.v_j - K s_ij)^2
        total += gamma * float(((v[omega[i]] - u[i]) ** 2).sum())
        grad[i] += 2 * gamma * (u[i] - v[omega[i]])
    total, grad = total / (big_n * n), grad / (big_n * n)

    ut = torch.tensor(u, dtype=D, requires_grad=True)
    terms = adsh_loss(ut, torch.tensor(v, dtype=D), torch.tensor(s, dtype=D), torch.tensor(v[omega], dtype=D),
                      gamma=gamma)
    terms["loss"].backward()
    assert float(terms["loss"].detach()) == pytest.approx(total, rel=1e-12)
    assert np.allclose(ut.grad.numpy(), grad, rtol=1e-10, atol=1e-12)


def _objective(v, u, s, omega, gamma):
    k = u.shape[1]
    return float(((u @ v.T - k * s) ** 2).sum() + gamma * ((v[omega] - u) ** 2).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_v_update_equals_brute_force_per_bit_minimisation(seed):
    rng = np.random.default_rng(seed)
    n, big_n, k, gamma = 4, 7, 5, 3.0
    y_all = _labels(rng, big_n)
    omega = rng.permutation(big_n)[:n]
    u = np.tanh(rng.normal(size=(n, k)))
    v0 = np.sign(rng.normal(size=(big_n, k)))
    s = adsh_similarity(torch.tensor(y_all[omega]), torch.tensor(y_all)).numpy()

    # brute force: bit by bit, each row of the column tried at -1 and +1 with the full objective (rows separate)
    v = v0.copy()
    for bit in range(k):
        for row in range(big_n):
            costs = []
            for value in (-1.0, 1.0):
                v[row, bit] = value
                costs.append(_objective(v, u, s, omega, gamma))
            assert costs[0] != costs[1]  # no tie, so the minimiser is unique
            v[row, bit] = -1.0 if costs[0] < costs[1] else 1.0

    got = adsh_update_codes(torch.tensor(v0), torch.tensor(u), torch.tensor(s), torch.tensor(omega), gamma=gamma)
    assert np.array_equal(got.numpy(), v)
    assert _objective(v, u, s, omega, gamma) <= _objective(v0, u, s, omega, gamma)
