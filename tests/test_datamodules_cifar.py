"""CIFAR-10 datamodule on a miniature written in the real pickle-batch format (nothing downloads)."""

import json
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler, SequentialSampler

from datamodules import CIFAR10, DatasetFormatError, DatasetNotFoundError, ProtocolSizeError, UnsafePickleError
from datamodules.protocols import SplitFileMismatchError
from datamodules.sampling import EpochShuffleSampler
from tests.data_fixtures import CreatesFile, class_counts, set_up, write_cifar

# miniature: 15 train + 5 test images per class (200 images)
SMALL = dict(image_size=32, num_workers=0, batch_size=4, normalize="none", verify_checksums=False)


@pytest.fixture()
def cifar_root(tmp_path):
    arrays = write_cifar(str(tmp_path))
    return str(tmp_path), arrays


def make(root, **kw):
    return set_up(CIFAR10, root, SMALL, **kw)


def read_split_file(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k != "meta"}, json.loads(str(f["meta"]))


@pytest.mark.parametrize("protocol,sizes,expect", [
    ("bihalf_i", dict(query_size=5), dict(query=50, train=150, database=150)),
    ("bihalf_ii", dict(query_size=5, train_size=3), dict(query=50, train=30, database=150)),
    ("dch", dict(query_size=2, train_size=5), dict(query=20, train=50, database=130)),
    ("cifar10_1", dict(query_size=2, train_size=5), dict(query=20, train=50, database=180)),
    ("cibhash", dict(train_size=4, val_query_size=20),
     dict(query=30, val_query=20, val_database=150, train=40, database=150)),
    ("greedyhash", dict(), dict(query=50, train=150, database=150)),
])
def test_protocol_sizes_and_overlap_rules(cifar_root, protocol, sizes, expect):
    root, arrays = cifar_root
    dm = make(root, protocol=protocol, **sizes)
    assert dm.split_sizes == expect
    q, db, tr = (s.pool_indices for s in (dm.query_set, dm.database_set, dm.train_set))
    assert np.intersect1d(q, db).size == 0 and np.intersect1d(q, tr).size == 0
    if dm.protocol_spec.train_in_database:
        assert np.isin(tr, db).all()
    else:
        assert np.intersect1d(tr, db).size == 0
    if dm.val_query_set is not None:
        v = dm.val_query_set.pool_indices
        assert np.intersect1d(v, np.r_[q, db, tr]).size == 0
        assert arrays["is_test"][v].all() and arrays["is_test"][q].all()
    # labels are one-hot float32 and match the pixels' source
    for ds in (dm.query_set, dm.database_set, dm.train_set):
        assert ds.labels.dtype == torch.float32 and torch.all(ds.labels.sum(1) == 1)
        assert np.array_equal(ds.labels.argmax(1).numpy(), arrays["labels"][ds.pool_indices])


def test_per_class_counts_and_default_top_k(cifar_root):
    root, _ = cifar_root
    dm = make(root, protocol="bihalf_ii", query_size=5, train_size=3)
    assert (class_counts(dm.query_set) == 5).all() and (class_counts(dm.train_set) == 3).all()
    assert dm.top_k is None and dm.num_classes == 10
    assert CIFAR10(root=root, protocol="bihalf_i").top_k == 1000
    assert CIFAR10(root=root, protocol="cibhash").top_k == 1000
    assert CIFAR10(root=root, protocol="dch").top_k is None
    assert CIFAR10(root=root, protocol="bihalf_i", top_k="all").top_k is None
    assert CIFAR10(root=root, protocol="bihalf_i", top_k=-1).top_k is None
    assert CIFAR10(root=root, protocol="dch", top_k=500).top_k == 500
    with pytest.raises(ValueError, match="top_k"):
        CIFAR10(root=root, top_k=0)
    assert CIFAR10(root=root, protocol="cifar10").protocol == "dch"


