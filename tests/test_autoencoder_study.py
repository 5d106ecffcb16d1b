"""The Bi-half autoencoder study end to end on miniatures: the data (official binarisation, whole batches from memory),
one training step against the official scripts' code, and the shipped configs through the console command."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from datamodules import BinarizedMNIST
from lightning_modules.autoencoder import BiHalfAutoencoder, SignAutoencoder, SignRegAutoencoder
from tests.data_fixtures import write_mnist_idx

REPO = Path(__file__).resolve().parents[1]
LIGHTNING = Path(sys.executable).parent / "lightning"


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    arrays = write_mnist_idx(str(root), train_per_class=30, test_per_class=5)  # 300 train, 50 test
    return root, arrays


def _official_binarize(u8: np.ndarray) -> torch.Tensor:
    """AutoEncoder/BiHalf.py's img_transform, one image at a time: ToTensor, min-max to [0, 1], round."""
    t = torch.from_numpy(u8).float().div(255)
    t = t - t.min()
    t = t / t.max()
    return torch.round(t * (1 - 0) + 0).flatten()


def test_binarized_mnist_is_the_official_transform_served_as_whole_batches(tiny_mnist, monkeypatch):
    root, arrays = tiny_mnist
    dm = BinarizedMNIST(root=str(root), source="root", batch_size=64, eval_batch_size=32, write_splits=False)
    dm.setup("fit")
    assert dm.split_sizes == {"train": 300, "query": 50, "database": 300} and dm.top_k is None
    train = dm.dataset("train")
    for i in (0, 7, 299):
        pool_row = int(train.pool_indices[i])
        torch.testing.assert_close(train[i][0], _official_binarize(arrays["images"][pool_row]), rtol=0, atol=0)
    # a step's batch is one tensor index: the per-item path is never taken
    monkeypatch.setattr(type(train), "__getitem__", lambda self, i: pytest.fail("per-item fetch"))
    x, y, idx = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 784) and x.dtype == torch.float32 and set(x.unique().tolist()) <= {0.0, 1.0}
    assert y.shape == (64, 10) and torch.equal(x, train.vectors[idx].float())
    q = list(dm.query_dataloader())
    assert [len(b[0]) for b in q] == [32, 18] and torch.equal(torch.cat([b[2] for b in q]), torch.arange(50))


def test_image_methods_are_refused_on_the_binary_vectors_naming_the_data_class(tiny_mnist):
    dm = BinarizedMNIST(root=str(tiny_mnist[0]), source="root", write_splits=False)
    with pytest.raises(ValueError, match="use data class MNIST"):
        dm.request_train_input(2, "cibhash")


# ------------------------------------------------------------------------------------------ the official step
class _OfficialHash(torch.autograd.Function):
    """AutoEncoder/Sign.py ``class hash`` (γ passed in instead of the module global)."""

    @staticmethod
    def forward(ctx, input, gamma):
        B_code = torch.sign(input)
        ctx.save_for_backward(input, B_code)
        ctx.gamma = gamma
        return B_code

    @staticmethod
    def backward(ctx, grad_output):
        input, B_code = ctx.saved_tensors
        size = input.size()
        return grad_output + ctx.gamma * (input - B_code) / (size[0] * size[1]), None


class _OfficialBiHalf(torch.autograd.Function):
    """AutoEncoder/BiHalf.py ``class hash``."""

    @staticmethod
    def forward(ctx, U, gamma):
        _, index = U.sort(0, descending=True)
        N, D = U.shape
        B_creat = torch.cat((torch.ones([int(N / 2), D]), -torch.ones([N - int(N / 2), D])))
        B = torch.zeros(U.shape).scatter_(0, index, B_creat)
        ctx.save_for_backward(U, B)
        ctx.gamma = gamma
        return B

    @staticmethod
    def backward(ctx, g):
        U, B = ctx.saved_tensors
        return g + ctx.gamma * (U - B) / (B.numel()), None


