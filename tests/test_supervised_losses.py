"""HashNet, DPSH, CSQ and DTSH losses against hand computations: NumPy/python loops over pairs and triplets for
the values and gradients derived by hand (chain rule written out), never a call of the code under test."""
import math

import numpy as np
import pytest
import torch

from hashcore.losses import (
    csq_hash_centers,
    csq_label_centers,
    csq_loss,
    dpsh_loss,
    dtsh_loss,
    hadamard,
    hashnet_loss,
)

D = torch.float64


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _sim(ya, yb):
    return 1.0 if float(np.dot(ya, yb)) > 0 else 0.0


# ============================================================================================ HashNet
def _hashnet_by_hand(u1, u2, y1, y2, alpha, class_num, thr, weighting):
    """Loss and gradients by loops: l = log(1+e^d) - s d (d <= thr) or (1-s) d (d > thr, official);
    dl/dd = sigmoid(d) - s or (1 - s); dd/du1_i = alpha u2_j, dd/du2_j = alpha u1_i."""
    n, m = len(u1), len(u2)
    s = np.array([[_sim(y1[i], y2[j]) for j in range(m)] for i in range(n)])
    n1, n0 = s.sum(), (1 - s).sum()
    total, g1, g2 = 0.0, np.zeros_like(u1), np.zeros_like(u2)
    if weighting == "official":
        z = class_num * n1 + n0
    else:
        z = n * m
    for i in range(n):
        for j in range(m):
            d = alpha * float(np.dot(u1[i], u2[j]))
            if weighting == "official":
                w = class_num if s[i, j] else 1.0
                if d > thr:
                    loss, dl = (1 - s[i, j]) * d, (1 - s[i, j])
                else:
                    loss, dl = math.log(1 + math.exp(d)) - s[i, j] * d, _sigmoid(d) - s[i, j]
            else:
                w = (n * m / max(n1, 1)) if s[i, j] else (n * m / max(n0, 1))
                loss, dl = math.log(1 + math.exp(d)) - s[i, j] * d, _sigmoid(d) - s[i, j]
            total += w * loss
            g1[i] += w * dl * alpha * u2[j] / z
            g2[j] += w * dl * alpha * u1[i] / z
    return total / z, g1, g2


@pytest.mark.parametrize("weighting,class_num,alpha", [("official", 1.0, 10 / 4), ("official", 3.0, 10 / 4),
                                                      ("official", 2.0, 9.0), ("paper", 1.0, 10 / 4)])
