"""Files written by the previous layout (main@a951ebe, before datamodules/ and the feature store were split into
one-job files) still load: its split files verify against the splits drawn now, its checkpoint's datamodule section
rebuilds the same datamodule, and the feature store computes the same keys, so existing cache entries stay valid.
The fixtures in tests/fixtures/layout_a951ebe/ were written by that code (make_fixtures.py there, run at a951ebe)."""
import importlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data_fixtures import write_list_dataset, write_mnist_idx

FIXTURES = Path(__file__).parent / "fixtures" / "layout_a951ebe"
SPLIT_FILES = sorted(p.name for p in (FIXTURES / "splits").glob("*.npz"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("old_layout")
    write_mnist_idx(str(root / "mnist"), train_per_class=12, test_per_class=4, gz=True, seed=0)
    write_list_dataset(str(root / "lists"), num_classes=5, seed=0)
    return root


def old_splits(tmp_path) -> Path:
    copy = tmp_path / "splits"
    shutil.copytree(FIXTURES / "splits", copy)
    return copy


def datamodule_for(name: str, data: Path, split_dir: Path):
    """The datamodule whose setup() wrote ``name`` at a951ebe (the arguments of make_fixtures.py)."""
    from datamodules import BinarizedMNIST, ImageList, MNIST

    common = {"split_dir": str(split_dir), "num_workers": 0}
    mnist = str(data / "mnist")
    return {
        "mnist_cifar_like_seed3_q2-t5-dball-v0_val4.npz": lambda: MNIST(
            root=mnist, protocol="cifar_like", query_size=2, train_size=5, seed=3, val_queries=4, **common),
        "mnist_official_seed0_qall-t3-db6-v0.npz": lambda: MNIST(
            root=mnist, protocol="official", database_size=6, train_size=3, seed=0, **common),
        "mnist_bihalf_ae_seed0.npz": lambda: BinarizedMNIST(root=mnist, seed=0, **common),
        "toylist_lists_seed0_val2h.npz": lambda: ImageList(
            name="toylist", root=str(data / "lists"), num_classes=5, top_k="all", val_queries=2, val_holdout=True,
            lists={"query": "test.txt", "database": "database.txt", "train": "train.txt"}, image_size=16, **common),
    }[name]()


@pytest.mark.parametrize("name", SPLIT_FILES)
def test_a_split_file_of_the_previous_layout_verifies_and_is_served(name, data, tmp_path):
    split_dir = old_splits(tmp_path)
    before = (split_dir / name).read_bytes()
    dm = datamodule_for(name, data, split_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not the official 60,000 / 10,000" on the miniature
        dm.setup()  # raises SplitFileMismatchError when the file and the splits drawn now differ
    assert dm.split_file == str(split_dir / name)
    assert (split_dir / name).read_bytes() == before, "verifying must not rewrite the file"
    assert sorted(p.name for p in split_dir.iterdir()) == SPLIT_FILES, "no second file under a new name"
    with np.load(split_dir / name, allow_pickle=False) as f:
        saved = {k: f[k] for k in f.files if k != "meta"}
    for split in ("query", "val_query", "val_database"):
        if saved.get(split) is not None and len(saved[split]) and split in dm.splits_for(None):
            assert np.array_equal(dm.dataset(split).pool_indices, saved[split]), split


def test_a_checkpoint_of_the_previous_layout_rebuilds_its_datamodule(data, tmp_path):
    """``_class_path: datamodules.MNIST`` and the state under the class name ``MNIST``, as a951ebe saved them."""
    from datamodules import MNIST

    ckpt = FIXTURES / "mnist_datamodule.ckpt"
    saved = torch.load(ckpt, weights_only=False)
    module, name = saved["datamodule_hyper_parameters"]["_class_path"].rsplit(".", 1)
    assert (module, name) == ("datamodules", "MNIST")
    cls = getattr(importlib.import_module(module), name)  # how the run tools resolve a saved class path
    split_dir = old_splits(tmp_path)
    dm = cls.load_from_checkpoint(ckpt, root=str(data / "mnist"), split_dir=str(split_dir))
    assert type(dm) is MNIST and (dm.seed, dm.val_queries, dm.batch_size) == (3, 4, 8)
    assert type(dm).__qualname__ in saved, "Lightning restores the datamodule's state under its class name"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the global batch matches: no "other batches" warning
        dm.load_state_dict(saved[type(dm).__qualname__])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm.setup()
    assert dm.split_file == str(split_dir / "mnist_cifar_like_seed3_q2-t5-dball-v0_val4.npz")


def test_the_feature_store_computes_the_previous_layouts_keys():
    """Cache entries are found by these keys: a change would silently rebuild every user's cache."""
    from hashcore import feature_store as F

    want = json.loads((FIXTURES / "feature_store_keys.json").read_text())
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    got = {"module_fingerprint": F.module_fingerprint(lin), "encoder_fields": F.encoder_fields(lin, "toy"),
           "array_fingerprint": F.array_fingerprint(np.arange(12, dtype=np.int64).reshape(3, 4),
                                                    np.ones(2, np.float32)),
           "cache_key": F.cache_key({"a": 1, "b": [1, 2], "c": "x"}),
           "format_version": F.FORMAT_VERSION, "view_seed": F.view_seed(5, 2, 7)}
    assert got == want
