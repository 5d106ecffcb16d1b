"""With WANDB_MODE=offline, a CLI run writes an offline W&B run holding the logged metrics and plots."""
import glob
import json
import re

import pytest

from hashbench.cli import run_cli
from tests.data_fixtures import write_cifar
from tests.test_cli import EXP


def _logged_values(run_file: str, key: str) -> list[float]:
    """Values logged under ``key`` in a W&B record log: history items are protobuf messages whose key and
    JSON-encoded value appear as raw bytes (field tag 0x82 0x01, then a length byte, then the JSON)."""
    raw = open(run_file, "rb").read()
    values = []
    for match in re.finditer(re.escape(key.encode()) + rb"\x82\x01(.)", raw, flags=re.DOTALL):
        start = match.end()
        try:
            value = json.loads(raw[start:start + match.group(1)[0]])
        except ValueError:
            continue
        if isinstance(value, (int, float)):  # summaries are dicts; history items are numbers
            values.append(float(value))
    return values


def test_offline_run_holds_metrics_group_and_plots(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "cifar"
    write_cifar(str(root), train_per_class=15, test_per_class=12)
    cli = run_cli(["fit", "--config", str(EXP / "cifar_greedy.yaml"), "--data.root", str(root),
                   "--data.download", "false", "--data.scale", "0.01", "--data.image_size", "32",
                   "--data.num_workers", "0", "--data.batch_size", "8", "--model.backbone", "tiny_cnn",
                   "--model.pretrained", "false", "--model.bits", "16", "--trainer.max_epochs", "1",
                   "--trainer.check_val_every_n_epoch", "1", "--trainer.logger.init_args.save_dir", str(tmp_path)])
    import wandb
    wandb.finish()
    runs = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(runs) == 1, "expected exactly one offline run directory"
    expected = float(cli.trainer.callback_metrics["val/mAP@1000"])
    logged = _logged_values(runs[0], "val/mAP@1000")
    assert logged and logged[-1] == pytest.approx(expected, abs=1e-6)
    raw = open(runs[0], "rb").read()
    assert b"CIFAR10-16bit" in raw and b"GreedyHash" in raw  # group and tag filled in by the CLI
    media = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "files" / "media" / "table" / "val" / "*.json"))
    names = " ".join(media)
    assert "pr_curve" in names and "bit_balance" in names and "precision_at_N" in names