def test_hashnet_loss_value_and_gradient_by_hand(weighting, class_num, alpha):
    g = torch.Generator().manual_seed(0)
    u1 = torch.tanh(2 * torch.randn(3, 4, generator=g, dtype=D))
    u2 = torch.tanh(2 * torch.randn(4, 4, generator=g, dtype=D))
    y1 = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 1]], dtype=D)
    y2 = torch.tensor([[1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=D)
    if alpha == 9.0:  # some dot products beyond the threshold 15: the official asymptote branch
        u1, u2 = u1.sign() * 0.99, u2.sign() * 0.99
    want, g1, g2 = _hashnet_by_hand(u1.numpy(), u2.numpy(), y1.numpy(), y2.numpy(), alpha, class_num, 15.0, weighting)
    if alpha == 9.0:
        assert (alpha * (u1 @ u2.t()) > 15).any()
    u1.requires_grad_(True), u2.requires_grad_(True)
    got = hashnet_loss(u1, u2, y1, y2, alpha, class_num=class_num, weighting=weighting)
    got.backward()
    assert float(got.detach()) == pytest.approx(want, rel=1e-10)
    np.testing.assert_allclose(u1.grad.numpy(), g1, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(u2.grad.numpy(), g2, rtol=1e-9, atol=1e-12)


def test_hashnet_two_rows_hand_numbers():
    """u1 = (1, 0), u2 = (1, 0), similar, alpha 1: d = 1, l = log(1 + e) - 1; dissimilar: l = log(1 + e)."""
    u = torch.tensor([[1.0, 0.0]], dtype=D)
    same, other = torch.tensor([[1.0, 0.0]], dtype=D), torch.tensor([[0.0, 1.0]], dtype=D)
    assert float(hashnet_loss(u, u, same, same, 1.0)) == pytest.approx(math.log(1 + math.e) - 1)
    assert float(hashnet_loss(u, u, same, other, 1.0)) == pytest.approx(math.log(1 + math.e))


# ============================================================================================ DPSH
def test_dpsh_loss_value_and_gradient_by_hand():
    g = torch.Generator().manual_seed(1)
    n, big_n, k, lam = 3, 5, 4, 10.0
    u = torch.randn(n, k, generator=g, dtype=D)
    codes = torch.randn(big_n, k, generator=g, dtype=D)
    codes[3] = 0  # a row not seen yet: log 2 and no gradient
    s = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 1, 1], [1, 1, 0, 0, 0]], dtype=D)
    b = u.sign()
    un, cn, sn, bn = u.numpy(), codes.numpy(), s.numpy(), b.numpy()
    like, quant, grad = 0.0, 0.0, np.zeros((n, k))
    for i in range(n):
        for j in range(big_n):
            theta = sum(un[i, c] * cn[j, c] for c in range(k)) / 2
            like += math.log(1 + math.exp(theta)) - sn[i, j] * theta
            grad[i] += (_sigmoid(theta) - sn[i, j]) * cn[j] / 2 / (big_n * n)
        for c in range(k):
            quant += (bn[i, c] - un[i, c]) ** 2
            grad[i, c] += lam * -2 * (bn[i, c] - un[i, c]) / (big_n * n)
    u.requires_grad_(True)
    terms = dpsh_loss(u, codes, s, b, lam=lam)
    terms["loss"].backward()
    assert float(terms["likelihood"]) == pytest.approx(like / (big_n * n), rel=1e-12)
    assert float(terms["quantization"]) == pytest.approx(quant / (big_n * n), rel=1e-12)
    assert float(terms["loss"]) == pytest.approx((like + lam * quant) / (big_n * n), rel=1e-12)
    np.testing.assert_allclose(u.grad.numpy(), grad, rtol=1e-10, atol=1e-14)


