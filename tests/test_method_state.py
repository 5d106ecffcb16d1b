"""Methods with training state beyond their weights (DPSH's and DTSH's U/B/Y of the whole train set, DTSH's triplet
draws, CSQ's hash centres) save it
in checkpoints and restore it: a run stopped after epoch 1 and resumed equals the uninterrupted run, weights and
state alike, and ``load_from_checkpoint`` gives the state back."""
import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from hashbench.cli import connect
from lightning_modules import get_method
from tests.toy import ToyData

TINY = dict(backbone="tiny_cnn", pretrained=False, freeze=False, optimizer="sgd", lr=0.05)


class OrderedToyData(ToyData):
    """No shuffling: the resumed run sees the batches of the uninterrupted one."""

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=False, drop_last=True)


def _fit(name, data, epochs, tmp, ckpt_path=None, bits=16, **kw):
    """Train the registered method ``name`` on a tiny backbone, a checkpoint per epoch; (model, last.ckpt)."""
    L.seed_everything(0, verbose=False)
    model = get_method(name)(bits=bits, **TINY, **kw)
    connect(model, data)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, default_root_dir=str(tmp),
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=str(tmp), save_last=True)])
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return model, tmp / "last.ckpt"


@pytest.mark.parametrize("name,kw,classes,state", [("dpsh", {}, 4, ("U", "B", "Y")),
                                                    ("dtsh", {"positives": 3, "negatives": 2}, 4, ("U", "B", "Y")),
                                                    ("csq", {"center_seed": 3}, 40, ("centers", "random_center"))])
def test_resumed_run_equals_the_uninterrupted_one_with_its_state(name, kw, classes, state, tmp_path):
    data = OrderedToyData(n_train=48, num_classes=classes)
    whole, _ = _fit(name, data, 2, tmp_path / "whole", **kw)
    _, first = _fit(name, data, 1, tmp_path / "first", **kw)
    saved = torch.load(first, weights_only=False)["state_dict"]
    assert all(k in saved for k in state), f"{name} does not save {state} in its checkpoint"
    # the resumed model is built with other state (another seed / an empty U): the checkpoint must win
    other = {**kw, "center_seed": 99} if name == "csq" else kw
    resumed, _ = _fit(name, data, 2, tmp_path / "resumed", ckpt_path=str(first), **other)
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=k)
    if name in ("dpsh", "dtsh"):  # every training image has its row, written by index
        assert whole.U.shape == (48, 16) and (whole.U.abs().sum(1) > 0).all()
        assert torch.equal(whole.B, torch.sign(whole.U)) and torch.equal(whole.Y, data.train_set.labels)
    else:  # 40 classes > 2·16: 32 Hadamard rows and 8 seeded Bernoulli rows, another seed gives others
        assert not torch.equal(whole.centers, get_method("csq")(bits=16, num_classes=40, center_seed=99,
                                                                **TINY).centers)


@pytest.mark.parametrize("name,classes", [("dpsh", 4), ("dtsh", 4), ("csq", 40)])
def test_load_from_checkpoint_restores_the_state(name, classes, tmp_path):
    data = OrderedToyData(n_train=48, num_classes=classes)
    model, last = _fit(name, data, 1, tmp_path)
    loaded = get_method(name).load_from_checkpoint(last)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


@pytest.mark.parametrize("name,kw", [("orthohash", {}), ("dpn", {}), ("dpn", {"variant": "deephash"})])
def test_class_codes_are_saved_and_win_over_a_rebuilt_models_codes(name, kw, tmp_path):
    """OrthoHash's codebook and DPN's centres (and the port's tie-breaking code) are seeded buffers: a run resumed by
    a model built with another codebook_seed must continue with the checkpoint's codes."""
    data = OrderedToyData(n_train=48, num_classes=4)
    whole, _ = _fit(name, data, 2, tmp_path / "whole", codebook_seed=1, **kw)
    _, first = _fit(name, data, 1, tmp_path / "first", codebook_seed=1, **kw)
    assert "class_codes" in torch.load(first, weights_only=False)["state_dict"]
    resumed, _ = _fit(name, data, 2, tmp_path / "resumed", ckpt_path=str(first), codebook_seed=2, **kw)
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=k)
    other = get_method(name)(bits=16, num_classes=4, codebook_seed=2, **TINY, **kw)
    assert not torch.equal(whole.class_codes, other.class_codes)  # the check above could fail
    loaded = get_method(name).load_from_checkpoint(first)
    assert torch.equal(loaded.class_codes, torch.load(first, weights_only=False)["state_dict"]["class_codes"])
