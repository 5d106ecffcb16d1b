"""Forward values and gradients of the hash layers against hand-derived numbers and formulas."""

import pytest
import torch

from hashcore.hash_layers import (
    bernoulli_ste,
    bihalf,
    cib_binarize,
    sign_ste,
)


# ------------------------------------------------------------------------------------------ SignSTE
def test_sign_ste_forward_keeps_exact_zero_and_backward_is_identity():
    x = torch.tensor([-2.0, -0.0, 0.0, 0.3, 5.0], requires_grad=True)
    b = sign_ste(x)
    assert b.tolist() == [-1.0, 0.0, 0.0, 1.0, 1.0]
    g = torch.tensor([0.1, -0.2, 0.3, -0.4, 0.5])
    b.backward(g)
    # Straight-through: dL/dx == dL/db, not sign's zero derivative.
    assert torch.equal(x.grad, g)


# ------------------------------------------------------------------------------------------ Bi-half
def test_bihalf_hand_example_forward_and_gradient():
    # One bit, N=3: sorted 0.3 (row 0) > 0.2 (row 2) > -0.1 (row 1); floor(3/2)=1 positive.
    u = torch.tensor([[0.3], [-0.1], [0.2]], requires_grad=True)
    b = bihalf(u, gamma=6.0)
    assert b.squeeze(1).tolist() == [1.0, -1.0, -1.0]
    b.sum().backward()
    # 1 + 6 * (U - B) / (N*K) with N*K = 3 -> 1 + 2 (U - B)
    expected = torch.tensor([[1 + 2 * (0.3 - 1)], [1 + 2 * (-0.1 + 1)], [1 + 2 * (0.2 + 1)]])
    assert torch.allclose(u.grad, expected)  # [-0.4, 2.8, 3.4]


def test_bihalf_paper_gamma_three():
    u = torch.tensor([[1.0, -2.0], [0.0, 3.0]], requires_grad=True)
    b = bihalf(u, gamma=3.0)
    assert b.tolist() == [[1.0, -1.0], [-1.0, 1.0]]
    g = torch.tensor([[0.5, 0.0], [0.0, -1.0]])
    b.backward(g)
    # N*K = 4: g + 3/4 (U - B)
    expected = g + 0.75 * (u.detach() - b.detach())
    assert torch.allclose(u.grad, expected)
    assert torch.allclose(u.grad, torch.tensor([[0.5, -0.75], [0.75, 0.5]]))


@pytest.mark.parametrize("n", [2, 5, 8, 33])
def test_bihalf_splits_every_column_half_half(n):
    torch.manual_seed(n)
    u = torch.randn(n, 7)
    b = bihalf(u)
    assert set(b.unique().tolist()) <= {-1.0, 1.0}
    # floor(N/2) positives per bit; odd N puts the extra row in -1.
    assert torch.equal((b > 0).sum(0), torch.full((7,), n // 2))
    for k in range(7):
        pos, neg = u[b[:, k] > 0, k], u[b[:, k] < 0, k]
        if len(pos):
            assert pos.min() > neg.max()  # the top values are the +1 ones


def test_bihalf_ties_lower_row_index_wins():
    # Column 0: all equal. Column 1: rows 1..4 tie at 0 below the largest value.
    u = torch.tensor([[2.0, 5.0], [2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [2.0, 0.0]])
    b = bihalf(u)
    assert b[:, 0].tolist() == [1.0, 1.0, -1.0, -1.0, -1.0]
    assert b[:, 1].tolist() == [1.0, 1.0, -1.0, -1.0, -1.0]
    # Even N with a full tie: exactly half/half.
    b4 = bihalf(torch.zeros(4, 3))
    assert b4[:, 0].tolist() == [1.0, 1.0, -1.0, -1.0]
    assert torch.equal((b4 > 0).sum(0), torch.tensor([2, 2, 2]))


def test_bihalf_ties_in_a_large_batch_are_deterministic():
    # 100 rows: 34 ones (rows 0, 3, 6, ...) and 66 zeros; 50 positives = the 34 ones plus the 16
    # lowest-index zero rows. (An unstable CPU sort reorders ties at this size.)
    u = torch.zeros(100, 2)
    u[::3] = 1.0
    b = bihalf(u)
    zero_rows = [r for r in range(100) if r % 3]
    expected = torch.full((100,), -1.0)
    expected[::3] = 1.0
    expected[zero_rows[:16]] = 1.0
    assert torch.equal(b[:, 0], expected) and torch.equal(b[:, 1], expected)


def test_bihalf_gradient_formula_random():
    torch.manual_seed(0)
    n, k, gamma = 6, 4, 6.0
    u = torch.randn(n, k, dtype=torch.float64, requires_grad=True)
    g = torch.randn(n, k, dtype=torch.float64)
    b = bihalf(u, gamma)
    b.backward(g)
    assert torch.allclose(u.grad, g + gamma * (u.detach() - b.detach()) / (n * k))


def test_bihalf_rejects_batch_of_one_and_non_matrix():
    with pytest.raises(ValueError, match="at least 2"):
        bihalf(torch.randn(1, 8))
    with pytest.raises(ValueError, match="2-D"):
        bihalf(torch.randn(8))


# ------------------------------------------------------------------------------------------ CIBHash
def test_cib_binarize_deterministic_is_sign_of_prob_minus_half():
    p = torch.tensor([[0.1, 0.5, 0.51, 0.99]], requires_grad=True)
    z = cib_binarize(p)
    assert z.tolist() == [[-1.0, 0.0, 1.0, 1.0]]  # exactly 0.5 -> 0 as in the official code
    g = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    z.backward(g)
    assert torch.equal(p.grad, g)


def test_bernoulli_ste_values_seed_frequency_and_gradient():
    p = torch.tensor([0.0, 0.2, 0.7, 1.0]).repeat(20000, 1).requires_grad_(True)
    gen = torch.Generator().manual_seed(123)
    b = bernoulli_ste(p, generator=gen)
    assert set(b.detach().unique().tolist()) <= {-1.0, 1.0}
    assert (b[:, 0] == -1).all() and (b[:, 3] == 1).all()
    # E[b] = 2p - 1; 20000 draws -> standard error <= 0.007.
    mean = b.detach().mean(0)
    assert torch.allclose(mean, torch.tensor([-1.0, -0.6, 0.4, 1.0]), atol=0.03)
    # Same seed -> same draw; different seed -> different draw.
    again = bernoulli_ste(p, generator=torch.Generator().manual_seed(123))
    other = bernoulli_ste(p, generator=torch.Generator().manual_seed(124))
    assert torch.equal(b, again) and not torch.equal(b, other)
    g = torch.randn(p.shape)
    b.backward(g)
    assert torch.equal(p.grad, g)


def test_cib_binarize_stochastic_uses_generator():
    p = torch.full((4, 16), 0.5)
    a = cib_binarize(p, stochastic=True, generator=torch.Generator().manual_seed(0))
    b = cib_binarize(p, stochastic=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert (a.abs() == 1).all() and (a > 0).any() and (a < 0).any()
