"""PCAH, spectral hashing and Hashing-Baseline (PCA → random rotation → sign): fitted in closed form on the train
split; every fitted quantity and code equals an independent NumPy computation of the official recipe, fits are
seed-deterministic, and a fitted model comes back from its checkpoint."""
import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader

from lightning_modules.hashing_baseline import HashingBaseline
from lightning_modules.pcah import PCAH
from lightning_modules.spectral_hashing import SpectralHashing, spectral_modes
from tests.test_baselines import Rows, _features, _fit, _model


def _oriented(p):
    """Each column signed so that its largest-magnitude entry is positive (the suite's reproducible PCA)."""
    return p * np.sign(p[np.abs(p).argmax(0), np.arange(p.shape[1])])


def _pca_by_hand(x, k):
    """Mean and the k leading principal directions from the SVD of the centred data."""
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, _oriented(vt[:k].T)


def _codes(model, q):
    with torch.no_grad():
        return model.encode(torch.as_tensor(q, dtype=torch.float32)).numpy()


def _sign(u):
    return np.where(u >= 0, 1.0, -1.0)


# ---- PCAH ------------------------------------------------------------------------------------------------------
def test_pcah_is_sign_of_the_centred_leading_principal_components():
    x = _features(n=150, d=64, seed=4).astype(np.float32).astype(np.float64)
    model = _fit(_model(PCAH, 8), x, batch_size=40)
    mean, p = _pca_by_hand(x, 8)
    np.testing.assert_allclose(model.mean.numpy(), mean, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(model.projection.numpy(), p, atol=1e-6)
    q = _features(n=40, d=64, seed=5).astype(np.float32)
    assert (_codes(model, q) == _sign((q - mean) @ p)).mean() > 0.999  # float32 rounding near 0


def test_pcah_needs_enough_dimensions_and_images():
    with pytest.raises(ValueError, match="model.bits must be <= 64"):
        PCAH(bits=128, backbone="tiny_cnn", pretrained=False)
    with pytest.raises(ValueError, match="at least model.bits=16 train images"):
        _fit(_model(PCAH, 16), _features(n=10, d=64))


# ---- spectral hashing --------------------------------------------------------------------------------------------
def test_spectral_modes_of_a_2_by_1_box_by_hand():
    # R = (2, 1), K = 3: maxMode = ceil(4·R/2) = (4, 2), so modes (1,0), (2,0), (3,0), (0,1) with eigenvalues
    # (mπ/R_d)²: π²/4, π², 9π²/4, π². (2,0) and (0,1) tie at π²; MATLAB's stable sort keeps (2,0) first.
    modes = spectral_modes(torch.tensor([2.0, 1.0], dtype=torch.float64), 3)
    assert modes.tolist() == [[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]
    # a long box: every one of the K modes lies along it
    assert spectral_modes(torch.tensor([10.0, 1.0], dtype=torch.float64), 4)[:, 1].abs().sum() == 0


def _train_sh_by_hand(x, nbits):
    """trainSH.m, line by line in NumPy (0-based rows); PCA by eigh of cov(X), oriented as the suite does."""
    npca = min(nbits, x.shape[1])
    _, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
    pc = _oriented(vectors[:, ::-1][:, :npca])
    xp = x @ pc  # no need to remove the mean
    mn, mx = xp.min(0) - np.finfo(float).eps, xp.max(0) + np.finfo(float).eps
    r = mx - mn
    max_mode = np.ceil((nbits + 1) * r / r.max()).astype(int)
    modes = np.ones((max_mode.sum() - len(max_mode) + 1, npca))
    m = 1  # MATLAB's m = 1 is the second row
    for i in range(npca):
        modes[m:m + max_mode[i] - 1, i] = np.arange(2, max_mode[i] + 1)
        m += max_mode[i] - 1
    modes -= 1
    eig_val = -((modes * (np.pi / r)) ** 2).sum(1)
    ii = np.argsort(-eig_val, kind="stable")
    return pc, mn, mx, modes[ii[1:nbits + 1]]


def _compress_sh_by_hand(x, pc, mn, mx, modes):
    """compressSH.m's U: bit i is U[:, i] > 0."""
    xp = x @ pc - mn
    omegas = modes * (np.pi / (mx - mn))
    return np.stack([np.prod(np.sin(xp * omegas[i] + np.pi / 2), 1) for i in range(len(modes))], 1)


@pytest.mark.parametrize("bits", [12, 80])  # 80 > 64 features: npca = D, several modes per direction
def test_spectral_hashing_matches_trainSH_and_compressSH_by_hand(bits):
    x = _features(n=160, d=64, seed=6).astype(np.float32).astype(np.float64)
    model = _fit(_model(SpectralHashing, bits), x, batch_size=50)
    pc, mn, mx, modes = _train_sh_by_hand(x, bits)
    np.testing.assert_allclose(np.abs(model.projection.numpy().T @ pc).diagonal(), 1.0, atol=1e-6)
    np.testing.assert_allclose(model.projection.numpy(), pc, atol=1e-5)
    np.testing.assert_allclose(model.mn.numpy(), mn, rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(model.mx.numpy(), mx, rtol=1e-7, atol=1e-6)
    np.testing.assert_array_equal(model.modes.numpy(), modes)
    q = _features(n=50, d=64, seed=7).astype(np.float32)
    u = _compress_sh_by_hand(q.astype(np.float64), pc, mn, mx, modes)
    assert len(np.unique(_codes(model, q), axis=0)) > 5  # the bits are not constant
    assert (_codes(model, q) == _sign(u)).mean() > 0.999


# ---- Hashing-Baseline: PCA → random orthogonal rotation → sign --------------------------------------------------
def _orthogonal_by_hand(bits, seed):
    """nn.init.orthogonal_'s recipe: QR of a Gaussian matrix, each column signed by diag(R); the same draws."""
    g = torch.Generator().manual_seed(seed)
    a = torch.empty(bits, bits, dtype=torch.float64).normal_(0, 1, generator=g).numpy()
    q, r = np.linalg.qr(a)
    return q * np.sign(np.diag(r))  # W; the official code applies nn.Linear: u = z Wᵀ


def test_hashing_baseline_exact_pca_matches_a_hand_computation():
    x = _features(n=150, d=64, seed=8).astype(np.float32).astype(np.float64)
    model = _fit(_model(HashingBaseline, 8, pca="exact", seed=11), x, batch_size=40)
    mean, p = _pca_by_hand(x, 8)
    w = _orthogonal_by_hand(8, 11)
    np.testing.assert_allclose(w @ w.T, np.eye(8), atol=1e-12)
    np.testing.assert_allclose(model.rotation.numpy(), w.T, atol=1e-12)
    np.testing.assert_allclose(model.projection.numpy(), p, atol=1e-6)
    q = _features(n=40, d=64, seed=9).astype(np.float32)
    assert (_codes(model, q) == _sign(((q - mean) @ p) @ w.T)).mean() > 0.999


def test_hashing_baseline_lowrank_pca_finds_the_leading_subspace_and_is_seeded():
    x = _features(n=200, d=64, seed=10).astype(np.float32).astype(np.float64)
    a = _fit(_model(HashingBaseline, 4, seed=3), x)
    b = _fit(_model(HashingBaseline, 4, seed=3), x)
    c = _fit(_model(HashingBaseline, 4, seed=4), x)
    _, p = _pca_by_hand(x, 4)
    low = a.projection.numpy()
    np.testing.assert_allclose(low.T @ low, np.eye(4), atol=1e-10)
    # the randomised PCA (q = K, 2 power iterations) approximates the exact leading subspace: the well-separated
    # directions exactly, the last one (variance 2² next to 1.5²) only roughly; it keeps nearly all the variance
    cosines = np.linalg.svd(low.T @ p, compute_uv=False)
    assert cosines[2] > 0.999 and cosines[3] > 0.8
    cov = np.cov(x, rowvar=False)
    assert 0.95 < np.trace(low.T @ cov @ low) / np.trace(p.T @ cov @ p) <= 1 + 1e-9
    assert torch.equal(a.projection, b.projection) and torch.equal(a.rotation, b.rotation)
    assert not torch.equal(a.rotation, c.rotation)
    with pytest.raises(ValueError, match="model.pca must be 'lowrank'"):
        _model(HashingBaseline, 4, pca="svd")


# ---- every closed-form method of this file -----------------------------------------------------------------------
CLASSES = [PCAH, SpectralHashing, HashingBaseline]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_fit_is_deterministic_and_independent_of_batching(cls):
    x = _features(n=120, d=64, seed=12)
    a, b = _fit(_model(cls, 16), x, batch_size=32), _fit(_model(cls, 16), x, batch_size=25)
    for name, buf in a.named_buffers():
        if buf.is_floating_point():
            torch.testing.assert_close(buf, dict(b.named_buffers())[name], rtol=1e-9, atol=1e-9)
    q = _features(n=30, d=64, seed=13)
    assert np.array_equal(_codes(a, q), _codes(b, q))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_fitted_method_reloads_from_its_checkpoint(cls, tmp_path):
    x = _features(n=120, d=64, seed=14)
    model = _model(cls, 16)
    model.use_cached_inputs(True)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, default_root_dir=tmp_path,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, DataLoader(Rows(x), batch_size=32, shuffle=True))
    ckpt = tmp_path / "fitted.ckpt"
    trainer.save_checkpoint(ckpt)
    back = cls.load_from_checkpoint(ckpt, map_location="cpu")
    back.use_cached_inputs(True)
    fresh = dict(_model(cls, 16).named_buffers())
    for name, buf in model.named_buffers():
        assert torch.equal(buf, dict(back.named_buffers())[name]), name
    assert not torch.equal(model.projection, fresh["projection"])  # fitted, so the reload carried the fit
    q = _features(n=30, d=64, seed=15)
    assert np.array_equal(_codes(model.eval(), q), _codes(back.eval(), q))


def test_selectable_in_compare_as_methods_and_as_baselines():
    from hashbench.sweep_args import parse
    from tests.test_cli import EXP
    args, _ = parse(["--config", str(EXP / "demo_mnist.yaml"), "--methods", "pcah,spectral_hashing",
                     "--baselines", "hashing_baseline,lsh"])
    assert args.methods == ["pcah", "sh", "pcarr", "lsh"]
    assert args.baseline_names == ["pcah", "sh", "pcarr", "lsh"]  # drawn as baselines in every figure


def test_timm_vit_backbone_takes_the_data_image_size():
    """timm builds DINOv2 ViTs for 518-px inputs; the suite's 224-px data must go through (no download here)."""
    from lightning_modules.backbones import build_backbone
    backbone = build_backbone("timm:vit_small_patch14_dinov2", pretrained=False, freeze=True, freeze_mode="eval")
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 224, 224)).shape == (1, backbone.out_dim) == (1, 384)


