"""Every registered method: a real optimisation step on CPU, encode() shape/dtype/values, and its contracts.

The generic tests run over ``hashcore.registry``, so a newly registered method is tested with no edit here.
"""
import lightning as L
import pytest
import torch

from hashbench.cli import connect
from lightning_modules import DCH, BiHalfNet, CIBHash, GreedyHash
from lightning_modules.backbones import build_backbone
from lightning_modules.base import HashModule, NonFiniteLossError
from lightning_modules import get_method, method_names, resolve_method_name
from tests.toy import ToyData

TINY = dict(backbone="tiny_cnn", pretrained=False)


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y, idx = self.base[i]
        return [x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)], y, idx


class ViewsToyData(ToyData):
    """The toy data with as many noisy views per image as the model asks for (what the CLI's hand-over does)."""

    def __init__(self, views: int = 1, **kw):
        super().__init__(**kw)
        self.views = views

    def train_dataloader(self):
        ds = TwoViews(self.train_set) if self.views == 2 else self.train_set
        return torch.utils.data.DataLoader(ds, batch_size=self.batch_size, shuffle=True, drop_last=True)


def _fit(model, data, **trainer_kw):
    before = {n: p.detach().clone() for n, p in [*model.named_parameters(), *model.named_buffers()]}
    trainer = L.Trainer(**{"fast_dev_run": 2, **trainer_kw}, accelerator="cpu", logger=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, data)
    now = dict([*model.named_parameters(), *model.named_buffers()])
    changed = [n for n in before if not torch.equal(before[n], now[n])]
    return trainer, changed


def _build(name: str, **kw):
    cls = get_method(name)
    kw = {**TINY, **kw}
    if hasattr(cls, "input_dim"):
        kw.setdefault("input_dim", 3 * 8 * 8)  # an autoencoder reconstructs its (toy 3x8x8) input
    if not cls.baseline:
        kw.setdefault("freeze", False)
        kw.setdefault("lr", 1e-2)
    return cls(bits=16, **kw)


@pytest.mark.parametrize("name", method_names())
def test_every_registered_method_trains_and_encodes(name):
    model = _build(name)
    data = ViewsToyData(views=model.train_views, top_k=None)
    if hasattr(model, "input_dim"):  # an autoencoder's BCE reconstructs pixels in [0, 1]
        data.train_set.images = data.train_set.images.sigmoid()
    connect(model, data)  # the CLI's hand-over: number of classes (CSQ's centres), batch-size check
    trainer, changed = _fit(model, data)
    assert changed, "no trainable parameter or fitted buffer moved"
    if not model.baseline:
        assert torch.isfinite(trainer.callback_metrics["train/loss"])
    model.eval()
    codes = model.encode(torch.randn(5, 3, 8, 8))
    assert codes.shape == (5, 16) and codes.dtype == torch.float32
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    got_codes, scores = model.codes_and_scores(torch.randn(3, 3, 8, 8))
    assert torch.equal(got_codes, torch.where(scores >= 0, 1.0, -1.0))


def test_supervised_greedyhash_trains_and_takes_the_number_of_classes():
    model = GreedyHash(bits=16, supervised=True, **TINY, freeze=False, lr=1e-2)
    with pytest.raises(ValueError, match="number of classes"):
        _fit(model, ToyData())
    model.set_num_classes(4)  # what the CLI's hand-over does with the datamodule's num_classes
    _, changed = _fit(model, ToyData())
    assert any(n.startswith("classifier") for n in changed)
    fixed = GreedyHash(bits=8, supervised=True, num_classes=3, **TINY)
    with pytest.raises(ValueError, match="model.num_classes=3 but the data has 4"):
        fixed.set_num_classes(4)


def test_dch_thulab_variant_trains():
    _, changed = _fit(DCH(bits=16, variant="thulab", **TINY, lr=1e-3), ToyData())
    assert changed


def test_registry_names_aliases_and_class_names():
    assert {"cib", "bihalf", "dch", "greedy", "lsh", "itq"} <= set(method_names())
    assert resolve_method_name("CIBHash") == resolve_method_name("cibhash") == "cib"
    assert get_method("BiHalfNet") is BiHalfNet and get_method("greedyhash") is GreedyHash
    with pytest.raises(ValueError, match="registered methods: .*cib"):
        resolve_method_name("foo")


def test_every_registered_method_is_exported_by_its_class_name():
    """``lightning_modules.<Class>`` comes from the registry, so a new method file needs no export list."""
    import lightning_modules

    for name in method_names():
        cls = get_method(name)
        assert getattr(lightning_modules, cls.__name__) is cls
        assert cls.__name__ in lightning_modules.__all__
    assert lightning_modules.HashModule is HashModule
    with pytest.raises(AttributeError, match="no attribute 'NoSuchMethod'"):
        lightning_modules.NoSuchMethod


