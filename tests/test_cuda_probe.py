"""A CPU-only run must not retry loading the NVIDIA driver on every optimiser step (hashbench/cuda_probe.py)."""
import ctypes
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from hashbench import cuda_probe
from tests.data_fixtures import write_mnist_idx

REPO = Path(__file__).resolve().parents[1]
REAL_CDLL = ctypes.CDLL


class CountingCDLL:
    """``ctypes.CDLL`` that counts the attempts to load NVML and fails them, as on a machine without the driver."""

    def __init__(self):
        self.nvml_loads = 0

    def __call__(self, name, *args, **kwargs):
        if "nvidia-ml" in str(name):
            self.nvml_loads += 1
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return REAL_CDLL(name, *args, **kwargs)


def adam_steps(n: int) -> None:
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([w], lr=0.1)
    for _ in range(n):
        opt.zero_grad()
        (w ** 2).sum().backward()
        opt.step()


@pytest.mark.skipif(torch.cuda.is_initialized(), reason="torch caches the device count once CUDA is initialised")
def test_without_a_driver_the_variable_is_dropped_and_steps_stop_probing(monkeypatch):
    cdll = CountingCDLL()
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    monkeypatch.setenv(cuda_probe.VARIABLE, "1")  # as `import lightning` leaves it
    if torch.backends.cuda.is_built():  # the CPU-only wheel never probes: nothing to show there
        adam_steps(5)
        assert cdll.nvml_loads >= 5, "torch's optimiser no longer probes NVML per step: the workaround can go"
    cdll.nvml_loads = 0
    assert cuda_probe.skip_nvml_probe_without_driver() is True
    assert cuda_probe.VARIABLE not in os.environ
    before = cdll.nvml_loads  # the one look-up of the driver itself
    adam_steps(5)
    assert before == 1 and cdll.nvml_loads == 1


def test_a_rocm_build_keeps_the_variable(monkeypatch):
    monkeypatch.setattr(torch.version, "hip", "6.2", raising=False)
    monkeypatch.setattr(cuda_probe, "nvidia_driver_present", lambda: False)
    monkeypatch.setenv(cuda_probe.VARIABLE, "1")
    assert cuda_probe.skip_nvml_probe_without_driver() is False
    assert os.environ[cuda_probe.VARIABLE] == "1"


def test_with_a_driver_the_variable_stays(monkeypatch):
    monkeypatch.setattr(cuda_probe, "nvidia_driver_present", lambda: True)
    monkeypatch.setenv(cuda_probe.VARIABLE, "1")
    assert cuda_probe.skip_nvml_probe_without_driver() is False
    assert os.environ[cuda_probe.VARIABLE] == "1"


@pytest.mark.parametrize("value", [None, "0"])
def test_a_variable_lightning_did_not_set_is_left_alone(monkeypatch, value):
    monkeypatch.setattr(cuda_probe, "nvidia_driver_present", lambda: False)
    if value is None:
        monkeypatch.delenv(cuda_probe.VARIABLE, raising=False)
    else:
        monkeypatch.setenv(cuda_probe.VARIABLE, value)
    assert cuda_probe.skip_nvml_probe_without_driver() is False
    assert os.environ.get(cuda_probe.VARIABLE) == value


class RecordProbeSetting(L.Callback):
    """Writes the variable as training sees it to ``$PROBE_RECORD``."""

    def on_train_start(self, trainer, pl_module):
        Path(os.environ["PROBE_RECORD"]).write_text(repr(os.environ.get(cuda_probe.VARIABLE)))


def test_the_console_drops_it_before_training_on_a_machine_without_a_driver(tmp_path):
    """The way a user runs it: `hashbench fit --config …` in its own process (Lightning imported, CLI started)."""
    if cuda_probe.nvidia_driver_present():
        pytest.skip("this machine has an NVIDIA driver: the variable stays, as it should")
    root = tmp_path / "mnist"
    write_mnist_idx(str(root), train_per_class=4, test_per_class=1)
    record = tmp_path / "probe.txt"
    out = subprocess.run(
        [sys.executable, "-m", "hashbench", "fit", "--config", "experiments/mnist_ae_bihalf.yaml",
         "--data.root", str(root), "--data.source", "root", "--data.val_queries", "5", "--data.batch_size", "8",
         "--trainer.max_epochs", "1", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.default_root_dir", str(tmp_path / "runs"),
         "--trainer.callbacks+=tests.test_cuda_probe.RecordProbeSetting"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "PROBE_RECORD": str(record), "WANDB_MODE": "disabled"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert record.read_text() == "None"
