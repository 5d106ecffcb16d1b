"""Datasets are self-discovering: a new module in datamodules/ is usable by its short class name from the
console, with no other file edited (the package is copied with one extra module, then `lightning` runs on it)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NEW_MODULE = '''"""A dataset module that no other file mentions."""
from .base import HashDataModule


class ToySet(HashDataModule):
    pass
'''


def test_new_dataset_module_resolves_by_short_name_without_other_edits(tmp_path):
    shutil.copytree(REPO / "datamodules", tmp_path / "datamodules", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "datamodules" / "toyset.py").write_text(NEW_MODULE)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "WANDB_MODE": "disabled",
           "OMP_NUM_THREADS": "1"}
    lightning = Path(sys.executable).with_name("lightning")
    done = subprocess.run([str(lightning), "fit", "--model", "CIBHash", "--data", "ToySet", "--print_config"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "class_path: datamodules.ToySet" in done.stdout  # the package path, as every shipped dataset


def test_discover_imports_every_dataset_module():
    import datamodules
    from datamodules.base import HashDataModule

    datamodules.discover()
    modules = {m.stem for m in (REPO / "datamodules").glob("[!_]*.py")}
    assert modules <= set(sys.modules[n].__name__.split(".")[-1] for n in sys.modules if n.startswith("datamodules."))
    names = set()
    stack = [HashDataModule]
    while stack:
        cls = stack.pop()
        names.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    assert {"CIFAR10", "MNIST", "FashionMNIST", "BinarizedMNIST", "Flickr25k", "ImageList"} <= names


OWN_FORMAT_MODULE = '''"""A dataset with a file format of its own (<root>/toy.npz: uint8 RGB images, int labels) that no other file
mentions: its module reads the pool and registers its protocol; the base does the rest."""
import os
from typing import ClassVar

import numpy as np

from .base import HashDataModule
from .pools import Pool
from .protocols import Protocol, register

register(Protocol("toy_pooled", "toyset", "pooled", 4, None, "2 queries and 5 train images per class.", "a test",
                  query=2, train=5, database=None))


class ToySet(HashDataModule):
    dataset_name: ClassVar[str] = "toyset"
    display_name: ClassVar[str] = "ToySet"
    default_protocol: ClassVar[str] = "toy_pooled"

    def _load_pool(self) -> Pool:
        with np.load(os.path.join(self.root, "toy.npz")) as f:
            images, labels = f["images"], f["labels"]
        return Pool(images, np.eye(4, dtype=np.uint8)[labels], class_names=["a", "b", "c", "d"], order="toy.npz")
'''


def test_a_dataset_module_with_its_own_format_trains_by_its_short_name_without_other_edits(tmp_path):
    """The whole walkthrough of a new dataset module: one new file, then `lightning fit --data ToySet` trains on it,
    writes its split file, and `datamodules.describe()` lists its protocol."""
    import numpy as np

    shutil.copytree(REPO / "datamodules", tmp_path / "datamodules", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "datamodules" / "toyset.py").write_text(OWN_FORMAT_MODULE)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    np.savez(tmp_path / "toy.npz", images=rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8), labels=labels)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "WANDB_MODE": "disabled",
           "OMP_NUM_THREADS": "1"}
    lightning = Path(sys.executable).with_name("lightning")
    done = subprocess.run(
        [str(lightning), "fit", "--model", "DPSH", "--model.backbone", "tiny_cnn", "--model.pretrained", "false",
         "--model.bits", "8", "--data", "ToySet", "--data.root", str(tmp_path), "--data.image_size", "16",
         "--data.batch_size", "4", "--data.num_workers", "0", "--trainer.max_steps", "1",
         "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with np.load(tmp_path / "splits" / "toyset_toy_pooled_seed0.npz") as f:
        assert (len(f["query"]), len(f["train"]), len(f["database"])) == (8, 20, 32)
    listed = subprocess.run(
        [sys.executable, "-c", "import datamodules; print(datamodules.describe('toyset')); "
                               "print(datamodules.ToySet.__module__)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = listed.stdout.splitlines()
    assert lines and lines[0].startswith("toyset/toy_pooled:"), listed.stdout + listed.stderr
    assert lines[-1] == "datamodules.toyset", "the package attribute a full class path (datamodules.ToySet) reads"
