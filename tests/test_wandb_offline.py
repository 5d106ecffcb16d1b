"""With WANDB_MODE=offline, a CLI run writes an offline W&B run holding the logged metrics, the grouping of the
dashboard (one group per method × dataset × protocol × bits: its seeds form one band) and top-level config keys."""
import glob
import json
import re

import pytest

from hashbench.cli import run_cli
from tests.conftest import settled
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


def test_offline_run_holds_metrics_groups_config_keys_and_plots(tmp_path, monkeypatch, wandb_offline):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "cifar"
    write_cifar(str(root), train_per_class=15, test_per_class=12)
    cli = run_cli(["fit", "--config", str(EXP / "cifar_greedy.yaml"), "--data.root", str(root),
                   "--data.download", "false", "--data.scale", "0.01", "--data.image_size", "32",
                   "--data.num_workers", "0", "--data.batch_size", "8", "--data.val_queries", "6",
                   "--model.backbone", "tiny_cnn", "--model.pretrained", "false", "--model.bits", "16",
                   "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1", "--seed_everything", "3"])
    cli.trainer.logger.experiment.finish()  # this run's own handle (another test may have left a global run)
    runs = glob.glob(str(tmp_path / "runs" / "*" / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(runs) == 1, "expected exactly one offline run directory, inside the run's directory"
    settled(runs[0])
    expected = float(cli.trainer.callback_metrics["val/mAP"])
    logged = _logged_values(runs[0], "val/mAP")
    assert logged and logged[-1] == pytest.approx(expected, abs=1e-6)
    raw = open(runs[0], "rb").read()
    # the seeds of one method × dataset × protocol × bits share a group; methods are different groups
    assert b"cifar10-greedyhash-greedy-16b" in raw and b"cifar10-greedyhash-greedy-16b-seed3" in raw
    for key, value in (("method", "GreedyHash"), ("dataset", "cifar10"), ("protocol", "greedyhash"),
                       ("bits", "16"), ("seed", "3"), ("supervised", "false")):
        assert re.search(rb'"?' + key.encode() + rb'"?[^a-z]{1,12}' + value.encode(), raw), key
    media = glob.glob(str(tmp_path / "runs" / "*" / "wandb" / "offline-run-*" / "files" / "media" / "table" / "val"
                          / "*.json"))
    names = " ".join(media)
    assert "pr_curve" in names and "bit_balance" in names and "precision_at_N" in names
