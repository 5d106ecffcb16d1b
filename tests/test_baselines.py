"""LSH and ITQ: fitted in closed form on the train split; codes equal a hand computation in NumPy."""
import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_modules import ITQ, LSH


class Rows(Dataset):
    """Items (row, label, index): 2-D rows stand for backbone features (the backbone runs on cached rows)."""

    def __init__(self, x):
        self.x = torch.as_tensor(x, dtype=torch.float32)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], torch.zeros(2), i


def _features(n=120, d=64, seed=0):
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(6, d))
    return (rng.normal(size=(n, 6)) * [5, 4, 3, 2, 1.5, 1]) @ basis + 0.3 * rng.normal(size=(n, d)) + 2.0


def _fit(model, x, batch_size=32):
    model.use_cached_inputs(True)  # the rows are the backbone's output, as with the feature cache
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, DataLoader(Rows(x), batch_size=batch_size, shuffle=True))
    return model


def _model(cls, bits, **kw):
    return cls(bits=bits, backbone="tiny_cnn", pretrained=False, **kw)  # 64-d features


def test_lsh_is_sign_of_centred_random_projection():
    x = _features(d=64)
    model = _fit(_model(LSH, 16, seed=3), x, batch_size=25)  # 120 = 4 full batches + 20: every row counts
    w = model.projection.numpy()
    assert w.shape == (64, 16) and abs(w.mean()) < 0.1 and abs(w.std() - 1) < 0.1  # N(0, 1) entries
    np.testing.assert_allclose(model.mean.numpy(), x.astype(np.float32).astype(np.float64).mean(0), rtol=1e-6)
    q = _features(n=30, d=64, seed=1)
    expected = np.where((q.astype(np.float32) - x.astype(np.float32).mean(0)) @ w >= 0, 1.0, -1.0)
    with torch.no_grad():
        got = model.encode(torch.as_tensor(q, dtype=torch.float32)).numpy()
    assert (got == expected).mean() > 0.999  # float32 rounding may flip a score within 1e-6 of 0
    other = _model(LSH, 16, seed=4)
    assert not torch.equal(other.projection, model.projection)  # the seed draws the projection


def _itq_by_hand(x, bits, iterations, seed):
    """Gong & Lazebnik's ITQ.m in NumPy: PCA by SVD of the centred data, sign-normalised; then B/R alternation."""
    mean = x.mean(0)
    xc = x - mean
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    p = vt[:bits].T
    p = p * np.sign(p[np.abs(p).argmax(0), np.arange(bits)])
    v = xc @ p
    r0 = torch.linalg.qr(torch.randn(bits, bits, generator=torch.Generator().manual_seed(seed),
                                     dtype=torch.float64))[0].numpy()  # the same random start
    r, losses = r0, []
    for _ in range(iterations):
        z = v @ r
        b = np.where(z >= 0, 1.0, -1.0)
        losses.append(((b - z) ** 2).sum())
        u, _, wt = np.linalg.svd(v.T @ b)
        r = u @ wt
    return mean, p, r, losses


def test_itq_matches_a_hand_computation_and_lowers_the_quantisation_loss():
    x = _features(n=200, d=64, seed=2).astype(np.float32).astype(np.float64)
    model = _fit(_model(ITQ, 8, iterations=50, seed=5), x, batch_size=40)
    mean, p, r, losses = _itq_by_hand(x, 8, 50, 5)
    np.testing.assert_allclose(model.mean.numpy(), mean, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(model.projection.numpy(), p, atol=1e-6)
    np.testing.assert_allclose(model.rotation.numpy(), r, atol=1e-5)
    np.testing.assert_allclose(model.quantization_loss, losses, rtol=1e-6)
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:]))  # each update can only lower ‖B − VR‖²
    assert losses[-1] < losses[0]
    q = _features(n=40, d=64, seed=3).astype(np.float32)
    expected = np.where(((q - mean) @ p) @ r >= 0, 1.0, -1.0)
    with torch.no_grad():
        got = model.encode(torch.as_tensor(q)).numpy()
    assert (got == expected).mean() > 0.999


def test_itq_needs_enough_dimensions_and_images():
    with pytest.raises(ValueError, match="model.bits must be <= 64"):
        ITQ(bits=128, backbone="tiny_cnn", pretrained=False)
    with pytest.raises(ValueError, match="at least model.bits=16 train images"):
        _fit(_model(ITQ, 16), _features(n=10, d=64))
