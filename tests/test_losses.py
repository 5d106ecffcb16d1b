"""Loss values and gradients against hand-computed numbers, explicit loops and analytic derivatives.

The references here are written independently of ``hashcore/losses.py`` (scalar loops,
closed-form derivatives); none of them calls the code under test.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from hashcore.losses import (
    cib_kl,
    cosine_mse_halves,
    dch_loss,
    greedy_penalty,
    greedy_supervised_loss,
    nt_xent,
)

D = torch.float64


# ============================================================================================ NT-Xent
def _nt_xent_loop(z1, z2, tau):
    """Direct formula: 1/(2N) sum_a -log(exp(s_a,p(a)) / sum_{b != a} exp(s_ab)), python floats."""
    rows = [list(map(float, r)) for r in torch.cat((z1, z2)).detach()]
    m, n = len(rows), len(rows) // 2

    def cos(x, y):
        dot = sum(a * b for a, b in zip(x, y))
        return dot / (math.sqrt(sum(a * a for a in x)) * math.sqrt(sum(b * b for b in y)))

    total = 0.0
    for a in range(m):
        pos = (a + n) % m
        denom = sum(math.exp(cos(rows[a], rows[b]) / tau) for b in range(m) if b != a)
        total += -math.log(math.exp(cos(rows[a], rows[pos]) / tau) / denom)
    return total / m


def _nt_xent_grad_by_hand(z1, z2, tau):
    """dL/dz from the chain rule: softmax - onehot on the logits, then through the normalisation."""
    z = torch.cat((z1, z2)).detach()
    m, n = z.shape[0], z.shape[0] // 2
    r = [z[a].norm() for a in range(m)]
    zh = [z[a] / r[a] for a in range(m)]
    sim = [[float(zh[a] @ zh[b]) / tau for b in range(m)] for a in range(m)]
    g = [[0.0] * m for _ in range(m)]  # dL/dsim_ab
    for a in range(m):
        denom = sum(math.exp(sim[a][b]) for b in range(m) if b != a)
        for b in range(m):
            if b != a:
                g[a][b] = (math.exp(sim[a][b]) / denom - (1.0 if b == (a + n) % m else 0.0)) / m
    grad = torch.zeros_like(z)
    for c in range(m):
        # sim_ab depends on zh_c through row c and through column c.
        d_zh = sum((g[c][b] + g[b][c]) * zh[b] for b in range(m)) / tau
        grad[c] = (d_zh - zh[c] * (zh[c] @ d_zh)) / r[c]
    return grad[:n], grad[n:]


def test_nt_xent_hand_example():
    # +-1 codes, K=2, tau=0.5: the 2N=4 rows a=(1,1), b=(1,-1), c=(1,1), d=(-1,1).
    # Rows a and c: -2 + log(2 + e^2); rows b and d: 2 + log(2 + e^-2).
    z1 = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    z2 = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    expected = (math.log(2 + math.e**2) + math.log(2 + math.e**-2)) / 2
    assert nt_xent(z1, z2, temperature=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_single_pair_is_zero():
    # N=1: the other row is the positive and there are no negatives -> CE of one logit = 0.
    assert nt_xent(torch.tensor([[1.0, -1.0]]), torch.tensor([[-1.0, 1.0]])).item() == 0.0


@pytest.mark.parametrize("n,k,tau", [(2, 3, 0.3), (5, 8, 0.3), (7, 4, 0.2)])
def test_nt_xent_matches_loop_formula_and_hand_gradient(n, k, tau):
    torch.manual_seed(n * 10 + k)
    z1 = torch.randn(n, k, dtype=D, requires_grad=True)
    z2 = torch.randn(n, k, dtype=D, requires_grad=True)
    loss = nt_xent(z1, z2, temperature=tau)
    assert loss.item() == pytest.approx(_nt_xent_loop(z1, z2, tau), rel=1e-10)
    loss.backward()
    g1, g2 = _nt_xent_grad_by_hand(z1, z2, tau)
    assert torch.allclose(z1.grad, g1, atol=1e-12)
    assert torch.allclose(z2.grad, g2, atol=1e-12)


def test_nt_xent_sign_codes_and_official_cosine_primitive():
    torch.manual_seed(1)
    z1 = torch.randn(6, 16).sign()
    z2 = torch.randn(6, 16).sign()
    # For +-1 codes, cos = b.b'/K; the loop reference recomputes it from scratch.
    assert nt_xent(z1, z2).item() == pytest.approx(_nt_xent_loop(z1, z2, 0.3), rel=1e-5)
    # Same similarity matrix as the official nn.CosineSimilarity(dim=2) broadcast.
    z = torch.cat((z1, z2))
    sim = F.cosine_similarity(z.unsqueeze(1), z.unsqueeze(0), dim=2) / 0.3
    target = torch.cat((torch.arange(6, 12), torch.arange(0, 6)))
    off = ~torch.eye(12, dtype=torch.bool)
    ref = sum(
        -sim[a, target[a]] + torch.logsumexp(sim[a][off[a]], 0) for a in range(12)
    ) / 12
    assert nt_xent(z1, z2).item() == pytest.approx(ref.item(), rel=1e-5)


def test_nt_xent_gradcheck_and_shape_errors():
    torch.manual_seed(2)
    z1 = torch.randn(3, 4, dtype=D, requires_grad=True)
    z2 = torch.randn(3, 4, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: nt_xent(a, b, 0.3), (z1, z2))
    with pytest.raises(ValueError):
        nt_xent(torch.randn(3, 4), torch.randn(2, 4))


# ============================================================================================ CIB KL
def test_cib_kl_hand_example():
    p1 = torch.tensor([[0.8, 0.3], [0.5, 0.9]])
    p2 = torch.tensor([[0.6, 0.3], [0.5, 0.6]])
    kl12 = (0.8 * math.log(0.8 / 0.6) + 0.2 * math.log(0.2 / 0.4)) + (
        0.9 * math.log(0.9 / 0.6) + 0.1 * math.log(0.1 / 0.4)
    )
    kl21 = (0.6 * math.log(0.6 / 0.8) + 0.4 * math.log(0.4 / 0.2)) + (
        0.6 * math.log(0.6 / 0.9) + 0.4 * math.log(0.4 / 0.1)
    )
    expected = (kl12 / 2 + kl21 / 2) / 2  # batch mean of bit sums, then the symmetric average
    assert cib_kl(p1, p2).item() == pytest.approx(expected, abs=1e-6)
    assert cib_kl(p1, p1).item() == pytest.approx(0.0, abs=1e-7)


def test_cib_kl_eps_inside_logs_keeps_saturated_probabilities_finite():
    p1 = torch.tensor([[1.0, 0.0]], dtype=D)
    p2 = torch.tensor([[0.5, 0.5]], dtype=D)
    # KL(p1||p2) = log(1+e) - log(0.5+e) + 0*... per bit (0*log(0+e) = 0); eps is what makes 1-p=0 finite.
    e = 1e-8
    kl12 = 2 * (math.log(1 + e) - math.log(0.5 + e))
    kl21 = 2 * (0.5 * (math.log(0.5 + e) - math.log(1 + e)) + 0.5 * (math.log(0.5 + e) - math.log(e)))
    assert cib_kl(p1, p2).item() == pytest.approx((kl12 + kl21) / 2, rel=1e-12)


def _dkl_dp(p, q, e):
    """d/dp [p log((p+e)/(q+e)) + (1-p) log((1-p+e)/(1-q+e))] with q constant."""
    return (
        torch.log(p + e) + p / (p + e) - torch.log(q + e)
        - torch.log(1 - p + e) - (1 - p) / (1 - p + e) + torch.log(1 - q + e)
    )


def test_cib_kl_gradient_is_analytic_with_stop_gradient_on_target():
    torch.manual_seed(3)
    n = 5
    p1 = torch.rand(n, 6, dtype=D).clamp(0.05, 0.95).requires_grad_(True)
    p2 = torch.rand(n, 6, dtype=D).clamp(0.05, 0.95).requires_grad_(True)
    cib_kl(p1, p2).backward()
    e = 1e-8
    # Only KL(p1 || sg p2) reaches p1 (and vice versa); 1/2 symmetric average, 1/N batch mean.
    assert torch.allclose(p1.grad, _dkl_dp(p1.detach(), p2.detach(), e) / (2 * n), atol=1e-12)
    assert torch.allclose(p2.grad, _dkl_dp(p2.detach(), p1.detach(), e) / (2 * n), atol=1e-12)
    # Without eps the derivative is logit(p1) - logit(p2).
    logit = lambda p: torch.log(p / (1 - p))  # noqa: E731
    assert torch.allclose(p1.grad, (logit(p1) - logit(p2)).detach() / (2 * n), atol=1e-6)


# ============================================================================= unsupervised cos-MSE
def test_cosine_mse_halves_hand_example():
    # Pairs (0,2) and (1,3). b: cos 1 and 0. x: cos 1/sqrt2 and 1.
    b = torch.tensor([[1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [1.0, 1.0]])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    expected = ((1 - 1 / math.sqrt(2)) ** 2 + (0 - 1) ** 2) / 2
    assert cosine_mse_halves(b, x).item() == pytest.approx(expected, rel=1e-6)


def test_cosine_mse_halves_gradient_by_hand():
    torch.manual_seed(4)
    b = torch.randn(6, 5, dtype=D, requires_grad=True)
    x = torch.randn(6, 9, dtype=D)
    cosine_mse_halves(b, x).backward()
    n = 3
    grad = torch.zeros_like(b)
    for i in range(n):
        bi, bj, xi, xj = b[i].detach(), b[n + i].detach(), x[i], x[n + i]
        cb = float(bi @ bj / (bi.norm() * bj.norm()))
        cx = float(xi @ xj / (xi.norm() * xj.norm()))
        coef = 2 * (cb - cx) / n  # d/dcos of the mean of squares
        # d cos(a, c)/da = c/(|a||c|) - cos * a/|a|^2
        grad[i] = coef * (bj / (bi.norm() * bj.norm()) - cb * bi / bi.norm() ** 2)
        grad[n + i] = coef * (bi / (bi.norm() * bj.norm()) - cb * bj / bj.norm() ** 2)
    assert torch.allclose(b.grad, grad, atol=1e-12)


@pytest.mark.parametrize("rows", [1, 3, 7])
def test_cosine_mse_halves_rejects_odd_or_tiny_batch(rows):
    with pytest.raises(ValueError, match="even") as err:
        cosine_mse_halves(torch.randn(rows, 4), torch.randn(rows, 8))
    assert "drop_last" in str(err.value)


# ============================================================================================ GreedyHash
def test_greedy_penalty_value_and_gradient():
    h = torch.tensor([[2.0, -0.5], [0.0, -3.0]], requires_grad=True)
    # | |h|-1 |^3 = 1, 0.125, 1, 8 -> mean 10.125/4
    assert greedy_penalty(h).item() == pytest.approx(10.125 / 4)
    greedy_penalty(h).backward()
    hd = h.detach()
    expected = 3 * (hd.abs() - 1) ** 2 * torch.sign(hd.abs() - 1) * torch.sign(hd) / hd.numel()
    assert torch.allclose(h.grad, expected)
    # by hand: 3*1*1*1/4, 3*0.25*(-1)*(-1)/4 (moving -0.5 towards 0 raises the penalty), 0 (sign 0),
    # 3*4*1*(-1)/4
    assert torch.allclose(h.grad, torch.tensor([[0.75, 0.1875], [0.0, -3.0]]))


def test_greedy_supervised_loss_argmax_bce_and_indices():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    h = torch.tensor([[0.5, -1.5], [1.0, 1.0]])
    pen = (0.125 + 0.125 + 0 + 0) / 4
    ce = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    out = greedy_supervised_loss(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), h, alpha=0.1)
    assert out["classification"].item() == pytest.approx(ce, rel=1e-6)
    assert out["penalty"].item() == pytest.approx(pen)
    assert out["loss"].item() == pytest.approx(ce + 0.1 * pen, rel=1e-6)
    # Class indices give the same CE.
    idx = greedy_supervised_loss(logits, torch.tensor([0, 1]), h)
    assert idx["classification"].item() == pytest.approx(ce, rel=1e-6)
    # Multi-hot [1, 1]: argmax keeps the first class only.
    multi = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    am = greedy_supervised_loss(logits, multi, h)
    assert am["classification"].item() == pytest.approx(ce, rel=1e-6)
    # BCE with logits, mean over the 4 entries: y=1 -> log(1+e^-x), y=0 -> log(1+e^x).
    bce = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(0)) + math.log(2) + math.log(1 + math.exp(-1))) / 4
    out_b = greedy_supervised_loss(logits, multi, h, alpha=1.0, multilabel="bce")
    assert out_b["classification"].item() == pytest.approx(bce, rel=1e-6)
    assert out_b["loss"].item() == pytest.approx(bce + pen, rel=1e-6)
    with pytest.raises(ValueError):
        greedy_supervised_loss(logits, multi, h, multilabel="softmax")


# ============================================================================================ DCH
def _dch_paper_loop(u, labels, gamma, lam):
    """Paper DCH (DeepHash-pytorch port) with explicit scalar loops over pairs and bits."""
    n, k = u.shape
    sim = [[float(sum(labels[i][c] * labels[j][c] for c in range(labels.shape[1]))) > 0
            for j in range(n)] for i in range(n)]
    n1 = sum(sim[i][j] for i in range(n) for j in range(n))
    n0 = n * n - n1
    w1 = n * n / n1 if n1 and n0 else 1.0
    w0 = n * n / n0 if n1 and n0 else 1.0

    def dist(a, b):
        dot = sum(a[t] * b[t] for t in range(k))
        na = torch.sqrt(sum(a[t] * a[t] for t in range(k)))
        nb = torch.sqrt(sum(b[t] * b[t] for t in range(k)))
        cos = dot / torch.clamp(na * nb, min=1e-4)
        return k / 2 * (1 - torch.clamp(cos, max=0.99))

    cauchy = 0.0
    for i in range(n):
        for j in range(n):
            d = dist(u[i], u[j])
            if sim[i][j]:
                cauchy = cauchy + w1 * torch.log(1 + d / gamma)
            else:
                cauchy = cauchy + w0 * torch.log(1 + gamma / d)
    cauchy = cauchy / (n * n)
    ones = torch.ones(k, dtype=u.dtype)
    quant = sum(torch.log(1 + dist(u[i].abs(), ones) / gamma) for i in range(n)) / n
    return cauchy + lam * quant, cauchy, quant


def _dch_thulab_loop(u, labels, gamma, q_lambda):
    """thulab TF DCH (normed=False) with explicit loops: -s log c - (1-s) log(1-c), c = g/(d+g)."""
    n, k = u.shape
    sim = [[float(sum(labels[i][c] * labels[j][c] for c in range(labels.shape[1]))) > 0
            for j in range(n)] for i in range(n)]
    n1 = sum(sim[i][j] for i in range(n) for j in range(n))
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            d = sum((u[i][t] - u[j][t]) ** 2 for t in range(k)) + 0.001
            c = gamma / (d + gamma)
            if sim[i][j]:
                total = total - (n * n / n1) * torch.log(c)
            else:
                total = total - torch.log(1 - c)
    cauchy = total / (n * (n - 1))
    quant = sum((u[i][t].abs() - 1) ** 2 for i in range(n) for t in range(k)) / (n * k)
    return cauchy + q_lambda * quant, cauchy, quant


def test_dch_paper_hand_example_two_samples():
    # K=2, orthogonal codes, different classes: s = I, |S|=4, |S1|=|S0|=2 -> w = 2 everywhere.
    # diag: cos 1 -> clamp 0.99 -> d = 0.01; off-diag: cos 0 -> d = 1.
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cauchy = (2 * 2 * math.log(1 + 0.01 / 20) + 2 * 2 * math.log(1 + 20 / 1)) / 4
    quant = math.log(1 + (1 - 1 / math.sqrt(2)) / 20)  # d(|u_i|, 1) = K/2 (1 - 1/sqrt2), K/2 = 1
    out = dch_loss(u, y)
    assert out["cauchy"].item() == pytest.approx(cauchy, rel=1e-6)
    assert out["quantization"].item() == pytest.approx(quant, rel=1e-5)
    assert out["loss"].item() == pytest.approx(cauchy + 0.1 * quant, rel=1e-6)


def test_dch_paper_hand_example_balance_weights():
    # s = [[1,1,0],[1,1,0],[0,0,1]]: |S|=9, |S1|=5, |S0|=4 -> w1 = 1.8, w0 = 2.25.
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    cauchy = (
        3 * 1.8 * math.log(1 + 0.01 / 20)  # diagonal, d = 0.01
        + 2 * 1.8 * math.log(1 + 1 / 20)  # (0,1): cos 0, d = 1
        + 2 * 2.25 * math.log(1 + 20 / 2)  # (0,2): cos -1, d = 2
        + 2 * 2.25 * math.log(1 + 20 / 1)  # (1,2): cos 0, d = 1
    ) / 9
    quant = math.log(1 + (1 - 1 / math.sqrt(2)) / 20)
    out = dch_loss(u, y, gamma=20.0, lam=0.5)
    assert out["cauchy"].item() == pytest.approx(cauchy, rel=1e-6)
    assert out["loss"].item() == pytest.approx(cauchy + 0.5 * quant, rel=1e-6)


def test_dch_paper_one_sided_batches_use_unit_weights():
    torch.manual_seed(5)
    u = torch.randn(4, 3, dtype=D)
    d = _cos_dist_by_hand(u)
    # All similar: w = 1 -> mean log(1 + d/g) over the 16 entries.
    same = dch_loss(u, torch.ones(4, 2, dtype=D))
    assert same["cauchy"].item() == pytest.approx(torch.log1p(d / 20).mean().item(), rel=1e-12)
    # No similar pair at all (empty label rows): w = 1 -> mean log(1 + g/d).
    none = dch_loss(u, torch.zeros(4, 2, dtype=D))
    assert none["cauchy"].item() == pytest.approx(torch.log1p(20 / d).mean().item(), rel=1e-12)


def _cos_dist_by_hand(u):
    n, k = u.shape
    d = torch.empty(n, n, dtype=u.dtype)
    for i in range(n):
        for j in range(n):
            c = min(float(u[i] @ u[j]) / (float(u[i].norm()) * float(u[j].norm())), 0.99)
            d[i, j] = k / 2 * (1 - c)
    return d


def test_dch_thulab_hand_example():
    # s = [[1,1,0],[1,1,0],[0,0,1]]: sum s = 5 (diagonal included), n^2 = 9 -> similar weight 1.8.
    u = torch.tensor([[0.5, 0.0], [0.0, 0.5], [-0.5, 0.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # squared distances + 0.001: (0,1) 0.501, (0,2) 1.001, (1,2) 0.501
    cauchy = (
        2 * 1.8 * math.log(1 + 0.501 / 20)
        + 2 * math.log(1 + 20 / 1.001)
        + 2 * math.log(1 + 20 / 0.501)
    ) / 6  # 6 off-diagonal pairs
    quant = (3 * 0.25 + 3 * 1.0) / 6  # mean (|u| - 1)^2
    out = dch_loss(u, y, variant="thulab", q_lambda=0.5)
    assert out["cauchy"].item() == pytest.approx(cauchy, rel=1e-6)
    assert out["quantization"].item() == pytest.approx(quant, rel=1e-6)
    assert out["loss"].item() == pytest.approx(cauchy + 0.5 * quant, rel=1e-6)
    # q_lambda defaults to 0 (official script): the loss is the Cauchy term alone.
    assert dch_loss(u, y, variant="thulab")["loss"].item() == pytest.approx(cauchy, rel=1e-6)


def test_dch_thulab_one_sided_batches():
    u = torch.tensor([[0.5, 0.0], [0.0, 0.5], [-0.5, 0.0]])
    pairs = [0.501, 1.001, 0.501]  # (0,1), (0,2), (1,2), each counted twice
    # All similar: sum s = n^2 -> weight 1.
    same = dch_loss(u, torch.ones(3, 1), variant="thulab")
    assert same["cauchy"].item() == pytest.approx(sum(math.log(1 + d / 20) for d in pairs) / 3, rel=1e-6)
    # Distinct classes: only the (masked) diagonal is similar -> every off-diagonal weight is 1.
    dis = dch_loss(u, torch.eye(3), variant="thulab")
    assert dis["cauchy"].item() == pytest.approx(sum(math.log(1 + 20 / d) for d in pairs) / 3, rel=1e-6)
    # Empty label rows: TF would give NaN; here the weights are 1 and the loss equals `dis`.
    empty = dch_loss(u, torch.zeros(3, 2), variant="thulab")
    assert empty["cauchy"].item() == pytest.approx(dis["cauchy"].item(), rel=1e-7)


@pytest.mark.parametrize("variant", ["paper", "thulab"])
def test_dch_matches_explicit_double_loop_values_and_gradients(variant):
    torch.manual_seed(6)
    n, k = 4, 3
    u = (0.8 * torch.randn(n, k, dtype=D)).tanh().requires_grad_(True)
    y = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 1]], dtype=D)  # mixed, multi-hot
    if variant == "paper":
        ref, ref_c, ref_q = _dch_paper_loop(u, y, 20.0, 0.1)
        out = dch_loss(u, y, gamma=20.0, lam=0.1)
    else:
        ref, ref_c, ref_q = _dch_thulab_loop(u, y, 20.0, 0.3)
        out = dch_loss(u, y, gamma=20.0, variant="thulab", q_lambda=0.3)
    assert out["cauchy"].item() == pytest.approx(ref_c.item(), rel=1e-12)
    assert out["quantization"].item() == pytest.approx(ref_q.item(), rel=1e-12)
    (g_impl,) = torch.autograd.grad(out["loss"], u)
    (g_ref,) = torch.autograd.grad(ref, u)
    assert torch.allclose(g_impl, g_ref, atol=1e-12)
    assert g_impl.abs().max() > 1e-4  # the gradient is not trivially zero


@pytest.mark.parametrize("variant", ["paper", "thulab"])
def test_dch_gradient_matches_finite_differences(variant):
    torch.manual_seed(7)
    u = torch.randn(5, 4, dtype=D, requires_grad=True)
    y = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1], [1, 0]], dtype=D)
    f = lambda v: dch_loss(v, y, variant=variant, q_lambda=0.2)["loss"]  # noqa: E731
    assert torch.autograd.gradcheck(f, (u,))


def test_dch_argument_errors():
    with pytest.raises(ValueError, match="variant"):
        dch_loss(torch.randn(3, 4), torch.eye(3), variant="hashnet")
    with pytest.raises(ValueError, match=">= 2"):
        dch_loss(torch.randn(1, 4), torch.ones(1, 2))