def test_items_are_image_label_index_with_exact_pixels(cifar_root):
    root, arrays = cifar_root
    dm = make(root, protocol="dch", query_size=2, train_size=5)
    img, label, index = dm.database_set[7]
    j = dm.database_set.pool_indices[7]
    assert index == 7 and img.shape == (3, 32, 32) and img.dtype == torch.float32
    # R, G, B planes were decoded in the right order (normalize="none", Resize 32 -> 32 is exact)
    expect = torch.from_numpy(arrays["images"][j]).permute(2, 0, 1).float() / 255
    assert torch.allclose(img, expect, atol=1e-6)
    assert label.argmax().item() == arrays["labels"][j]
    assert dm.class_names[0] == "airplane"


def test_seeded_splits_are_reproducible_and_written_next_to_the_data(cifar_root):
    root, _ = cifar_root
    a = make(root, protocol="bihalf_ii", query_size=5, train_size=3, seed=7)
    b = make(root, protocol="bihalf_ii", query_size=5, train_size=3, seed=7)  # re-reads + verifies
    c = make(root, protocol="bihalf_ii", query_size=5, train_size=3, seed=8)
    for name in ("train_set", "query_set", "database_set"):
        assert np.array_equal(getattr(a, name).pool_indices, getattr(b, name).pool_indices)
    assert not np.array_equal(a.query_set.pool_indices, c.query_set.pool_indices)
    assert a.split_file == os.path.join(root, "splits", "cifar10_bihalf_ii_seed7_q5-t3-dball-v0.npz")
    splits, meta = read_split_file(a.split_file)
    assert np.array_equal(splits["query"], a.query_set.pool_indices)
    assert meta["protocol"] == "bihalf_ii" and meta["seed"] == 7 and meta["pool_size"] == 200
    assert "data_batch_1..5" in meta["pool_order"]


def test_changed_data_is_detected_by_the_split_file(tmp_path):
    write_cifar(str(tmp_path), seed=0)
    make(str(tmp_path), protocol="dch", query_size=2, train_size=5)
    write_cifar(str(tmp_path), seed=1)  # different labels, same file names
    with pytest.raises(SplitFileMismatchError, match="different data"):
        make(str(tmp_path), protocol="dch", query_size=2, train_size=5)
    dm = make(str(tmp_path), protocol="dch", query_size=2, train_size=5, write_splits=False)
    assert dm.split_file is None


def test_checksum_mismatch_is_a_warning_not_a_refusal(cifar_root):
    root, _ = cifar_root
    with pytest.warns(UserWarning, match="md5 mismatch: data_batch_1.*loading them anyway"):
        dm = make(root, protocol="greedyhash", verify_checksums=True)
    assert len(dm.database_set) == 150
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(root, protocol="greedyhash", verify_checksums=False)


def test_repacked_batches_with_str_keys_load(tmp_path):
    arrays = write_cifar(str(tmp_path), str_keys=True)
    dm = make(str(tmp_path), protocol="greedyhash")
    assert np.array_equal(dm.query_set.labels.argmax(1).numpy(), arrays["labels"][150:])


def test_missing_batches_error_names_paths_format_and_source(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        make(str(tmp_path))
    msg = str(e.value)
    assert os.path.join(str(tmp_path), "cifar-10-batches-py") in msg
    assert "data_batch_1" in msg and "b'data'" in msg and "download=True" in msg
    assert "cifar-10-python.tar.gz" in msg
    write_cifar(str(tmp_path))
    os.remove(os.path.join(str(tmp_path), "cifar-10-batches-py", "test_batch"))
    with pytest.raises(DatasetNotFoundError, match=r"Missing: test_batch"):
        make(str(tmp_path))


@pytest.mark.parametrize("payload,match", [
    ({b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]}, r"shape \(4, 100\), expected \(N, 3072\)"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2]}, "3 labels for 4 images"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, r"labels must be ints in 0\.\.9"),
    ({b"labels": [0]}, "missing key data"),
    ([1, 2, 3], "holds a list, not a dict"),
])
def test_malformed_batch_errors_name_the_file(tmp_path, payload, match):
    write_cifar(str(tmp_path))
    bad = os.path.join(str(tmp_path), "cifar-10-batches-py", "data_batch_3")
    with open(bad, "wb") as f:
        pickle.dump(payload, f, protocol=2)
    with pytest.raises(DatasetFormatError, match=match) as e:
        make(str(tmp_path))
    assert bad in str(e.value)
    with open(bad, "wb") as f:
        f.write(b"not a pickle")
    with pytest.raises(DatasetFormatError, match="not a readable CIFAR-10 pickle batch"):
        make(str(tmp_path))


