"""The Bi-half autoencoder study's new pieces against hand-derived numbers: the sign layer with the pull gradient
(``AutoEncoder/Sign.py``) and the bit-balance penalty (``AutoEncoder/SignReg.py``). The bi-half layer itself is the
suite's ``bihalf`` (tests/test_hash_layers.py)."""
import pytest
import torch

from hashcore.hash_layers import sign_pull
from hashcore.losses import bit_balance_penalty


def test_sign_pull_forward_is_sign_and_backward_adds_gamma_u_minus_b_over_nk():
    # N = 2 rows, K = 3 bits: N*K = 6
    u = torch.tensor([[0.5, -2.0, 0.0], [-0.25, 1.5, 3.0]], requires_grad=True)
    b = sign_pull(u, gamma=0.2)
    assert b.tolist() == [[1.0, -1.0, 0.0], [-1.0, 1.0, 1.0]]  # sign(0) = 0 as in the official code
    g = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.25, 0.0]])
    b.backward(g)
    # by hand: u - b = [[-0.5, -1, 0], [0.75, 0.5, 2]]; times 0.2 / 6
    pull = [[-0.5 * 0.2 / 6, -1.0 * 0.2 / 6, 0.0], [0.75 * 0.2 / 6, 0.5 * 0.2 / 6, 2.0 * 0.2 / 6]]
    expected = torch.tensor([[1.0 + pull[0][0], pull[0][1], -1.0], [0.5 + pull[1][0], 0.25 + pull[1][1], pull[1][2]]])
    torch.testing.assert_close(u.grad, expected, rtol=0, atol=1e-7)


def test_sign_pull_with_gamma_zero_is_the_straight_through_sign():
    u = torch.tensor([[0.3, -0.7]], requires_grad=True)
    sign_pull(u, gamma=0.0).sum().backward()
    assert u.grad.tolist() == [[1.0, 1.0]]


def test_sign_pull_refuses_a_non_matrix():
    with pytest.raises(ValueError, match="2-D"):
        sign_pull(torch.ones(3))


def test_bit_balance_penalty_value_and_gradient_by_hand():
    # N = 4, K = 2: bit 0 has three +1 -> mean 0.5; bit 1 is balanced -> mean 0
    b = torch.tensor([[1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]], requires_grad=True)
    loss = bit_balance_penalty(b)
    assert loss.item() == pytest.approx((0.5 ** 2 + 0.0 ** 2) / 2 / 2)  # mean over K of m_k^2, halved
    loss.backward()
    # d/db_nk = m_k / (N K) = 0.5 / 8 for bit 0, 0 for bit 1, on every row
    assert b.grad.tolist() == [[0.0625, 0.0]] * 4


def test_bit_balance_penalty_is_the_official_matrix_form():
    torch.manual_seed(0)
    b = torch.randn(7, 5).sign()
    ones = torch.ones(7, 1)
    official = torch.mean(torch.pow(b.t().mm(ones) / 7, 2)) / 2  # SignReg.py, line for loss_reg
    torch.testing.assert_close(bit_balance_penalty(b), official)