# ============================================================================================ CSQ
def test_hadamard_is_sylvester_and_matches_scipy():
    want4 = [[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]
    assert hadamard(4).tolist() == want4
    scipy_linalg = pytest.importorskip("scipy.linalg")
    for n in (1, 2, 8, 64):
        assert np.array_equal(hadamard(n).numpy(), scipy_linalg.hadamard(n))
    with pytest.raises(ValueError, match="power of 2"):
        hadamard(12)


def test_csq_centres_hadamard_then_bernoulli_and_seeded():
    c10 = csq_hash_centers(10, 16, torch.Generator().manual_seed(0))
    h = hadamard(16)
    assert torch.equal(c10, torch.cat((h, -h))[:10])
    c40 = csq_hash_centers(40, 16, torch.Generator().manual_seed(0))
    assert torch.equal(c40[:32], torch.cat((h, -h)))
    extra = c40[32:]
    assert set(extra.unique().tolist()) == {-1.0, 1.0} and ((extra == -1).sum(1) == 8).all()
    assert torch.equal(c40, csq_hash_centers(40, 16, torch.Generator().manual_seed(0)))
    assert not torch.equal(c40, csq_hash_centers(40, 16, torch.Generator().manual_seed(1)))
    c12 = csq_hash_centers(5, 12, torch.Generator().manual_seed(0))  # not a power of 2: all Bernoulli
    assert ((c12 == -1).sum(1) == 6).all()
    dist = [(c12[i] != c12[j]).sum().item() for i in range(5) for j in range(i + 1, 5)]
    assert min(dist) > 3 and np.mean(dist) >= 6


def test_csq_label_centres_sign_of_the_sum_with_random_ties():
    centers = torch.tensor([[1., 1., 1., 1.], [1., -1., 1., -1.], [1., 1., -1., -1.]])
    rnd = torch.tensor([-1., 1., 1., -1.])
    labels = torch.tensor([[1., 0., 0.], [1., 1., 0.], [1., 1., 1.], [0., 0., 0.]])
    want = torch.tensor([[1., 1., 1., 1.],
                         [1., 1., 1., -1.],    # (2, 0, 2, 0): ties at bits 1, 3 -> random (1, -1)
                         [1., 1., 1., -1.],    # (3, 1, 1, -1)
                         [-1., 1., 1., -1.]])  # no label: the random centre
    assert torch.equal(csq_label_centers(labels, centers, rnd), want)
    assert torch.equal(csq_label_centers(torch.tensor([2, 0]), centers, rnd), centers[[2, 0]])


def test_csq_loss_value_and_gradient_by_hand():
    g = torch.Generator().manual_seed(2)
    u = torch.tanh(torch.randn(3, 4, generator=g, dtype=D))
    c = torch.tensor([[1, -1, 1, -1], [1, 1, 1, 1], [-1, 1, 1, -1]], dtype=D)
    lam = 0.3
    un, cn = u.numpy(), c.numpy()
    bce, q, grad, m = 0.0, 0.0, np.zeros_like(un), un.size
    for i in range(3):
        for k in range(4):
            p, t = (un[i, k] + 1) / 2, (cn[i, k] + 1) / 2
            bce += -(t * math.log(p) + (1 - t) * math.log(1 - p))
            q += (abs(un[i, k]) - 1) ** 2
            grad[i, k] = (-(t / p) + (1 - t) / (1 - p)) * 0.5 / m + lam * 2 * (abs(un[i, k]) - 1) * np.sign(un[i, k]) / m
    u.requires_grad_(True)
    terms = csq_loss(u, c, lam=lam)
    terms["loss"].backward()
    assert float(terms["center"]) == pytest.approx(bce / m, rel=1e-12)
    assert float(terms["quantization"]) == pytest.approx(q / m, rel=1e-12)
    np.testing.assert_allclose(u.grad.numpy(), grad, rtol=1e-10)


# ============================================================================================ DTSH
def _dtsh_by_hand(u, y, alpha, lam):
    """Loops over (anchor, positive, negative): l = log(1 + e^t) - t, dl/dt = sigmoid(t) - 1, t = th_ip - th_in - a;
    d th_ab / du_a = u_b, d th_ab / du_b = u_a."""
    b, k = u.shape
    s = np.array([[_sim(y[i], y[j]) for j in range(b)] for i in range(b)])
    th = u @ u.T
    anchors, total, g_th = 0, 0.0, np.zeros((b, b))
    per = []
    for i in range(b):
        pos = [p for p in range(b) if s[i, p]]
        neg = [q for q in range(b) if not s[i, q]]
        if pos and neg:
            anchors += 1
            per.append((i, pos, neg))
    for i, pos, neg in per:
        count = len(pos) * len(neg)
        for p in pos:
            for q in neg:
                t = th[i, p] - th[i, q] - alpha
                assert -100 < t < 50
                total += (math.log(1 + math.exp(t)) - t) / count / anchors
                c = (_sigmoid(t) - 1) / count / anchors
                g_th[i, p] += c
                g_th[i, q] -= c
    grad = (g_th + g_th.T) @ u
    quant = ((u - np.sign(u)) ** 2).mean()
    grad += lam * 2 * (u - np.sign(u)) / u.size
    return total + lam * quant, total, grad


@pytest.mark.parametrize("alpha,lam", [(5.0, 1.0), (0.5, 0.2)])
def test_dtsh_loss_value_and_gradient_by_hand(alpha, lam):
    g = torch.Generator().manual_seed(3)
    u = torch.randn(5, 3, generator=g, dtype=D)
    y = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 1]], dtype=D)
    want, triplet, grad = _dtsh_by_hand(u.numpy(), y.numpy(), alpha, lam)
    u.requires_grad_(True)
    terms = dtsh_loss(u, y, alpha=alpha, lam=lam)
    terms["loss"].backward()
    assert float(terms["triplet"]) == pytest.approx(triplet, rel=1e-10)
    assert float(terms["loss"]) == pytest.approx(want, rel=1e-10)
    np.testing.assert_allclose(u.grad.numpy(), grad, rtol=1e-9, atol=1e-12)


