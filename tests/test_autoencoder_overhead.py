"""What the suite trims from the autoencoder study's few-millisecond steps (loss terms kept on the side and logged as
epoch means, step values only every log_every_n_steps) must not change what is learned: ``lightning fit`` of the shipped config takes exactly the steps
of a plain PyTorch loop over the same batches from the same initial weights — same loss at every step, same weights
at the end — and logs the epoch means of those losses."""
import copy
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from hashcore.losses import bit_balance_penalty
from tests.data_fixtures import write_mnist_idx

REPO = Path(__file__).resolve().parents[1]


class Recorder(L.Callback):
    """The initial weights, every training batch and every step's loss, as the fit loop saw them."""

    def on_train_start(self, trainer, pl_module):
        self.initial = copy.deepcopy(pl_module.state_dict())
        self.batches, self.losses = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append(batch[0].clone())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach().clone())


@pytest.mark.parametrize("config", ["mnist_ae_bihalf.yaml", "mnist_ae_signreg.yaml"])
def test_fit_takes_exactly_the_steps_of_a_plain_loop(config, tmp_path, monkeypatch):
    from hashbench.lightning_cli import run_cli
    root = tmp_path / "mnist"
    write_mnist_idx(str(root), train_per_class=8, test_per_class=2)  # 80 train images: 5 steps of 16
    monkeypatch.chdir(tmp_path)
    cli = run_cli(["fit", "--config", str(REPO / "experiments" / config), "--data.root", str(root),
                   "--data.source", "root", "--data.val_queries", "10", "--data.batch_size", "16",
                   "--trainer.max_epochs", "2", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                   "--trainer.check_val_every_n_epoch", "10", "--trainer.log_every_n_steps", "3",
                   "--trainer.callbacks+=tests.test_autoencoder_overhead.Recorder"])
    fitted = cli.model
    rec = next(c for c in cli.trainer.callbacks if type(c).__name__ == "Recorder")  # (imported twice by name)
    assert len(rec.losses) == 10 and cli.trainer.global_step == 10

    options = {k: v for k, v in fitted.hparams.items() if not k.startswith("_")}  # (the CLI adds _class_path)
    plain = type(fitted)(**options)  # the same model class and options, given the fit's initial weights
    plain.load_state_dict(rec.initial)
    conf = plain.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    alpha = plain.hparams.get("alpha", 0.0)
    for step, x in enumerate(rec.batches):
        b = plain.hash_layer(plain.head(plain.backbone(x)))
        loss = F.binary_cross_entropy(plain.decoder(b), x)
        if alpha:
            loss = loss + alpha * bit_balance_penalty(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.equal(loss.detach(), rec.losses[step]), f"step {step}: {loss.item()} vs {rec.losses[step].item()}"
        if step % 5 == 4:
            sched.step()  # the study's lr schedule is per epoch
    for name, value in plain.state_dict().items():
        assert torch.equal(value, fitted.state_dict()[name]), name

    logged = cli.trainer.logged_metrics
    last_epoch = torch.stack(rec.losses[5:]).mean()
    assert torch.allclose(logged["train/loss"], last_epoch, rtol=1e-6)
    assert "train/loss_step" in logged  # the step values every log_every_n_steps (step 9 here) still reach the loggers
