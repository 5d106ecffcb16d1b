"""Protocol registry, seeded split function, validation draw and split files (numpy only; no images).

The protocols are declared by the dataset modules, so importing them registers them."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import datamodules.cifar  # noqa: F401  (registers the CIFAR-10 protocols)
import datamodules.flickr  # noqa: F401
import datamodules.mnist  # noqa: F401
from datamodules import protocols as P
from datamodules.errors import ProtocolSizeError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_split_file(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k != "meta"}, json.loads(str(f["meta"]))


def full_cifar_pool():
    """Labels of the real CIFAR-10 layout: 6,000 per class, 50,000 train then 10,000 test."""
    rng = np.random.default_rng(123)
    ytr = rng.permutation(np.repeat(np.arange(10), 5000))
    yte = rng.permutation(np.repeat(np.arange(10), 1000))
    labels = np.eye(10, dtype=np.uint8)[np.r_[ytr, yte]]
    is_test = np.r_[np.zeros(50000, bool), np.ones(10000, bool)]
    return labels, is_test


def per_class(labels, idx):
    return np.bincount(labels[idx].argmax(1), minlength=labels.shape[1])


PAPER_CIFAR = {  # name: (query, train, database, val_query, train_in_db, top_k)
    "bihalf_i": (10000, 50000, 50000, 0, True, 1000),
    "bihalf_ii": (10000, 5000, 50000, 0, True, None),
    "dch": (1000, 5000, 54000, 0, False, None),
    "cifar10_1": (1000, 5000, 59000, 0, True, None),
    "cifar10_2": (10000, 50000, 50000, 0, True, None),
    "cibhash": (5000, 5000, 50000, 5000, True, 1000),
    "greedyhash": (10000, 50000, 50000, 0, True, 1000),
}


@pytest.mark.parametrize("name", sorted(PAPER_CIFAR))
def test_cifar_protocols_have_paper_sizes_and_rules(name):
    labels, is_test = full_cifar_pool()
    spec = P.get_protocol("cifar10", name)
    nq, ntr, ndb, nv, train_in_db, top_k = PAPER_CIFAR[name]
    s = P.split_pool(spec, labels, seed=0, is_test=is_test)
    assert (len(s["query"]), len(s["train"]), len(s["database"]), len(s["val_query"])) == (nq, ntr, ndb, nv)
    assert spec.top_k == top_k
    assert {k: len(s[k]) for k in spec.nominal} == dict(spec.nominal)
    assert np.intersect1d(s["query"], s["database"]).size == 0
    assert np.intersect1d(s["query"], s["train"]).size == 0
    if train_in_db:
        assert np.isin(s["train"], s["database"]).all()
    else:
        assert np.intersect1d(s["train"], s["database"]).size == 0
    if nv:
        assert np.intersect1d(s["val_query"], np.r_[s["query"], s["database"], s["train"]]).size == 0
    for k in ("query", "train", "database"):
        assert np.all(np.diff(s[k]) > 0), "splits are sorted, unique pool indices"


def test_cifar_protocol_details():
    labels, is_test = full_cifar_pool()
    get = lambda n: P.split_pool(P.get_protocol("cifar10", n), labels, 0, is_test=is_test)  # noqa: E731
    s = get("bihalf_i")
    assert np.array_equal(s["train"], s["database"])
    assert (per_class(labels, s["query"]) == 1000).all() and (per_class(labels, s["database"]) == 5000).all()
    # query + database = the whole pooled set
    assert len(np.union1d(s["query"], s["database"])) == 60000
    s = get("dch")
    assert (per_class(labels, s["query"]) == 100).all() and (per_class(labels, s["train"]) == 500).all()
    assert len(np.union1d(np.union1d(s["query"], s["train"]), s["database"])) == 60000
    s = get("cibhash")
    assert is_test[s["query"]].all() and is_test[s["val_query"]].all()
    assert not is_test[s["database"]].any() and len(s["database"]) == 50000
    assert (per_class(labels, s["train"]) == 500).all()
    s = get("greedyhash")
    assert np.array_equal(s["query"], np.flatnonzero(is_test))
    assert np.array_equal(s["train"], np.flatnonzero(~is_test))
    s = get("bihalf_ii")
    assert (per_class(labels, s["train"]) == 500).all() and np.isin(s["train"], s["database"]).all()


def test_split_is_seeded_and_reproducible():
    labels, is_test = full_cifar_pool()
    spec = P.get_protocol("cifar10", "bihalf_ii")
    a = P.split_pool(spec, labels, seed=3, is_test=is_test)
    b = P.split_pool(spec, labels, seed=3, is_test=is_test)
    c = P.split_pool(spec, labels, seed=4, is_test=is_test)
    for k in a:
        assert np.array_equal(a[k], b[k])
    assert not np.array_equal(a["query"], c["query"])
    # the split does not touch numpy's global RNG
    np.random.seed(1)
    before = np.random.get_state()[1].copy()
    P.split_pool(spec, labels, seed=3, is_test=is_test)
    assert np.array_equal(np.random.get_state()[1], before)


def test_names_aliases_and_unknown():
    assert P.get_protocol("cifar10", "cifar10").name == "dch"
    assert P.get_protocol("cifar10", "CIFAR10-1").name == "cifar10_1"
    assert P.get_protocol("cifar10", "official").name == "greedyhash"
    assert P.get_protocol("flickr25k", "mirflickr").name == "deephash_mirflickr"
    with pytest.raises(ValueError, match="available: bihalf_i, bihalf_ii, cibhash"):
        P.get_protocol("cifar10", "cifar10_I")
    for ds in ("cifar10", "mnist", "fashion_mnist", "flickr25k"):
        assert P.available(ds)
    assert "mAP@1000" in P.describe("cifar10") and "deephash_mirflickr" in P.describe()
    assert "own validation queries" in P.describe("cifar10")  # cibhash
    with pytest.raises(KeyError, match="registers its own protocols when imported"):
        P.get_protocol("no_such_dataset", "x")


def test_each_dataset_module_declares_its_own_protocols():
    """protocols.py is machinery only: importing it registers nothing; datamodules.describe() imports the
    dataset modules and lists every protocol, with ImageList datasets once one is constructed."""
    code = ("import datamodules.protocols as P; assert P.describe() == '', P.describe(); "
            "import datamodules; d = datamodules.describe(); "
            "assert 'cifar10/bihalf_i' in d and 'mnist/cifar_like' in d and 'flickr25k/bihalf' in d, d; "
            "from datamodules import ImageList; "
            "ImageList(name='mylist', root='.', num_classes=3, top_k='all', protocol='v1', "
            "lists={'query': 'q.txt', 'database': 'db.txt'}); "
            "print(datamodules.describe('mylist'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("mylist/v1: as the lists give; mAP@all; 3 labels.")
    source = open(os.path.join(REPO, "datamodules", "protocols.py")).read()
    assert "register(Protocol(" not in source
    for name in os.listdir(os.path.join(REPO, "datamodules")):
        if name.endswith((".py", ".md")) and name != "feature_cache.py":  # the feature cache is being redesigned
            text = open(os.path.join(REPO, "datamodules", name)).read()
            assert "METHODS.md" not in text and "OFFLINE_DATA" not in text and "shared/" not in text, name


def test_resolve_sizes_scale_overrides_and_lists():
    spec = P.get_protocol("cifar10", "bihalf_ii")
    assert P.resolve_sizes(spec) == {"query": 1000, "train": 500, "database": None, "val_query": 0}
    assert P.resolve_sizes(spec, scale=0.01) == {"query": 10, "train": 5, "database": None, "val_query": 0}
    assert P.resolve_sizes(spec, scale=1e-6)["query"] == 1
    assert P.resolve_sizes(spec, query=3, database=12)["database"] == 12
    with pytest.raises(ValueError, match="no validation queries"):
        P.resolve_sizes(spec, val_query=3)
    with pytest.raises(ValueError, match="positive"):
        P.resolve_sizes(spec, query=0)
    with pytest.raises(ValueError, match="list files"):
        P.resolve_sizes(P.get_protocol("flickr25k", "deephash_mirflickr"), query=3)


def test_too_small_pool_names_protocol_class_and_remedy():
    labels = np.eye(10, dtype=np.uint8)[np.repeat(np.arange(10), 20)]
    with pytest.raises(ProtocolSizeError, match=r"bihalf_i.*1000 queries from class 0 \(airplane\).*20.*scale"):
        P.split_pool(P.get_protocol("cifar10", "bihalf_i"), labels, 0, class_names=["airplane"] + ["x"] * 9)


def test_database_cap_and_multilabel_totals():
    labels = np.eye(10, dtype=np.uint8)[np.repeat(np.arange(10), 20)]
    spec = P.get_protocol("mnist", "cifar_like")
    s = P.split_pool(spec, labels, 0, P.resolve_sizes(spec, query=2, train=3, database=10))
    assert (per_class(labels, s["query"]) == 2).all() and (per_class(labels, s["database"]) == 10).all()
    assert (per_class(labels, s["train"]) == 3).all() and np.isin(s["train"], s["database"]).all()
    # multi-label pools (Flickr25k) use totals
    rng = np.random.default_rng(0)
    ml = (rng.random((100, 24)) < 0.2).astype(np.uint8)
    spec = P.get_protocol("flickr25k", "bihalf")
    s = P.split_pool(spec, ml, 0, P.resolve_sizes(spec, query=10, train=20))
    assert (len(s["query"]), len(s["train"]), len(s["database"])) == (10, 20, 90)
    # per-class protocols refuse multi-label data
    with pytest.raises(ValueError, match="single-label"):
        P.split_pool(P.get_protocol("cifar10", "dch"), ml[:, :10], 0)


def test_split_file_written_verified_and_mismatch(tmp_path):
    labels, is_test = full_cifar_pool()
    spec = P.get_protocol("cifar10", "dch")
    s = P.split_pool(spec, labels, 0, is_test=is_test)
    meta = {"algorithm": P.SPLIT_ALGORITHM, "pool_fingerprint": P.pool_fingerprint(labels, is_test),
            "pool_size": 60000}
    path = str(tmp_path / "splits" / P.split_file_name("cifar10", spec, 0, P.resolve_sizes(spec)))
    assert path.endswith("cifar10_dch_seed0.npz")
    assert P.save_or_verify_splits(path, s, meta) == "written"
    assert P.save_or_verify_splits(path, s, meta) == "verified"
    back, m = read_split_file(path)
    assert np.array_equal(back["database"], s["database"]) and m["pool_size"] == 60000
    other = dict(s, query=s["query"][::-1].copy())
    with pytest.raises(P.SplitFileMismatchError, match="different query indices.*Delete it"):
        P.save_or_verify_splits(path, other, meta)
    changed = dict(meta, pool_fingerprint="0" * 64)
    with pytest.raises(P.SplitFileMismatchError, match="different data"):
        P.save_or_verify_splits(path, s, changed)
    with open(path, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(P.SplitFileMismatchError, match="cannot be read"):
        P.save_or_verify_splits(path, s, meta)
    sized = P.split_file_name("cifar10", spec, 0, P.resolve_sizes(spec, query=2))
    assert sized == "cifar10_dch_seed0_q2-t500-dball-v0.npz"
    assert P.split_file_name("cifar10", spec, 0, P.resolve_sizes(spec), 1000) == "cifar10_dch_seed0_val1000.npz"
    assert P.split_file_name("cifar10", spec, 0, P.resolve_sizes(spec), 5, True) == "cifar10_dch_seed0_val5h.npz"


def test_split_files_written_before_val_database_still_verify(tmp_path):
    """Files of earlier versions hold train/query/database/val_query only: they must verify unchanged."""
    labels, is_test = full_cifar_pool()
    spec = P.get_protocol("cifar10", "greedyhash")
    s = P.split_pool(spec, labels, 0, is_test=is_test)
    meta = {"algorithm": P.SPLIT_ALGORITHM, "pool_fingerprint": P.pool_fingerprint(labels, is_test)}
    path = str(tmp_path / "old.npz")
    np.savez(path, meta=np.array(json.dumps(meta)), **{k: s[k] for k in ("train", "query", "database", "val_query")})
    assert P.save_or_verify_splits(path, s, meta) == "verified"
    with pytest.raises(P.SplitFileMismatchError, match="different val_database"):
        P.save_or_verify_splits(path, dict(s, val_database=s["train"][:3]), meta)


def test_validation_draw_is_seeded_disjoint_and_optionally_held_out():
    train = np.arange(100, 300, 2)  # 100 pool indices
    a = P.draw_validation(train, 10, seed=0, holdout=False)
    assert np.array_equal(a["val_query"], P.draw_validation(train, 10, seed=0, holdout=False)["val_query"])
    assert not np.array_equal(a["val_query"], P.draw_validation(train, 10, seed=1, holdout=False)["val_query"])
    assert len(a["val_query"]) == 10 and np.isin(a["val_query"], train).all()
    assert np.intersect1d(a["val_query"], a["val_database"]).size == 0
    assert np.array_equal(np.union1d(a["val_query"], a["val_database"]), train)
    assert np.array_equal(a["train"], train)  # no holdout: the protocol's train split is untouched
    h = P.draw_validation(train, 10, seed=0, holdout=True)
    assert np.array_equal(h["val_query"], a["val_query"]) and np.array_equal(h["train"], a["val_database"])
    # excluded entries (train images that are also test queries) are never drawn
    excl = train[:95]
    e = P.draw_validation(train, 4, seed=0, holdout=False, exclude=excl)
    assert not np.isin(e["val_query"], excl).any()
    with pytest.raises(ProtocolSizeError, match=r"val_queries=5 but the train split has only 5 image"):
        P.draw_validation(train, 5, seed=0, holdout=False, exclude=excl)
    with pytest.raises(ProtocolSizeError, match="val_queries=100 .*lower val_queries"):
        P.draw_validation(train, 100, seed=0, holdout=False)
    # the draw does not use (or disturb) the split's own RNG stream
    labels, is_test = full_cifar_pool()
    spec = P.get_protocol("cifar10", "bihalf_ii")
    assert np.array_equal(P.split_pool(spec, labels, 3, is_test=is_test)["train"],
                          P.split_pool(spec, labels, 3, is_test=is_test)["train"])


def test_protocols_module_does_not_import_lightning():
    code = ("import sys, datamodules, datamodules.protocols; "
            "print('lightning' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False"
