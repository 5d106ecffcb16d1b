"""ADSH's outer iterations on a toy: the query sample is drawn per iteration, only sampled rows are trained, V is
updated in closed form after each iteration's last batch, and V / the sample / U / Y are saved in checkpoints so that
a run resumed in the middle of an iteration equals the uninterrupted one."""
import torch

from hashcore.asymmetric import adsh_similarity, adsh_update_codes
from tests.test_method_state import OrderedToyData, _fit as fit_method

ADSH_KW = dict(num_samples=20, iteration_epochs=2, gamma=20.0)


def _fit(data, epochs, tmp, ckpt_path=None, **kw):
    return fit_method("adsh", data, epochs, tmp, ckpt_path, bits=8, **{**ADSH_KW, **kw})


def test_resumed_mid_iteration_equals_the_uninterrupted_run(tmp_path):
    data = OrderedToyData(n_train=48, num_classes=4)
    whole, _ = _fit(data, 4, tmp_path / "whole")           # iterations 0 and 1, two epochs each
    _, stopped = _fit(data, 3, tmp_path / "stopped")      # stopped after the first epoch of iteration 1
    saved = torch.load(stopped, weights_only=False)["state_dict"]
    assert all(k in saved for k in ("V", "U", "Y", "sample"))
    resumed, _ = _fit(data, 4, tmp_path / "resumed", ckpt_path=str(stopped), sample_seed=5)  # the checkpoint wins
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert set(whole.V.unique().tolist()) <= {-1.0, 0.0, 1.0} and whole.V.abs().sum() > 0
    assert whole.sample.numel() == 20 and torch.equal(whole.Y, data.train_set.labels)


def test_v_is_the_closed_form_update_of_the_last_iteration(tmp_path):
    data = OrderedToyData(n_train=48, num_classes=4)
    before, _ = _fit(data, 3, tmp_path / "three")   # V after iteration 0, U of iteration 1's first epoch
    after, _ = _fit(data, 4, tmp_path / "four")      # iteration 1 complete: V updated from its sample
    s = adsh_similarity(after.Y[after.sample], after.Y)
    expected = adsh_update_codes(before.V, after.U[after.sample], s, after.sample, gamma=ADSH_KW["gamma"])
    assert torch.equal(after.V, expected)
    # rows outside the sample never got an output this iteration
    outside = torch.ones(48, dtype=torch.bool)
    outside[after.sample] = False
    assert (after.U[outside] == 0).all() and (after.U[after.sample].abs().sum(1) > 0).all()


def test_each_iteration_draws_its_own_sample_of_the_requested_size(tmp_path):
    data = OrderedToyData(n_train=48, num_classes=4)
    first, _ = _fit(data, 2, tmp_path / "a")
    second, _ = _fit(data, 4, tmp_path / "b")
    assert first.sample.numel() == second.sample.numel() == 20
    assert len(set(first.sample.tolist())) == 20
    assert not torch.equal(first.sample, second.sample)


def test_lightning_fit_on_two_processes_with_batches_outside_the_sample(tmp_path):
    """As a user types it under DDP: with 6 sampled queries most global batches hold none, every rank skips those
    together (no hang, no error), and the V update runs at the end of each 1-epoch iteration."""
    from tests.console_fixtures import EXP, TINY, TWO_CPU, console
    from tests.data_fixtures import write_cifar

    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)
    fit = console("lightning", "fit", "--config", str(EXP / "methods" / "adsh.yaml"), "--config",
                  str(EXP / "data" / "cifar.yaml"), "--data.root", str(tmp_path / "cifar"), *TINY, "--model.bits", "8",
                  "--model.num_samples", "6", "--model.iteration_epochs", "1", "--trainer.limit_train_batches", "null",
                  "--trainer.max_epochs", "2", *TWO_CPU, "--trainer.strategy", "ddp", "--run_name", "a",
                  cwd=tmp_path, timeout=400)
    assert fit.returncode == 0, fit.tail()
    assert "Traceback" not in fit.stderr, fit.tail()
    state = torch.load(tmp_path / "runs" / "a" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state["sample"].numel() == 6 and state["V"].abs().sum() > 0
