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
    assert "class_path: datamodules.toyset.ToySet" in done.stdout


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