def test_every_loss_term_is_logged():
    trainer, _ = _fit(GreedyHash(bits=8, **TINY, freeze=False), ToyData())
    assert {"train/loss", "train/similarity", "train/penalty"} <= set(trainer.callback_metrics)


def test_encode_is_sign_of_scores_with_zero_to_plus_one():
    model = BiHalfNet(bits=4, **TINY).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 0.0]))
    assert model.encode(torch.randn(2, 3, 8, 8)).tolist() == [[1, 1, -1, 1]] * 2


def test_codes_and_scores_uses_an_overridden_encode():
    class Flipped(BiHalfNet):
        def encode(self, x):
            return -super().encode(x)

    model = Flipped(bits=4, **TINY).eval()
    x = torch.randn(3, 3, 8, 8)
    codes, scores = model.codes_and_scores(x)
    assert torch.equal(codes, model.encode(x)) and torch.equal(codes, -torch.where(scores >= 0, 1.0, -1.0))


@pytest.mark.parametrize("make,batch,message", [
    (lambda: BiHalfNet(bits=8, **TINY), 31, "data.batch_size must be even"),
    (lambda: BiHalfNet(bits=8, **TINY), 1, "at least 2 images"),
    (lambda: GreedyHash(bits=8, **TINY), 7, "data.batch_size must be even"),
    (lambda: CIBHash(bits=8, **TINY), 1, "at least 2 images"),
    (lambda: DCH(bits=8, **TINY), 1, "at least 2 images"),
])
def test_degenerate_batch_sizes_are_refused_naming_the_option(make, batch, message):
    with pytest.raises(ValueError, match=message):
        make().check_batch_size(batch)


def test_valid_batch_sizes_pass():
    GreedyHash(bits=8, supervised=True, num_classes=4, **TINY).check_batch_size(7)  # CE has no pairs
    CIBHash(bits=8, **TINY).check_batch_size(3)


class _NaNAfter(BiHalfNet):
    """From step 3 on its input images hold a NaN, as a corrupt image or an overflowing feature would."""

    def training_step(self, batch, batch_idx):
        images, labels, index = batch
        if self.global_step >= 3:
            images = images.clone()
            images[0, 0, 0, 0] = float("nan")
        return super().training_step((images, labels, index), batch_idx)


def test_non_finite_loss_stops_at_the_first_bad_step_and_keeps_the_last_good_checkpoint(tmp_path):
    from callbacks.checkpoints import LastCheckpoint
    model = _NaNAfter(bits=8, **TINY, freeze=False, optimizer="adam", lr=1e-3, lr_step=None)
    trainer = L.Trainer(max_epochs=5, limit_train_batches=2, accelerator="cpu", logger=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[LastCheckpoint(str(tmp_path))])
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(model, ToyData())
    message = str(info.value)
    assert "step 3" in message and "epoch 1" in message and "similarity = nan" in message
    assert "learning rate 0.001" in message and "--model.lr" in message
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == 2  # the end of the last complete epoch
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step never reached the weights


def test_frozen_backbone_keeps_dropout_live_in_train_mode_but_not_batchnorm():
    vgg = build_backbone("vgg16", pretrained=False, freeze=True).train()
    assert vgg.suffix[0].training and not any(p.requires_grad for p in vgg.parameters())
    mob = build_backbone("mobilenet_v2", pretrained=False, freeze=True).train()
    bns = [m for m in mob.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    det = build_backbone("vgg16", pretrained=False, freeze=True, freeze_mode="eval").train()
    assert not det.suffix[0].training


class _ModesSeenInTraining(L.Callback):
    def __init__(self):
        self.modes = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.modes.append({n: m.training for n, m in pl_module.backbone.named_modules()})


@pytest.mark.parametrize("freeze_mode", ["train", "eval"])
def test_frozen_backbone_modes_hold_inside_trainer_fit(freeze_mode):
    """Lightning keeps the modes modules were built with (it never calls model.train() when fitting), so the
    backbone must be built in them: frozen BatchNorm statistics do not move during training on images,
    and freeze_mode=eval has no live layer at any step."""
    model = BiHalfNet(bits=8, backbone="mobilenet_v2", pretrained=False, freeze=True, freeze_mode=freeze_mode)
    bns = {n: m for n, m in model.backbone.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    stats = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in bns.items()}
    seen = _ModesSeenInTraining()
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[seen])
    trainer.fit(model, ToyData())
    assert len(seen.modes) == 3
    for modes in seen.modes:
        assert not any(modes[n] for n in bns)
        if freeze_mode == "eval":
            assert not any(modes.values())
    for n, m in bns.items():
        assert torch.equal(m.running_mean, stats[n][0]) and torch.equal(m.running_var, stats[n][1]), n