def test_dtsh_batch_without_negatives_has_only_the_quantization_term():
    u = torch.tensor([[0.5, -2.0], [1.0, 1.0]], dtype=D)
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=D)
    terms = dtsh_loss(u, y, lam=1.0)
    assert float(terms["triplet"]) == 0.0
    assert float(terms["loss"]) == pytest.approx((0.25 + 1.0 + 0.0 + 0.0) / 4)


# ============================================================================================ DTSH (MatConvNet code)
def test_dtsh_sampled_loss_gradient_is_the_official_hand_written_one():
    """train_triplet.m: T = U_a.U_p/2 - U_a.U_n/2 - margin, A = 1 - sigmoid(T),
    dJdU = sum A (U_p - U_n) - 4 eta (U0 - sign U0), and update.m divides by batch_size * N (ascent)."""
    g = torch.Generator().manual_seed(4)
    n, groups, m1, m2, k, big_n, margin, eta = 2, 2, 3, 2, 4, 7, 2.0, 0.5
    u = torch.randn(n, k, generator=g, dtype=D)
    pos = torch.randn(n, groups, m1, k, generator=g, dtype=D)
    neg = torch.randn(n, groups, m2, k, generator=g, dtype=D)
    valid = torch.tensor([[True, False], [True, True]])
    un, pn, nn_ = u.numpy(), pos.numpy(), neg.numpy()
    djdu = np.zeros((n, k))
    nll, count = 0.0, 0
    for i in range(n):
        for gi in range(groups):
            if not valid[i, gi]:
                continue
            for a in range(m1):
                for b in range(m2):
                    t = float(np.dot(un[i], pn[i, gi, a])) / 2 - float(np.dot(un[i], nn_[i, gi, b])) / 2 - margin
                    nll += -math.log(_sigmoid(t))
                    count += 1
                    djdu[i] += (1 - _sigmoid(t)) * (pn[i, gi, a] - nn_[i, gi, b])
        djdu[i] -= 4 * eta * (un[i] - np.sign(un[i]))
    u.requires_grad_(True)
    from hashcore.losses import dtsh_sampled_loss
    terms = dtsh_sampled_loss(u, pos, neg, valid, margin, eta, big_n)
    terms["loss"].backward()
    np.testing.assert_allclose(u.grad.numpy(), -djdu / (n * big_n), rtol=1e-10, atol=1e-14)
    assert float(terms["triplet"]) == pytest.approx(nll / count, rel=1e-10)
    assert float(terms["quantization"]) == pytest.approx(((un - np.sign(un)) ** 2).sum() / n, rel=1e-12)


def test_dtsh_triplet_rows_come_from_the_right_classes_outside_the_batch():
    from lightning_modules.dtsh import sample_triplet_rows
    eye = torch.eye(3)
    seen = eye[[0, 0, 1, 1, 2, 0, 1]]  # train rows 0..6 by class
    seen[6] = 0                        # row 6 not seen yet
    labels, index = eye[[0, 1]], torch.tensor([0, 2])  # the batch: row 0 (class 0), row 2 (class 1)
    pos, neg, valid = sample_triplet_rows(labels, index, seen, 4, 3, torch.Generator().manual_seed(0))
    assert pos.shape == (2, 2, 4) and neg.shape == (2, 2, 3) and valid.all()
    assert set(pos[0].flatten().tolist()) <= {1, 5} and set(neg[0, 0].tolist()) == {3}   # class 1: only row 3
    assert set(neg[0, 1].tolist()) == {4}                                                 # class 2: row 4
    assert set(pos[1].flatten().tolist()) == {3}                                          # class 1 outside the batch
    assert set(neg[1, 0].tolist()) <= {1, 5} and set(neg[1, 1].tolist()) == {4}
    again = sample_triplet_rows(labels, index, seen, 4, 3, torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip((pos, neg, valid), again))
    no_class_2 = seen.clone()
    no_class_2[4] = 0
    _, _, valid = sample_triplet_rows(labels, index, no_class_2, 4, 3, torch.Generator().manual_seed(0))
    assert valid.tolist() == [[True, False], [True, False]]
    with pytest.raises(ValueError, match="single-label"):
        sample_triplet_rows(torch.tensor([[1., 1., 0.], [0., 1., 0.]]), index, seen, 4, 3, torch.Generator())