def _official_step(model, img, layer, gamma, alpha):
    """One iteration of the official training loop on a copy of our weights (Adam 1e-3, wd 1e-5, BCELoss)."""
    enc = nn.Sequential(nn.Linear(784, 256), nn.ReLU(True), nn.Linear(256, model.bits))
    dec = nn.Sequential(nn.Linear(model.bits, 256), nn.ReLU(True), nn.Linear(256, 784), nn.Sigmoid())
    for (a, b) in ((enc[0], model.backbone.prefix[1]), (enc[2], model.head), (dec[0], model.decoder[0]),
                   (dec[2], model.decoder[2])):
        a.load_state_dict(b.state_dict())
    params = [*enc.parameters(), *dec.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-5)
    h = enc(img)
    b = (_OfficialBiHalf if layer == "bihalf" else _OfficialHash).apply(h, gamma)
    loss = nn.BCELoss()(dec(b), img)
    if alpha:
        onesvec = torch.ones(h.size(0), 1)
        loss = loss + alpha * torch.mean(torch.pow(torch.transpose(b, 1, 0).mm(onesvec) / h.size(0), 2)) / 2
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return [enc[0].weight, enc[0].bias, enc[2].weight, enc[2].bias, dec[0].weight, dec[0].bias, dec[2].weight,
            dec[2].bias]


@pytest.mark.parametrize("cls,layer,gamma,alpha", [(SignAutoencoder, "sign", 0.2, 0.0),
                                                   (SignRegAutoencoder, "sign", 0.2, 1.0),
                                                   (BiHalfAutoencoder, "bihalf", 1.0, 0.0)])
