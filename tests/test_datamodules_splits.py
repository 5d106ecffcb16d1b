"""The datamodule's split API on a CIFAR-10 miniature (array pool): dataset() / replace_dataset() /
splits_for(), per-loader workers, validation splits that never touch the test queries, fingerprints,
raw images and eval-transform datasets."""

import json
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from datamodules import CIFAR10, ProtocolSizeError
from tests.data_fixtures import set_up, write_cifar

SMALL = dict(image_size=32, num_workers=0, batch_size=4, normalize="none", verify_checksums=False)
# every CIFAR protocol without its own validation split, with sizes that fit the 200-image miniature
NO_VAL = {"bihalf_i": dict(query_size=5), "bihalf_ii": dict(query_size=5, train_size=3),
          "dch": dict(query_size=2, train_size=5), "cifar10_1": dict(query_size=2, train_size=5),
          "cifar10_2": dict(query_size=5), "greedyhash": dict()}


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    return str(root), write_cifar(str(root))


def make(root, **kw):
    return set_up(CIFAR10, root, SMALL, **kw)


class Rows(Dataset):
    """A stand-in for cached feature rows."""

    def __init__(self, n, in_process=True):
        self.n, self.loads_in_process = n, in_process

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((2,), float(i)), torch.zeros(10), i


def test_dataset_and_replace_dataset(cifar_root):
    root, _ = cifar_root
    dm = CIFAR10(root=root, protocol="cibhash", train_size=4, val_query_size=20, **SMALL)
    with pytest.raises(RuntimeError, match="call setup"):
        dm.dataset("train")
    dm.setup("fit")
    assert dm.dataset("query") is dm.query_set and dm.dataset("train") is dm.train_set
    with pytest.raises(ValueError, match="unknown split 'test'.*train, query, database, val_query, val_database"):
        dm.dataset("test")
    # the protocol's own validation queries are ranked against its database: one dataset, two names
    assert dm.dataset("val_database") is dm.database_set is dm.val_database_set
    rows = Rows(len(dm.database_set))
    dm.replace_dataset("val_database", rows)
    assert dm.dataset("database") is rows and dm.database_dataloader().dataset is rows
    with pytest.raises(ValueError, match="has 3 items, the split has 40"):
        dm.replace_dataset("train", Rows(3))
    dm.train_set = Rows(40)  # the legacy attribute assigns through replace_dataset
    assert dm.dataset("train") is dm.train_set and isinstance(dm.train_set, Rows)
    with pytest.raises(ValueError, match="has 3 items"):
        dm.query_set = Rows(3)
    dm.setup("fit")  # a replacement holds until the next setup()
    assert not isinstance(dm.train_set, Rows) and not isinstance(dm.database_set, Rows)


def test_splits_for_each_stage(cifar_root):
    root, _ = cifar_root
    own = CIFAR10(root=root, protocol="cibhash", train_size=4, val_query_size=20, **SMALL)
    none = CIFAR10(root=root, protocol="greedyhash", **SMALL)
    drawn = CIFAR10(root=root, protocol="greedyhash", val_queries=10, **SMALL)
    for dm, val in ((own, ("val_query", "val_database")), (none, ()), (drawn, ("val_query", "val_database"))):
        assert dm.splits_for("fit") == ("train",) + val and dm.splits_for("validate") == val
        assert dm.splits_for("test") == dm.splits_for("predict") == ("query", "database")
        assert dm.has_validation == bool(val)
    with pytest.raises(ValueError, match="unknown stage 'train'"):
        own.splits_for("train")
    # the loaders of a stage are exactly the datasets splits_for names
    own.setup("fit")
    assert [l.dataset for l in own.val_dataloader()] == [own.dataset(s) for s in own.splits_for("validate")]
    assert [l.dataset for l in own.test_dataloader()] == [own.dataset(s) for s in own.splits_for("test")]


def test_datasets_read_in_process_get_a_loader_without_workers(cifar_root):
    root, _ = cifar_root
    dm = make(root, protocol="greedyhash", num_workers=2, val_queries=10)
    dm.replace_dataset("database", Rows(len(dm.database_set)))
    dm.replace_dataset("train", Rows(len(dm.train_set)))
    dm.replace_dataset("val_query", Rows(10, in_process=False))
    db, q, tl, vq = dm.database_dataloader(), dm.query_dataloader(), dm.train_dataloader(), dm.val_query_dataloader()
    assert (db.num_workers, db.persistent_workers) == (0, False)
    assert tl.num_workers == 0 and q.num_workers == 2 and q.persistent_workers and vq.num_workers == 2
    assert dm.num_workers == 2  # decided per loader; nothing rewrites the datamodule's setting
    assert torch.cat([b[2] for b in tl]).sort().values.tolist()[:4] == list(range(4))


