"""``last.ckpt`` after every training epoch through public Lightning APIs only (issue #17): also for closed-form
methods, which take no optimiser step (``global_step`` stays 0) and which Lightning's ``ModelCheckpoint`` therefore
never saves; and after the method's own ``on_train_epoch_end`` (where a closed-form method fits)."""
import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from callbacks.checkpoints import LastCheckpoint
from lightning_modules.pcah import PCAH
from tests.test_baselines import Rows, _features, _model


class _SavesSeen(L.Callback):
    """The (epoch, global_step, fitted mean) of every checkpoint the trainer writes (public hook)."""

    def __init__(self):
        self.seen = []

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self.seen.append((checkpoint["epoch"], checkpoint["global_step"], checkpoint["state_dict"]["mean"].clone()))


def _fit_pcah(tmp_path, checkpoint, epochs=2):
    model = _model(PCAH, 8)
    model.use_cached_inputs(True)
    spy = _SavesSeen()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[checkpoint, spy],
                        default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(Rows(_features(n=60, d=64)), batch_size=20, shuffle=True))
    return model, spy.seen, trainer


def test_closed_form_method_gets_last_ckpt_every_epoch_without_an_optimiser_step(tmp_path):
    model, seen, trainer = _fit_pcah(tmp_path, LastCheckpoint(str(tmp_path / "ckpts")))
    assert [(e, s) for e, s, _ in seen] == [(0, 0), (1, 0)]  # one save per epoch, global_step never moves
    # saved after PCAH.on_train_epoch_end fitted: the checkpoint holds the fit, not the zero-initialised buffer
    assert all(mean.abs().sum() > 0 for _, _, mean in seen)
    ckpt = torch.load(tmp_path / "ckpts" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and torch.equal(ckpt["state_dict"]["mean"], model.mean)
    assert not list((tmp_path / "ckpts").glob("*.partial"))  # renamed into place
    assert isinstance(trainer.checkpoint_callback, LastCheckpoint)  # Lightning sees it as the run's checkpointing


def test_lightning_model_checkpoint_alone_would_not_save_a_closed_form_method(tmp_path):
    """Why LastCheckpoint is not a ModelCheckpoint: with no optimiser step ModelCheckpoint skips every save. If a
    Lightning release changes this, LastCheckpoint could become ModelCheckpoint options again. (It saves once when
    fit ends, which a run killed in epoch 1 never reaches.)"""
    _, seen, _ = _fit_pcah(tmp_path, ModelCheckpoint(dirpath=str(tmp_path / "mc"), every_n_epochs=1,
                                                     save_on_train_epoch_end=True, save_last=True))
    assert [epoch for epoch, _, _ in seen if epoch < 2] == []  # nothing while epochs 0 and 1 run


def test_last_checkpoint_defaults_to_the_trainers_checkpoints_folder(tmp_path):
    _fit_pcah(tmp_path, LastCheckpoint(), epochs=1)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
