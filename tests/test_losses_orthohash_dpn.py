"""OrthoHash and DPN losses against hand computations: python loops over images, classes and bits for the values,
and gradients derived by hand (chain rule written out), never a call of the code under test.
(DFH's losses: tests/test_losses_dfh.py.)"""
import math

import numpy as np
import pytest
import torch

from hashcore.losses_codebook import (
    bernoulli_codebook,
    dpn_loss,
    gaussian_sign_codebook,
    half_negative_codebook,
    orthohash_loss,
)

D = torch.float64
RNG = np.random.default_rng(7)


def _unit(x):
    return x / np.linalg.norm(x)


def _orthohash_by_hand(v, y, codes, s, m, arc=False, quan=0.0):
    """l_i = −Σ_j (y_ij/Σy_i) log softmax_j(z_i), z_ij = s(cos_ij − m y_ij) (cos) or s·cos(θ_ij + m y_ij) (arc);
    dl/dz_ij = (p_ij·Σ_j w_ij − w_ij)/B, w = y/max(Σy, 1); dz/dcos = s (cos) or s·sin(θ + m y)/sin θ (arc);
    dcos_ij/dv_i = (ĉ_j − cos_ij v̂_i)/|v_i|. Quantization 1 − cos(v_i, b_i), b = sign(v) held fixed:
    d/dv_i = −(b̂_i − cos(v_i, b_i) v̂_i)/|v_i| / B."""
    n, c = y.shape
    loss, grad = 0.0, np.zeros_like(v)
    for i in range(n):
        vi, ni = _unit(v[i]), np.linalg.norm(v[i])
        cos = np.array([vi @ _unit(codes[j]) for j in range(c)])
        if arc:
            th = np.arccos(np.clip(cos, -0.99999, 0.99999))
            z = s * np.cos(th + m * y[i])
            dz = s * np.sin(th + m * y[i]) / np.sin(th)
        else:
            z = s * (cos - m * y[i])
            dz = np.full(c, s)
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        w = y[i] / max(y[i].sum(), 1)  # an image without labels: no cross-entropy term
        loss += -sum(w[j] * math.log(p[j]) for j in range(c)) / n
        for j in range(c):
            grad[i] += (p[j] * w.sum() - w[j]) / n * dz[j] * (_unit(codes[j]) - cos[j] * vi) / ni
        if quan:
            b = np.sign(v[i])
            cb = vi @ _unit(b)
            loss += quan * (1 - cb) / n
            grad[i] += -quan * (_unit(b) - cb * vi) / ni / n
    return loss, grad


def _run(fn, v, *args, **kw):
    vt = torch.tensor(v, dtype=D, requires_grad=True)
    out = fn(vt, *args, **kw)
    out["loss"].backward()
    return out, vt.grad.numpy()


@pytest.mark.parametrize("arc", [False, True])
def test_orthohash_single_label_value_and_gradient(arc):
    v, codes = RNG.normal(size=(5, 8)), np.sign(RNG.normal(size=(3, 8)))
    idx = np.array([0, 2, 1, 1, 0])
    y = np.eye(3)[idx]
    want, want_grad = _orthohash_by_hand(v, y, codes, s=8.0, m=0.2, arc=arc)
    out, grad = _run(orthohash_loss, v, torch.tensor(idx), torch.tensor(codes, dtype=D), scale=8.0, margin=0.2,
                     margin_type="arc" if arc else "cos")
    assert out["loss"].item() == pytest.approx(want, rel=1e-10)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-8, atol=1e-12)
    # one-hot labels give the same as indices (the official single-label branch)
    out2, _ = _run(orthohash_loss, v, torch.tensor(y), torch.tensor(codes, dtype=D), scale=8.0, margin=0.2,
                   margin_type="arc" if arc else "cos")
    assert out2["loss"].item() == pytest.approx(want, rel=1e-12)


def test_orthohash_multi_label_smoothing_and_quantization_by_hand():
    v, codes = RNG.normal(size=(4, 6)), np.sign(RNG.normal(size=(5, 6)))
    y = np.array([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0], [1, 1, 1, 0, 1], [0, 0, 0, 0, 0]], dtype=float)
    want, want_grad = _orthohash_by_hand(v, y, codes, s=8.0, m=0.3, quan=0.5)
    out, grad = _run(orthohash_loss, v, torch.tensor(y), torch.tensor(codes, dtype=D), scale=8.0, margin=0.3,
                     quan=0.5, quan_type="cs")
    assert out["loss"].item() == pytest.approx(want, rel=1e-10)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-8, atol=1e-12)


