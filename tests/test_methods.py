"""Each method: a real optimisation step on CPU (fast_dev_run), encode() shape/dtype/values, and its contract."""
import lightning as L
import pytest
import torch

from lightning_modules import DCH, BiHalfNet, CIBHash, GreedyHash
from lightning_modules.backbones import build_backbone
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


class TwoViewToyData(ToyData):
    """The toy data with two noisy views per image, as a datamodule does for a model with train_views=2."""

    def train_dataloader(self):
        return torch.utils.data.DataLoader(TwoViews(self.train_set), batch_size=self.batch_size, shuffle=True,
                                           drop_last=True)


def _fit(model, data):
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer = L.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(model, data)
    params = dict(model.named_parameters())
    changed = [n for n in before if not torch.equal(before[n], params[n])]
    return trainer, changed


@pytest.mark.parametrize("make,data_cls", [
    (lambda: CIBHash(bits=16, **TINY, freeze=False), TwoViewToyData),
    (lambda: BiHalfNet(bits=16, **TINY, freeze=False, lr=1e-2), ToyData),
    (lambda: GreedyHash(bits=16, **TINY, freeze=False, lr=1e-2), ToyData),
    (lambda: GreedyHash(bits=16, supervised=True, **TINY, freeze=False, lr=1e-2), ToyData),
    (lambda: DCH(bits=16, **TINY, lr=1e-3), ToyData),
    (lambda: DCH(bits=16, variant="thulab", **TINY, lr=1e-3), ToyData),
])
def test_method_trains_and_encodes(make, data_cls):
    model = make()
    trainer, changed = _fit(model, data_cls(top_k=None))
    assert changed, "no trainable parameter moved after two optimisation steps"
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    model.eval()
    codes = model.encode(torch.randn(5, 3, 8, 8))
    assert codes.shape == (5, 16) and codes.dtype == torch.float32
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}


def test_every_loss_term_is_logged():
    trainer, _ = _fit(GreedyHash(bits=8, **TINY, freeze=False), ToyData())
    assert {"train/loss", "train/similarity", "train/penalty"} <= set(trainer.callback_metrics)


def test_encode_is_sign_of_scores_with_zero_to_plus_one():
    model = BiHalfNet(bits=4, **TINY).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 0.0]))
    assert model.encode(torch.randn(2, 3, 8, 8)).tolist() == [[1, 1, -1, 1]] * 2


def test_frozen_backbone_keeps_dropout_live_in_train_mode_but_not_batchnorm():
    from lightning_modules.backbones import build_backbone
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
    assert not build_backbone("vgg16", pretrained=False, freeze=True, freeze_mode="eval").suffix[0].training
    assert build_backbone("vgg16", pretrained=False, freeze=True).suffix[0].training  # official: dropout live


def test_wrong_number_of_views_is_one_clear_error():
    with pytest.raises(ValueError, match="2 augmented view"):
        _fit(CIBHash(bits=8, **TINY), ToyData())


def test_bad_bits_is_rejected():
    with pytest.raises(ValueError, match="model.bits"):
        BiHalfNet(bits=0, **TINY)


def test_only_trainable_parameters_are_optimised_and_head_multiplier_applies():
    model = DCH(bits=8, backbone="tiny_cnn", pretrained=False, freeze=True, head_lr_multiplier=10.0, lr=1e-3)
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    assert [g["lr"] for g in opt.param_groups] == [1e-2]  # frozen backbone: only the head group
    model = DCH(bits=8, backbone="tiny_cnn", pretrained=False, freeze=False, head_lr_multiplier=10.0, lr=1e-3,
                lr_step=3)
    conf = model.configure_optimizers()
    assert [g["lr"] for g in conf["optimizer"].param_groups] == [1e-3, 1e-2]
    assert conf["lr_scheduler"]["scheduler"].step_size == 3