@pytest.mark.parametrize("protocol", sorted(NO_VAL))
@pytest.mark.parametrize("holdout", [False, True])
def test_drawn_validation_never_uses_test_queries(cifar_root, protocol, holdout, tmp_path):
    root, arrays = cifar_root
    sizes = NO_VAL[protocol]
    base = make(root, protocol=protocol, split_dir=str(tmp_path), **sizes)
    assert not base.has_validation and base.val_dataloader() == [] and base.val_query_set is None
    dm = make(root, protocol=protocol, split_dir=str(tmp_path), val_queries=12, val_holdout=holdout, **sizes)
    q, tr0 = base.query_set.pool_indices, base.train_set.pool_indices
    vq, vdb = dm.val_query_set.pool_indices, dm.val_database_set.pool_indices
    assert len(vq) == 12 and not np.isin(vq, q).any() and not np.isin(vdb, q).any()  # never a test query
    assert np.isin(vq, tr0).all() and np.array_equal(np.union1d(vq, vdb), tr0) and not np.isin(vq, vdb).any()
    # the protocol's own splits do not move; holdout only removes the validation queries from train
    assert np.array_equal(dm.query_set.pool_indices, q)
    assert np.array_equal(dm.database_set.pool_indices, base.database_set.pool_indices)
    assert np.array_equal(dm.train_set.pool_indices, vdb if holdout else tr0)
    # the loaders: validation = [val queries, the rest of train], eval transform, exactly those items
    vq_loader, vdb_loader = dm.val_dataloader()
    assert vq_loader.dataset is dm.val_query_set and vdb_loader.dataset is dm.val_database_set
    assert repr(dm.val_query_set.transform) == repr(dm.query_set.transform)
    labels = torch.cat([b[1] for b in vq_loader]).argmax(1).numpy()
    assert np.array_equal(labels, arrays["labels"][vq])
    # recorded in the split file, seeded
    suffix = f"_val12{'h' if holdout else ''}.npz"
    assert dm.split_file.endswith(suffix)
    with np.load(dm.split_file) as f:
        assert np.array_equal(f["val_query"], vq) and np.array_equal(f["val_database"], vdb)
        assert json.loads(str(f["meta"]))["val_queries"] == 12
    again = make(root, protocol=protocol, split_dir=str(tmp_path), val_queries=12, val_holdout=holdout, **sizes)
    assert np.array_equal(again.val_query_set.pool_indices, vq)  # re-drawn identically and verified
    other = make(root, protocol=protocol, split_dir=str(tmp_path), val_queries=12, seed=1, **sizes)
    assert not np.array_equal(other.val_query_set.pool_indices, vq)


def test_own_validation_queries_are_official_test_images_but_not_test_queries(cifar_root):
    root, arrays = cifar_root
    dm = make(root, protocol="cibhash", train_size=4, val_query_size=20)
    vq = dm.val_query_set.pool_indices
    assert arrays["is_test"][vq].all() and not np.isin(vq, dm.query_set.pool_indices).any()
    assert dm.val_database_set is dm.database_set


def test_validation_option_errors(cifar_root):
    root, _ = cifar_root
    with pytest.raises(ValueError, match="val_queries does not apply to protocol 'cibhash'.*val_query_size"):
        CIFAR10(root=root, protocol="cibhash", val_queries=10, **SMALL)
    with pytest.raises(ValueError, match="val_holdout=True needs val_queries"):
        CIFAR10(root=root, protocol="greedyhash", val_holdout=True, **SMALL)
    with pytest.raises(ValueError, match="val_queries must be an int >= 1"):
        CIFAR10(root=root, protocol="greedyhash", val_queries=0, **SMALL)
    with pytest.raises(ProtocolSizeError, match="val_queries=150 but the train split has only 150"):
        make(root, protocol="greedyhash", val_queries=150)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        CIFAR10(root=root, seed=-1, **SMALL)


def test_array_fingerprints_follow_pixels_and_labels(tmp_path):
    arrays = write_cifar(str(tmp_path))
    dm = make(str(tmp_path), protocol="dch", query_size=2, train_size=5, write_splits=False)
    fp = {k: dm.dataset(k).fingerprint() for k in ("train", "query", "database")}
    assert len(set(fp.values())) == 3
    assert make(str(tmp_path), protocol="dch", query_size=2, train_size=5,
                write_splits=False).query_set.fingerprint() == fp["query"]
    pool = dm.query_set.images  # the shared pool: change one pixel of a query image ...
    j = dm.query_set.pool_indices[3]
    pool[j, 5, 5, 1] ^= 1
    assert dm.query_set.fingerprint() != fp["query"]
    assert dm.database_set.fingerprint() == fp["database"]  # ... other splits are unchanged
    pool[j, 5, 5, 1] ^= 1
    assert dm.query_set.fingerprint() == fp["query"]
    dm.query_set.labels[0, :] = dm.query_set.labels[0].flip(0)
    assert dm.query_set.fingerprint() != fp["query"]
    assert arrays["images"].shape[0] == 200


def test_raw_images_and_eval_datasets(cifar_root):
    root, arrays = cifar_root
    dm = make(root, protocol="bihalf_ii", query_size=5, train_size=3, train_transform="cibhash", views=2)
    j = dm.train_set.pool_indices[4]
    dm.replace_dataset("train", Rows(len(dm.train_set)))
    img = dm.image("train", 4)  # from the pool, untransformed, after the replacement
    assert img.mode == "RGB" and np.array_equal(np.asarray(img), arrays["images"][j])
    assert np.array_equal(np.asarray(dm.image("query", -1)), arrays["images"][dm.query_set.pool_indices[-1]])
    with pytest.raises(IndexError):
        dm.image("query", 50)
    ev = dm.eval_dataset("train")  # one deterministic tensor per item, not the two cibhash views
    x, y, i = ev[4]
    assert isinstance(x, torch.Tensor) and i == 4 and torch.equal(x, ev[4][0])
    expect = torch.from_numpy(arrays["images"][j]).permute(2, 0, 1).float() / 255
    assert torch.allclose(x, expect, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(dm.eval_dataset("database")) == len(dm.database_set)