def test_orthohash_bce_multi_label_by_hand():
    v, codes = RNG.normal(size=(3, 4)), np.sign(RNG.normal(size=(2, 4)))
    y = np.array([[1, 0], [1, 1], [0, 1]], dtype=float)
    total = 0.0
    for i in range(3):
        for j in range(2):
            z = 8.0 * (_unit(v[i]) @ _unit(codes[j]) - 0.2 * y[i, j])
            sig = 1 / (1 + math.exp(-z))
            total += -(y[i, j] * math.log(sig) + (1 - y[i, j]) * math.log(1 - sig))
    out, _ = _run(orthohash_loss, v, torch.tensor(y), torch.tensor(codes, dtype=D), multiclass_loss="bce")
    assert out["loss"].item() == pytest.approx(total / 6, rel=1e-10)


def _dpn_official_by_hand(u, y, codes, m):
    """L = (1/B) Σ_i Σ_{c: y_ic=1} Σ_k max(0, m − u_ik t_ck); dL/du_ik = −(1/B) Σ_c y_ic t_ck [m − u_ik t_ck > 0]."""
    n, k = u.shape
    loss, grad = 0.0, np.zeros_like(u)
    for i in range(n):
        for c in range(len(codes)):
            if not y[i, c]:
                continue
            for b in range(k):
                h = m - u[i, b] * codes[c, b]
                if h > 0:
                    loss += h / n
                    grad[i, b] -= codes[c, b] / n
    return loss, grad


def test_dpn_official_value_and_gradient_single_and_multi_label():
    u, codes = RNG.normal(scale=1.5, size=(4, 6)), np.sign(RNG.normal(size=(3, 6)))
    for y in (np.eye(3)[[2, 0, 1, 2]], np.array([[1, 1, 0], [0, 0, 1], [1, 1, 1], [0, 1, 0]], dtype=float)):
        want, want_grad = _dpn_official_by_hand(u, y, codes, m=1.0)
        out, grad = _run(dpn_loss, u, torch.tensor(y), torch.tensor(codes, dtype=D), margin=1.0)
        assert out["loss"].item() == pytest.approx(want, rel=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=0, atol=1e-12)


def test_dpn_deephash_port_mean_over_bits_and_csq_style_targets():
    u = RNG.normal(size=(3, 4))
    codes = np.array([[1, 1, -1, -1], [1, -1, 1, -1]], dtype=float)
    rnd = np.array([-1, 1, 1, -1], dtype=float)
    y = np.array([[1, 0], [1, 1], [0, 1]], dtype=float)
    # row 2: sum of both codes = [2, 0, 0, -2] → ties (bits 1, 2) from the random code → [1, 1, 1, -1]
    targets = np.array([codes[0], [1, 1, 1, -1], codes[1]])
    want = sum(max(0.0, 0.5 - u[i, b] * targets[i, b]) for i in range(3) for b in range(4)) / 12
    want_grad = np.array([[-(targets[i, b] / 12) if 0.5 - u[i, b] * targets[i, b] > 0 else 0.0 for b in range(4)]
                          for i in range(3)])
    out, grad = _run(dpn_loss, u, torch.tensor(y), torch.tensor(codes, dtype=D), margin=0.5, variant="deephash",
                     random_center=torch.tensor(rnd, dtype=D))
    assert out["loss"].item() == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=0, atol=1e-12)


def test_codebooks_are_seeded_pm1_and_the_port_has_exactly_half_negative_bits():
    for make in (bernoulli_codebook, gaussian_sign_codebook, half_negative_codebook):
        a = make(10, 16, torch.Generator().manual_seed(1))
        assert a.shape == (10, 16) and set(a.unique().tolist()) == {-1.0, 1.0}
        assert torch.equal(a, make(10, 16, torch.Generator().manual_seed(1)))
        assert not torch.equal(a, make(10, 16, torch.Generator().manual_seed(2)))
    assert (half_negative_codebook(10, 16, torch.Generator().manual_seed(1)) == -1).sum(1).eq(8).all()


def test_bad_options_are_refused_with_the_option_name():
    v, codes = torch.randn(2, 4), torch.ones(2, 4)
    with pytest.raises(ValueError, match="model.margin_type"):
        orthohash_loss(v, torch.tensor([0, 1]), codes, margin_type="angle")
    with pytest.raises(ValueError, match="model.variant"):
        dpn_loss(v, torch.tensor([0, 1]), codes, variant="paper")