def test_cached_inputs_run_only_what_follows_the_cacheable_part():
    vgg = BiHalfNet(bits=8, backbone="vgg16", pretrained=False).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        rows = vgg.cacheable_encoder()(x)
        full = vgg.hash_scores(x)
        vgg.use_cached_inputs(True)
        from_rows = vgg.hash_scores(rows)
    assert rows.shape == (2, 4096) and torch.allclose(from_rows, full, atol=1e-5)
    whole = BiHalfNet(bits=8, backbone="vgg16", pretrained=False, freeze_mode="eval")
    assert isinstance(whole.cacheable_encoder(), torch.nn.Sequential)  # fc7 is deterministic too
    assert BiHalfNet(bits=8, **TINY, freeze=False).cacheable_encoder() is None  # a trained backbone


def test_wrong_number_of_views_is_one_clear_error():
    with pytest.raises(ValueError, match="2 augmented view"):
        _fit(CIBHash(bits=8, **TINY), ToyData())


@pytest.mark.parametrize("kw,option", [({"bits": 0}, "model.bits"), ({"lr": -1.0}, "model.lr"),
                                       ({"optimizer": "lbfgs"}, "model.optimizer"), ({"lr_step": 0}, "model.lr_step")])
def test_bad_hyperparameters_are_rejected_naming_the_option(kw, option):
    with pytest.raises(ValueError, match=option.replace(".", r"\.")):
        BiHalfNet(**{"bits": 8, **TINY, **kw})


def test_param_groups_apply_head_and_bias_multipliers():
    model = DCH(bits=8, backbone="tiny_cnn", pretrained=False, freeze=True, head_lr_multiplier=10.0, lr=1e-3)
    opt = model.configure_optimizers()
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(1e-2)]  # frozen backbone: the head alone
    model = DCH(bits=8, backbone="tiny_cnn", pretrained=False, freeze=False, head_lr_multiplier=10.0,
                bias_lr_multiplier=2.0, lr=1e-3, lr_step=3)  # the official TF DCH's 1/2/10/20 multipliers
    conf = model.configure_optimizers()
    groups = {round(g["lr"], 9): g["params"] for g in conf["optimizer"].param_groups}
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(groups) == [1e-3, 2e-3, 1e-2, 2e-2]
    assert all(names[id(p)].startswith("backbone.") and names[id(p)].endswith("weight") for p in groups[1e-3])
    assert all(names[id(p)].startswith("backbone.") and names[id(p)].endswith("bias") for p in groups[2e-3])
    assert [names[id(p)] for p in groups[1e-2]] == ["head.weight"] and [names[id(p)] for p in groups[2e-2]] == ["head.bias"]
    assert conf["lr_scheduler"]["scheduler"].step_size == 3
    assert issubclass(DCH, HashModule)


def test_nesterov_and_backbone_lr_multiplier_reach_the_optimiser():
    model = get_method("csq")(bits=8, num_classes=4, **TINY, freeze=False, optimizer="sgd", lr=1e-2,
                              backbone_lr_multiplier=0.01, nesterov=True)
    opt = model.configure_optimizers()["optimizer"]
    assert all(g["nesterov"] for g in opt.param_groups)
    backbone = {id(p) for p in model.backbone.parameters()}
    lrs = {g["lr"] for g in opt.param_groups if any(id(p) in backbone for p in g["params"])}
    assert lrs == {1e-4} and {g["lr"] for g in opt.param_groups} == {1e-4, 1e-2}


def test_hashnet_beta_follows_the_official_continuation():
    """network.py: iter_num = step + 1; every 200 of them scale = (1 + 0.005 iter_num)^0.5."""
    model = get_method("hashnet")(bits=8, **TINY)
    assert [model.beta(t) for t in (0, 198)] == [1.0, 1.0]
    assert model.beta(199) == pytest.approx(2 ** 0.5) and model.beta(398) == pytest.approx(2 ** 0.5)
    assert model.beta(399) == pytest.approx(3 ** 0.5) and model.beta(9999) == pytest.approx(51 ** 0.5)


def test_an_iteration_schedule_reaches_the_trainer_config():
    from hashbench.paper_settings import method_config
    trainer = method_config("hashnet")["trainer"]
    assert trainer["max_steps"] == 10000 and trainer["max_epochs"] == -1
    assert "max_steps" not in method_config("dch")["trainer"]