def test_too_small_data_gives_a_protocol_size_error(cifar_root):
    root, _ = cifar_root
    with pytest.raises(ProtocolSizeError, match="bihalf_i.*1000 queries.*query_size"):
        make(root, protocol="bihalf_i")


def test_loaders_follow_the_contract(cifar_root):
    root, _ = cifar_root
    dm = make(root, protocol="cibhash", train_size=4, val_query_size=20, batch_size=8, eval_batch_size=16)
    tl = dm.train_dataloader()
    assert isinstance(tl.sampler, EpochShuffleSampler) and tl.drop_last and tl.batch_size == 8
    assert len(tl) == 40 // 8
    for loader in (dm.query_dataloader(), dm.database_dataloader(), dm.val_query_dataloader()):
        assert isinstance(loader.sampler, SequentialSampler) and not loader.drop_last
        assert loader.batch_size == 16
    val, test = dm.val_dataloader(), dm.test_dataloader()
    assert [l.dataset for l in val] == [dm.val_query_set, dm.database_set]  # own val queries vs the database
    assert [l.dataset for l in test] == [dm.query_set, dm.database_set]
    assert [l.dataset for l in dm.predict_dataloader()] == [dm.query_set, dm.database_set]
    x, y, idx = next(iter(dm.database_dataloader()))
    assert x.shape == (16, 3, 32, 32) and y.shape == (16, 10) and y.dtype == torch.float32
    assert idx.dtype == torch.int64 and idx.tolist() == list(range(16))
    # eval loaders cover every index exactly once, in order
    seen = torch.cat([b[2] for b in dm.database_dataloader()])
    assert seen.tolist() == list(range(len(dm.database_set)))
    # without a validation split there is no validation (never the test queries)
    dm2 = make(root, protocol="greedyhash")
    assert dm2.val_query_set is None and dm2.val_dataloader() == [] and not dm2.has_validation
    with pytest.raises(ValueError, match="no validation split.*val_queries=N"):
        dm2.val_query_dataloader()


def test_train_loader_shuffle_is_seeded(cifar_root):
    root, _ = cifar_root
    order = lambda dm: torch.cat([b[2] for b in dm.train_dataloader()]).tolist()  # noqa: E731
    a, b = make(root, protocol="greedyhash", seed=1), make(root, protocol="greedyhash", seed=1)
    assert order(a) == order(b)
    assert sorted(order(a)) != order(a)


def test_batch_larger_than_train_split_is_an_error(cifar_root):
    root, _ = cifar_root
    dm = make(root, protocol="bihalf_ii", query_size=5, train_size=1, batch_size=64)
    with pytest.raises(ValueError, match="fewer than batch_size=64"):
        dm.train_dataloader()


