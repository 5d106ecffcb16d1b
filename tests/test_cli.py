"""The `hashbench` / `lightning` / `python -m hashbench` CLI on a miniature CIFAR-10 in the real format."""
import subprocess
import sys
from pathlib import Path

import pytest

from hashbench.cli import COMMANDS, main, run_cli, top_level_help
from tests.data_fixtures import write_cifar

REPO = Path(__file__).resolve().parent.parent
EXP = REPO / "experiments"
FAST = ["--data.download", "false", "--data.scale", "0.01", "--data.image_size", "32", "--data.num_workers", "0",
        "--data.batch_size", "8", "--model.backbone", "tiny_cnn", "--model.pretrained", "false",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "logs",
        "--trainer.accelerator", "cpu"]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(str(root), train_per_class=15, test_per_class=12)
    return str(root)


def test_top_level_help_lists_every_command_with_an_example():
    out = subprocess.run([sys.executable, "-m", "hashbench", "--help"], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == top_level_help()
    for command in ("fit", "validate", "test", "predict", "compare", "encode", "evaluate", "search"):
        assert f"\n  {command} " in out.stdout and command in COMMANDS
    assert out.stdout.count("e.g. hashbench ") == len(COMMANDS)
    assert "__main__.py" not in out.stdout and "Lightning Trainer command line tool" not in out.stdout


def test_console_scripts_run_the_lightning_cli():
    bin_dir = Path(sys.executable).parent
    for script in ("hashbench", "lightning"):
        path = bin_dir / script
        if not path.exists():
            pytest.skip("package not installed with `pip install -e .` (console scripts missing)")
        out = subprocess.run([str(path), "fit", "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "--model" in out.stdout and "--data" in out.stdout and "--run_name" in out.stdout


def test_method_and_data_configs_compose_and_the_hand_over_reaches_the_datamodule(cifar_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli(["fit", "--config", str(EXP / "methods" / "cib.yaml"), "--config", str(EXP / "data" / "cifar.yaml"),
                   "--data.root", cifar_root, *FAST, "--model.bits", "32", "--trainer.fast_dev_run", "1"])
    assert type(cli.model).__name__ == "CIBHash" and cli.model.bits == 32
    # the datamodule knows nothing of CIBHash, yet serves its two views with its paper augmentation
    assert cli.datamodule.views == 2 and cli.datamodule.train_transform == "cibhash"


def test_any_registered_method_by_class_name_on_the_command_line(cifar_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli(["fit", "--config", str(EXP / "data" / "cifar.yaml"), "--model", "ITQ", "--data.root", cifar_root,
                   *FAST, "--model.bits", "8", "--trainer.max_epochs", "1"])
    assert type(cli.model).__name__ == "ITQ" and cli.model.rotation.abs().sum() > 0


def test_print_config_resolves_short_class_names(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", str(EXP / "cifar_bihalf.yaml"), "--print_config"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "class_path: lightning_modules.BiHalfNet" in out and "class_path: datamodules.CIFAR10" in out


def test_missing_dataset_is_one_clear_error_not_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(EXP / "cifar_cib.yaml"), "--data.root", str(tmp_path / "nothing"),
              "--data.download", "false", "--model.pretrained", "false", "--trainer.logger", "false",
              "--trainer.callbacks", "[]"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "CIFAR-10 python batches not found" in err and "cifar-10-batches-py" in err
    assert "Traceback" not in err
