"""Every shipped config can finish: each `experiments/<data>_<method>.yaml` fits 2 epochs with validation on a
miniature of its dataset written in the real format (tiny backbone, CPU), writes last.ckpt into its run directory,
and logs the headline key its checkpoint selection monitors. A config that cannot finish can never ship."""
import yaml
import pytest

from hashbench import paper_settings
from hashbench.cli import run_cli
from tests.data_fixtures import write_cifar, write_list_dataset, write_mirflickr, write_mnist_idx
from tests.test_cli import EXP

CONFIGS = sorted(p.name for p in EXP.glob("*_*.yaml") if not p.name.startswith("demo"))
COMMON = ["--model.backbone", "tiny_cnn", "--model.pretrained", "false", "--model.bits", "8",
          "--data.image_size", "32", "--data.num_workers", "0", "--data.batch_size", "4", "--data.eval_batch_size", "16",
          "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1", "--trainer.accelerator", "cpu",
          "--trainer.enable_progress_bar", "false"]
LIST_CLASSES = {"nuswide": 21, "coco": 80}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    write_cifar(str(base / "cifar"), train_per_class=15, test_per_class=12)
    write_mnist_idx(str(base / "mnist"), train_per_class=12, test_per_class=4)
    write_mirflickr(str(base / "flickr"), n_images=60)
    for name, classes in LIST_CLASSES.items():
        write_list_dataset(str(base / name), classes, n_query=6, n_train=12, n_database=24)
    return base


def _data_args(dataset: str, roots) -> list[str]:
    root = ["--data.root", str(roots / dataset)]
    if dataset == "cifar":
        return root + ["--data.download", "false", "--data.scale", "0.01", "--data.verify_checksums", "false"]
    if dataset == "mnist":
        return root + ["--data.scale", "0.01"]
    if dataset == "flickr":
        return root + ["--data.num_images", "60", "--data.query_size", "10", "--data.train_size", "20"]
    return root


def test_every_paper_config_is_covered():
    datasets = {c.split("_")[0] for c in CONFIGS}
    assert datasets == set(paper_settings.DATASETS)  # every dataset of the settings table has its configs
    assert len(CONFIGS) >= len(datasets) * 6 + 1  # every dataset × every method, plus the official TF DCH


@pytest.mark.parametrize("config", CONFIGS)
def test_shipped_config_fits_two_epochs_with_validation(config, roots, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load((EXP / config).read_text())
    extra = ["--data.val_queries", "6"] if cfg["data"]["init_args"].get("val_queries") else []
    common = COMMON
    if cfg["model"]["init_args"].get("backbone") == "mnist_mlp":  # already tiny; its data are 784-d vectors, not images
        common = [a for a in COMMON if a not in ("--model.backbone", "tiny_cnn")]
    cli = run_cli(["fit", "--config", str(EXP / config), *_data_args(config.split("_")[0], roots), *common, *extra])
    trainer, dm = cli.trainer, cli.datamodule
    assert trainer.current_epoch == 2 and not trainer.interrupted
    run = tmp_path / "runs" / cli.identity.name
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert dm.has_validation, "every shipped config watches a validation split (never the test queries)"
    assert "val/mAP" in trainer.callback_metrics and 0.0 <= float(trainer.callback_metrics["val/mAP"]) <= 1.0
    monitors = [c.monitor for c in trainer.callbacks if getattr(c, "monitor", None)]
    for key in monitors:
        assert key in trainer.callback_metrics
    if monitors:
        assert any((run / "checkpoints").glob("best-*.ckpt"))
