"""The `hashbench` / `lightning` / `python -m hashbench` LightningCLI, on a miniature CIFAR-10 in the real format."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hashbench.cli import main, run_cli
from tests.data_fixtures import write_cifar

REPO = Path(__file__).resolve().parent.parent
EXP = REPO / "experiments"
FAST = ["--data.download", "false", "--data.scale", "0.01", "--data.image_size", "32", "--data.num_workers", "0",
        "--data.batch_size", "8", "--model.backbone", "tiny_cnn", "--model.pretrained", "false",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "csv_logs",
        "--trainer.accelerator", "cpu"]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(str(root), train_per_class=15, test_per_class=12)
    return str(root)


def test_module_and_console_scripts_show_the_lightning_cli():
    out = subprocess.run([sys.executable, "-m", "hashbench", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "{fit,validate,test,predict}" in out.stdout
    bin_dir = Path(sys.executable).parent
    for script in ("hashbench", "lightning"):
        path = bin_dir / script
        if not path.exists():
            pytest.skip("package not installed with `pip install -e .` (console scripts missing)")
        out = subprocess.run([str(path), "fit", "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "--model" in out.stdout and "--data" in out.stdout


@pytest.mark.parametrize("method", ["cib", "bihalf", "dch", "greedy"])
def test_paper_config_fits_through_the_cli(method, cifar_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli(["fit", "--config", str(EXP / f"cifar_{method}.yaml"), "--data.root", cifar_root, *FAST,
                   "--trainer.fast_dev_run", "2", "--trainer.default_root_dir", str(tmp_path)])
    metrics = cli.trainer.callback_metrics
    key = f"val/mAP@{'all' if cli.datamodule.top_k is None else cli.datamodule.top_k}"  # the protocol's cut-off
    assert "train/loss" in metrics and key in metrics
    assert 0.0 <= float(metrics[key]) <= 1.0


def test_method_and_data_configs_compose_and_bits_override(cifar_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli(["fit", "--config", str(EXP / "methods" / "cib.yaml"), "--config", str(EXP / "data" / "cifar.yaml"),
                   "--data.root", cifar_root, *FAST, "--model.bits", "32", "--trainer.fast_dev_run", "1",
                   "--trainer.default_root_dir", str(tmp_path)])
    assert type(cli.model).__name__ == "CIBHash" and cli.model.bits == 32
    # the datamodule knows nothing of CIBHash, yet serves its two views with its paper augmentation
    assert cli.datamodule.views == 2 and cli.datamodule.train_transform == "cibhash"


def test_print_config_resolves_short_class_names(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", str(EXP / "cifar_bihalf.yaml"), "--print_config"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "class_path: lightning_modules.BiHalfNet" in out and "class_path: datamodules.CIFAR10" in out


def test_missing_dataset_is_one_clear_error_not_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(EXP / "cifar_cib.yaml"), "--data.root", str(tmp_path / "nothing"),
              "--data.download", "false", "--model.pretrained", "false", "--trainer.logger", "false",
              "--trainer.callbacks", "[]"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "CIFAR-10 python batches not found" in err and "cifar-10-batches-py" in err
    assert "Traceback" not in err


def test_unknown_method_or_bad_bits_in_compare_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--config", str(EXP / "data" / "mnist.yaml"), "--methods", "cib,foo"])
    assert exit_info.value.code == 2 and "unknown method" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--config", str(EXP / "data" / "mnist.yaml"), "--bits", "0"])
    assert "between 1 and 4096" in capsys.readouterr().err