def test_two_views_on_request_or_from_the_argument(cifar_root):
    root, _ = cifar_root
    dm = CIFAR10(root=root, protocol="greedyhash", train_transform="cibhash", **SMALL)
    dm.request_train_input(2, None)  # what the CLI does with the model's train_views / train_transform
    dm.setup("fit")
    assert dm.views == 2
    views, label, idx = dm.train_set[0]
    assert isinstance(views, list) and len(views) == 2 and views[0].shape == (3, 32, 32)
    assert not torch.equal(views[0], views[1])
    x, y, i = next(iter(dm.train_dataloader()))
    assert isinstance(x, list) and len(x) == 2 and x[0].shape == (4, 3, 32, 32) and y.shape == (4, 10)
    # eval sets never get views
    assert isinstance(dm.query_set[0][0], torch.Tensor)
    # no request -> 1 view and the dataset's default transform; explicit init args win over the request
    dm1 = make(root, protocol="greedyhash")
    assert dm1.views == 1 and dm1.train_transform == "resize" and isinstance(dm1.train_set[0][0], torch.Tensor)
    dm3 = CIFAR10(root=root, protocol="greedyhash", views=3, train_transform="cibhash", **SMALL)
    dm3.request_train_input(2, "resize_crop_flip")
    dm3.setup()
    assert len(dm3.train_set[0][0]) == 3 and dm3.train_transform == "cibhash"
    dm4 = CIFAR10(root=root, protocol="greedyhash", **SMALL)
    dm4.request_train_input(2, "cibhash")
    assert (dm4.views, dm4.train_transform) == (2, "cibhash")
    with pytest.raises(ValueError, match="unknown train transform 'simclr'"):
        dm4.request_train_input(2, "simclr")
    with pytest.raises(ValueError, match="views must be an int >= 1"):
        dm4.request_train_input(0, None)
    with pytest.warns(UserWarning, match="deterministic"):
        make(root, protocol="greedyhash", views=2)