def test_one_training_step_equals_the_official_scripts_step(cls, layer, gamma, alpha):
    torch.manual_seed(3)
    model = cls(bits=8)
    assert (model.hparams.gamma, model.hparams.get("alpha", 0.0)) == (gamma, alpha)
    img = (torch.rand(16, 784) > 0.7).float()
    expected = _official_step(model, img, layer, gamma, alpha)
    opt = model.configure_optimizers()["optimizer"]
    loss = model.training_step((img, torch.zeros(16, 10), torch.arange(16)), 0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    ours = [model.backbone.prefix[1].weight, model.backbone.prefix[1].bias, model.head.weight, model.head.bias,
            model.decoder[0].weight, model.decoder[0].bias, model.decoder[2].weight, model.decoder[2].bias]
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_decoder_init_is_the_official_seed_1_and_leaves_the_global_random_state_alone():
    torch.manual_seed(5)
    model = BiHalfAutoencoder(bits=16)
    after = torch.rand(1)
    torch.manual_seed(5)
    nn.Linear(784, 256), nn.Linear(256, 16)  # the encoder consumes the global stream, as in the official code
    assert torch.equal(torch.rand(1), after)
    torch.manual_seed(1)  # the official autoencoder.__init__
    official = nn.Sequential(nn.Linear(16, 256), nn.ReLU(True), nn.Linear(256, 784), nn.Sigmoid())
    assert torch.equal(model.decoder[0].weight, official[0].weight)
    assert torch.equal(model.decoder[2].bias, official[2].bias)


def test_official_lr_schedule_drops_at_epochs_60_and_80():
    model = SignAutoencoder(bits=8)
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(90):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[59] == pytest.approx(1e-3) and lrs[60] == pytest.approx(1e-4) and lrs[80] == pytest.approx(1e-5)


# ------------------------------------------------------------------------------------------ the console
@pytest.mark.skipif(not LIGHTNING.exists(), reason="console script `lightning` not installed (pip install -e .)")
@pytest.mark.parametrize("config", ["mnist_ae_sign.yaml", "mnist_ae_signreg.yaml", "mnist_ae_bihalf.yaml"])
def test_shipped_config_trains_through_the_console_and_tests_with_both_map_columns(config, tiny_mnist, tmp_path):
    root = str(tiny_mnist[0])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    args = ["--config", str(REPO / "experiments" / config), "--data.root", root, "--data.source", "root",
            "--data.val_queries", "20", "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1",
            "--trainer.enable_progress_bar", "false"]
    fit = subprocess.run([str(LIGHTNING), "fit", *args], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpts = list(tmp_path.glob("runs/*/checkpoints/last.ckpt"))
    assert len(ckpts) == 1
    if config != "mnist_ae_bihalf.yaml":
        return
    test = subprocess.run([str(LIGHTNING), "test", *args, "--ckpt_path", "last"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert test.returncode == 0, test.stderr[-3000:]
    assert "50 queries x 300 database items" in test.stdout
    assert "mAP@all " in test.stdout and "mAP@all_tie_avg " in test.stdout



def test_progress_bar_of_a_plain_fit_is_redrawn_by_time_not_after_every_few_ms_step(tiny_mnist, tmp_path, monkeypatch):
    """Lightning's bar recomputes its metrics and redraws after every batch: on the study's ~3 ms steps that alone made
    ``lightning fit`` ×1.31 of a plain loop (benchmarks/bench_ae_overhead.py). The suite's default bar redraws at most
    every half second. In process through ``run_cli`` (what the console runs) to count the bar's updates: Rich, the bar
    Lightning picks when installed, prints nothing per update to a pipe."""
    from lightning.pytorch.callbacks import ProgressBar
    from hashbench.lightning_cli import run_cli
    updates = []
    get_metrics = ProgressBar.get_metrics
    monkeypatch.setattr(ProgressBar, "get_metrics", lambda self, trainer, model: updates.append(trainer.global_step)
                        or get_metrics(self, trainer, model))
    monkeypatch.chdir(tmp_path)
    # a clock that advances 0.1 s per reading: the bar's decisions no longer depend on how loaded the machine is
    import types
    from hashbench import progress_bar
    ticks = iter(range(10**9))
    monkeypatch.setattr(progress_bar, "time", types.SimpleNamespace(monotonic=lambda: next(ticks) * 0.1))
    steps = 300 // 4  # 300 train images, batch 4: 75 steps of a few ms
    cli = run_cli(["fit", "--config", str(REPO / "experiments" / "mnist_ae_bihalf.yaml"), "--data.root",
                   str(tiny_mnist[0]), "--data.source", "root", "--data.val_queries", "20", "--data.batch_size", "4",
                   "--trainer.max_epochs", "1", "--trainer.logger", "false"])
    assert cli.trainer.global_step == steps and cli.trainer.progress_bar_callback is not None
    assert 1 <= len(updates) <= steps // 3, f"the bar was updated {len(updates)} times in {steps} steps"
    assert updates[-1] == steps  # the epoch's last batch is always shown


# ------------------------------------------------------------------------------------------ DDP
@pytest.mark.skipif(not LIGHTNING.exists(), reason="console script `lightning` not installed (pip install -e .)")
@pytest.mark.parametrize("config", ["mnist_ae_signreg.yaml", "mnist_ae_bihalf.yaml"])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_ddp_step_on_2_x_b_over_2_equals_a_step_on_b(config, tiny_mnist, tmp_path):
    """2 CPU processes (gloo, Lightning's launcher) × 4 images = one process × 8 images: the data module's batches of
    both ranks together are the one-process batch, and the hash layer and the balance term see the global batch
    (gathered with gradients), so bi-half's half/half split per bit is over the same 8 images. sign_pull is
    per element: ae_sign is ae_signreg without the balance term, covered here. SGD, because Adam's first step
    is ±lr for any gradient of ~0, so float reordering would hide what is compared."""
    from hashbench.checkpoint_io import read_checkpoint
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    states = {}
    for devices, batch in ((1, 8), (2, 4)):
        cwd = tmp_path / f"devices{devices}"
        cwd.mkdir()
        fit = subprocess.run(
            [str(LIGHTNING), "fit", "--config", str(REPO / "experiments" / config), "--data.root", str(tiny_mnist[0]),
             "--data.source", "root", "--data.val_queries", "20", "--data.batch_size", str(batch),
             "--model.optimizer", "sgd", "--model.lr", "0.5", "--trainer.max_epochs", "1",
             "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "0", "--trainer.logger", "false",
             "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu", "--trainer.devices",
             str(devices), "--trainer.strategy", "ddp" if devices > 1 else "auto"],
            capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
        assert fit.returncode == 0, fit.stderr[-3000:]
        [ckpt] = cwd.glob("runs/*/checkpoints/last.ckpt")
        states[devices] = read_checkpoint(ckpt)["state_dict"]
    initial = initial_state(config)
    for k in states[1]:  # one step from the same start: every tensor moved, by a step's size
        step = (states[1][k] - initial[k]).abs().max().item()
        assert 0 < step < 0.05, f"{k}: moved by {step}"
    for k in states[1]:
        torch.testing.assert_close(states[2][k], states[1][k], rtol=1e-5, atol=1e-6, msg=k)


def initial_state(config: str) -> dict:
    """The weights the config's run starts from (seed_everything 0, the method's defaults)."""
    cls = {"mnist_ae_signreg.yaml": SignRegAutoencoder, "mnist_ae_bihalf.yaml": BiHalfAutoencoder}[config]
    torch.manual_seed(0)
    return cls(bits=16).state_dict()