# ---- DDP: 2 processes fit exactly what one process fits -----------------------------------------------------------
class _UnwrappedDDP(DDPStrategy):
    """DDP without the DistributedDataParallel wrapper, which refuses a module with no trainable parameter
    (``strategy="ddp"`` itself stops there for every closed-form method, LSH and ITQ included: an open bug of the
    strategy choice, not of the fit). What is compared is the fit: gathered, de-duplicated train features."""

    def configure_ddp(self) -> None:
        pass


def _fit_all(devices: int) -> dict:
    x = _features(n=101, d=64, seed=16)  # odd: DistributedSampler pads a rank with a repeated row
    out = {}
    for cls in CLASSES:
        model = _model(cls, 8)
        model.use_cached_inputs(True)
        trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=devices,
                            strategy=_UnwrappedDDP() if devices > 1 else "auto", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
        trainer.fit(model, DataLoader(Rows(x), batch_size=16, shuffle=False))
        out[cls.__name__] = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    return out


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    import os
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    fitted = _fit_all(world)
    torch.save(fitted, f"{out}.{rank}")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_two_process_fit_equals_the_single_process_fit(tmp_path):
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "fitted.pt")
    mp.spawn(_rank_main, args=(2, port, out), nprocs=2, join=True)
    single = _fit_all(1)
    for rank in (0, 1):
        ddp = torch.load(f"{out}.{rank}")
        for name, buffers in single.items():
            for k, v in buffers.items():
                torch.testing.assert_close(ddp[name][k], v, rtol=1e-9, atol=1e-9, msg=f"{name}.{k} on rank {rank}")