def test_no_read_of_the_trainers_model():
    """The model -> data hand-over is request_train_input(); the datamodules never reach for the model."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datamodules")
    for name in os.listdir(here):
        if name.endswith(".py"):
            assert "lightning_module" not in open(os.path.join(here, name)).read(), name


def test_eval_loaders_are_ddp_friendly(cifar_root):
    """Under DDP Lightning swaps in a DistributedSampler, which pads by repeating indices; the index
    lets the callback drop the repeats. Our loaders must survive Lightning's re-instantiation."""
    from lightning.pytorch.utilities.data import _update_dataloader

    root, _ = cifar_root
    dm = make(root, protocol="dch", query_size=2, train_size=5)  # database of 130 (odd-sized per rank pad)
    ds = dm.database_set
    per_rank = []
    for rank in range(3):
        sampler = DistributedSampler(ds, num_replicas=3, rank=rank, shuffle=False)
        loader = _update_dataloader(dm.database_dataloader(), sampler)
        assert loader.batch_size == dm.eval_batch_size and not loader.drop_last
        per_rank.append(torch.cat([b[2] for b in loader]))
    gathered = torch.cat(per_rank)
    assert len(gathered) == 132  # padded with repeats
    assert torch.unique(gathered).tolist() == list(range(130))
    tsampler = DistributedSampler(dm.train_set, num_replicas=2, rank=1, shuffle=True, seed=0)
    tl = _update_dataloader(dm.train_dataloader(), tsampler)
    assert tl.drop_last and len(torch.cat([b[2] for b in tl])) == (50 // 2) // 4 * 4


def test_worker_processes_and_two_views(cifar_root):
    root, _ = cifar_root
    dm = make(root, protocol="bihalf_ii", query_size=5, train_size=3, train_transform="cibhash", views=2,
              num_workers=2, batch_size=5)
    tl = dm.train_dataloader()
    # fresh train workers every epoch: their seeds follow (seed, epoch); eval workers persist
    assert tl.num_workers == 2 and not tl.persistent_workers and dm.query_dataloader().persistent_workers
    batches = list(tl)
    assert len(batches) == 6 and all(len(b[0]) == 2 and b[0][1].shape == (5, 3, 32, 32) for b in batches)
    assert sorted(torch.cat([b[2] for b in batches]).tolist()) == list(range(30))
    ql = dm.query_dataloader()
    assert torch.cat([b[2] for b in ql]).tolist() == list(range(50))


def test_datamodule_is_picklable_for_ddp_spawn(cifar_root):
    root, _ = cifar_root
    dm = make(root, protocol="bihalf_ii", query_size=5, train_size=3, train_transform="cibhash", views=2)
    clone = pickle.loads(pickle.dumps(dm))
    assert np.array_equal(clone.query_set.pool_indices, dm.query_set.pool_indices)
    assert len(clone.train_set[0][0]) == 2


def test_prepare_data_downloads_only_when_asked_and_missing(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kw):
        calls.append((url, filename, md5))
        write_cifar(download_root)

    monkeypatch.setattr(tvu, "download_and_extract_archive", fake_download)
    CIFAR10(root=str(tmp_path), download=False).prepare_data()
    assert calls == []
    dm = CIFAR10(root=str(tmp_path), download=True, protocol="greedyhash", **SMALL)
    dm.prepare_data()
    assert len(calls) == 1 and calls[0][0].endswith("cifar-10-python.tar.gz") and calls[0][2]
    dm.prepare_data()  # files now present: no second download
    assert len(calls) == 1
    dm.setup()
    assert len(dm.query_set) == 50


def test_cli_style_construction_with_jsonargparse(cifar_root):
    """LightningCLI builds the datamodule from class_path + init_args; base args must be visible."""
    from jsonargparse import ArgumentParser

    from datamodules import HashDataModule

    root, _ = cifar_root
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(HashDataModule, "data")
    cfg = parser.parse_args(["--data", "datamodules.CIFAR10", f"--data.root={root}",
                             "--data.protocol=dch", "--data.batch_size=8", "--data.query_size=2",
                             "--data.train_size=5", "--data.top_k=all", "--data.verify_checksums=false"])
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in 4.49
    dm = instantiate(cfg).data
    assert isinstance(dm, CIFAR10) and dm.batch_size == 8 and dm.top_k is None and dm.protocol == "dch"
    assert dm.verify_checksums is False
    assert dm.hparams["protocol"] == "dch" and dm.hparams["verify_checksums"] is False


def test_short_class_names_resolve_after_discover():
    """The Lightning CLI calls ``datamodules.discover()``, which imports every dataset module, since LightningCLI
    resolves short class_path names only among imported subclasses."""
    import datamodules
    import datamodules.base as base
    from jsonargparse import ArgumentParser

    datamodules.discover()
    names = ["CIFAR10", "MNIST", "FashionMNIST", "ImageList", "Flickr25k"]
    p = ArgumentParser(exit_on_error=False)
    p.add_subclass_arguments(base.HashDataModule, "data")
    required = {"ImageList": ["--data.name=x", "--data.root=.", "--data.num_classes=2", "--data.top_k=all",
                              '--data.lists={"query": "q.txt", "database": "db.txt"}']}
    assert [p.parse_args(["--data", n, *required.get(n, [])]).data.class_path for n in names] == [
        f"datamodules.{n}" for n in names]


# ---------------------------------------------------------------------------------------------- unpickling
@pytest.mark.parametrize("victim", ["data_batch_1", "test_batch", "batches.meta"])
def test_a_crafted_batch_is_refused_and_runs_nothing(tmp_path, victim):
    """A pickle whose __reduce__ calls open(marker, 'w'): plain pickle.load would create the file. The
    data-only unpickler refuses the global before calling anything, md5 check or not."""
    write_cifar(str(tmp_path))
    marker = tmp_path / "pwned"
    with open(tmp_path / "cifar-10-batches-py" / victim, "wb") as f:
        pickle.dump({b"data": CreatesFile(str(marker)), b"labels": [0]}, f, protocol=2)
    for verify in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the md5 mismatch warning
            with pytest.raises(UnsafePickleError) as e:
                make(str(tmp_path), protocol="greedyhash", verify_checksums=verify)
        msg = str(e.value)
        assert victim in msg and "refused to load 'io.open'" in msg and "nothing from it was run" in msg
        assert "Expected" in msg and isinstance(e.value, DatasetFormatError)
        assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_data_pickles_of_every_protocol_still_load(tmp_path, protocol):
    """numpy arrays pickle through _reconstruct (protocol <= 4) or _frombuffer (5); both are admitted."""
    arrays = write_cifar(str(tmp_path))
    d = tmp_path / "cifar-10-batches-py"
    with open(d / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="bytes")  # our own fixture: trusted
    batch[b"labels"] = np.asarray(batch[b"labels"], dtype=np.int64)  # numpy scalars/arrays too
    with open(d / "test_batch", "wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    dm = make(str(tmp_path), protocol="greedyhash")
    assert np.array_equal(dm.query_set.labels.argmax(1).numpy(), arrays["labels"][150:])
