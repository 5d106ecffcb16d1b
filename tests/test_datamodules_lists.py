"""List-file datasets through ``ImageList``, configured exactly as ``experiments/data/<name>.yaml`` says, on
miniatures written in each source's real list format (relative DeepHash-pytorch paths, HashNet's absolute
``/home/caozhangjie/...`` and ``./data/nuswide_81/`` prefixes)."""

import json
import os

import numpy as np
import pytest
import torch

from datamodules import DatasetFormatError, DatasetNotFoundError, ImageList, image_dataset
from datamodules.transforms import build_transform
from tests.data_fixtures import (data_config, decode_color, write_jpeg, write_list_dataset,
                                 write_truncated_jpeg)

SMALL = dict(image_size=16, num_workers=0, batch_size=4, normalize="none")
HASHNET_COCO = "/home/caozhangjie/run-czj/dataset/coco/"
HASHNET_IMAGENET = "/home/caozhangjie/run-czj/dataset/imagenet/"
HASHNET_NUSWIDE = "./data/nuswide_81/"
BIHALF_COCO_NAMES = {"train": "train_coco.txt", "query": "test_coco.txt", "database": "database_coco.txt"}


def make(config: str, root, **kw):
    """The YAML's ImageList with root (and list_dir) pointed at the miniature, after setup("fit")."""
    args = {**data_config(config), "root": str(root), **SMALL, **kw}
    dm = ImageList(**args)
    dm.setup("fit")
    return dm


def test_every_list_yaml_builds_an_image_list_through_the_cli_parser(tmp_path):
    """The data YAMLs are valid LightningCLI configs: jsonargparse instantiates ImageList from each."""
    from jsonargparse import ArgumentParser

    from datamodules import HashDataModule
    from tests.data_fixtures import EXPERIMENTS

    expect = {"coco": (80, 5000), "nuswide": (21, 5000), "nuswide_81": (81, 5000), "imagenet100": (100, 1000)}
    for name, (classes, top_k) in expect.items():
        parser = ArgumentParser(exit_on_error=False)
        parser.add_argument("--config", action="config")
        parser.add_subclass_arguments(HashDataModule, "data")
        cfg = parser.parse_args(["--config", str(EXPERIMENTS / "data" / f"{name}.yaml"),
                                 f"--data.root={tmp_path}", "--data.batch_size=8"])
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
        dm = instantiate(cfg).data
        assert isinstance(dm, ImageList) and (dm.num_classes, dm.top_k) == (classes, top_k), name
        assert dm.list_where_from.startswith(("the ", "DCH's")) and "http" in dm.list_where_from, name


def test_nuswide_21_lists_sizes_labels_and_images(tmp_path):
    written = write_list_dataset(str(tmp_path), 21, n_query=6, n_train=8, n_database=20)
    dm = make("nuswide", tmp_path)
    assert (dm.dataset_name, dm.protocol, dm.num_classes, dm.top_k) == ("nuswide", "nuswide_21", 21, 5000)
    assert dm.split_sizes == {"train": 8, "query": 6, "database": 20}
    for split, ds in (("query", dm.query_set), ("database", dm.database_set), ("train", dm.train_set)):
        assert ds.labels.dtype == torch.float32 and ds.labels.shape == (len(ds), 21)
        assert np.array_equal(ds.labels.numpy(), written[split]["labels"])
    # item i of a split is the image on line i of its list (identity encoded in the pixel colour)
    for i in (0, 5, 19):
        img, label, idx = dm.database_set[i]
        assert idx == i and img.shape == (3, 16, 16)
        assert decode_color(img[:, 8, 8] * 255) == written["database"]["ids"][i]
    assert dm.split_report["train∩database"] == 8 and dm.split_report["query∩database"] == 0
    # non-square JPEGs batch fine through resize_center_crop
    x, y, idx = next(iter(dm.query_dataloader()))
    assert x.shape == (4, 3, 16, 16) and y.shape == (4, 21) and idx.tolist() == [0, 1, 2, 3]
    x, y, idx = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16)
    assert dm.val_dataloader() == []  # no validation list and no val_queries


def test_nuswide_81_hashnet_paths_and_a_label_set_mismatch(tmp_path):
    write_list_dataset(str(tmp_path), 81, list_dir=str(tmp_path / "lists81"), path_prefix_in_list=HASHNET_NUSWIDE)
    with pytest.raises(DatasetFormatError, match=r"test.txt:1: found 81 label columns, expected 21"):
        make("nuswide", tmp_path, list_dir=str(tmp_path / "lists81"))
    dm = make("nuswide_81", tmp_path, list_dir=str(tmp_path / "lists81"))  # strip_prefix from the YAML
    assert dm.num_classes == 81 and dm.query_set.labels.shape[1] == 81 and dm.top_k == 5000
    assert dm.query_set.paths[0].startswith(os.path.join(str(tmp_path), "images"))


def test_imagenet100_hashnet_lists(tmp_path):
    write_list_dataset(str(tmp_path), 100, n_query=5, n_train=6, n_database=12, prefix="image/n0_",
                       path_prefix_in_list=HASHNET_IMAGENET)
    dm = make("imagenet100", tmp_path)
    assert (dm.num_classes, dm.top_k, dm.protocol) == (100, 1000, "hashnet")
    assert dm.split_sizes == {"train": 6, "query": 5, "database": 12}


def test_missing_list_error_names_path_format_and_source(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        make("nuswide", tmp_path)
    msg = str(e.value)
    assert os.path.join(str(tmp_path), "test.txt") in msg
    assert "21 space-separated 0/1 labels" in msg and "relative to" in msg
    assert "DeepHash-pytorch" in msg and "DSDH_PyTorch" in msg and "list_dir" in msg
    with pytest.raises(DatasetNotFoundError) as e:
        make("coco", tmp_path)
    msg = str(e.value)
    assert "test_coco.txt" in msg and "80 space-separated" in msg and "HashNet" in msg and "cocodataset.org" in msg
    for name in ("nuswide_81", "imagenet100"):
        with pytest.raises(DatasetNotFoundError, match="(?s)Where to get it: .*https://github.com/th"):
            make(name, tmp_path)


def test_malformed_list_lines_are_reported_with_file_and_line(tmp_path):
    write_list_dataset(str(tmp_path), 21)
    db = tmp_path / "database.txt"
    lines = db.read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0] + " 2"
    db.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"database.txt:4: labels must be 0 or 1, found '2'"):
        make("nuswide", tmp_path)
    lines[3] = "images/only_a_path.jpg 1 0"
    db.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"database.txt:4: expected an image path and 21 labels"):
        make("nuswide", tmp_path)
    db.write_text("\n\n")
    with pytest.raises(DatasetFormatError, match="the list is empty"):
        make("nuswide", tmp_path)


def test_rows_without_any_label_are_counted_once_per_file(tmp_path):
    write_list_dataset(str(tmp_path), 21)
    db = tmp_path / "database.txt"
    lines = db.read_text().splitlines()
    for k in (2, 7, 11):
        lines[k] = lines[k].split()[0] + " " + " ".join(["0"] * 21)
    db.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning) as rec:
        make("nuswide", tmp_path)
    msgs = [str(w.message) for w in rec if "have no label" in str(w.message)]
    assert msgs == [f"{db}: 3 of 20 rows have no label; they are never relevant to any query and lower mAP. "
                    "Remove them or check the label columns"]


def test_missing_and_corrupt_images(tmp_path):
    written = write_list_dataset(str(tmp_path), 21)
    gone = [written["database"]["paths"][k] for k in (2, 9, 11)]
    for rel in gone:
        os.remove(os.path.join(str(tmp_path), rel))
    with pytest.raises(DatasetNotFoundError) as e:
        make("nuswide", tmp_path)
    msg = str(e.value)
    assert "database.txt:3" in msg and gone[0] in msg and "check_images='all'" in msg
    with pytest.raises(DatasetNotFoundError) as e:
        make("nuswide", tmp_path, check_images="all")
    msg = str(e.value)
    assert "3 of 20 images not found" in msg and all(g in msg for g in gone)
    report = os.path.join(str(tmp_path), "splits", "missing_images_database.txt")
    assert os.path.isfile(report) and len(open(report).read().splitlines()) == 3
    dm = make("nuswide", tmp_path, check_images="none")  # nothing skipped: fails when loaded
    with pytest.raises(DatasetNotFoundError, match=r"image not found: .*database.txt:3"):
        dm.database_set[2]
    assert dm.database_set[0][2] == 0
    # an unreadable or truncated image is a DatasetFormatError naming the file, its entry and the remedy
    bad, cut = (os.path.join(str(tmp_path), written["database"]["paths"][k]) for k in (4, 5))
    with open(bad, "wb") as f:
        f.write(b"not a jpeg")
    write_truncated_jpeg(cut)
    for i, path in ((4, bad), (5, cut)):
        with pytest.raises(DatasetFormatError) as e:
            dm.database_set[i]
        msg = str(e.value)
        assert f"cannot read image {path} (list entry " in msg and f"database.txt:{i + 1})" in msg
        assert "re-download it, or remove its entry from the list" in msg
    # ... and survives a DataLoader worker: same class, our message inside
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dm.database_set, [0, 4]), batch_size=2,
                                         num_workers=1)
    with pytest.raises(DatasetFormatError, match=r"(?s)cannot read image .*database.txt:5\).*re-download"):
        next(iter(loader))


def test_coco_bihalf_names_and_hashnet_absolute_prefix(tmp_path):
    write_list_dataset(str(tmp_path), 80, names=BIHALF_COCO_NAMES, prefix="train2014/COCO_",
                       path_prefix_in_list=HASHNET_COCO, train_in_database=False)
    with pytest.raises(DatasetFormatError, match=r"test_coco.txt:1: .* absolute path outside the image root.*strip_prefix"):
        make("coco", tmp_path, strip_prefix=None)
    dm = make("coco", tmp_path)  # the YAML's strip_prefix
    assert (dm.dataset_name, dm.protocol, dm.num_classes, dm.top_k) == ("coco", "hashnet", 80, 5000)
    assert dm.split_sizes == {"train": 8, "query": 6, "database": 20}
    assert dm.split_report["train∩database"] == 0  # coco: the lists decide, no warning either way
    assert dm.train_set.paths[dm.train_set.pool_indices[0]].startswith(os.path.join(str(tmp_path), "train2014"))


def test_overlap_rules_are_checked_with_warnings(tmp_path):
    written = write_list_dataset(str(tmp_path), 21, train_in_database=False)
    with pytest.warns(UserWarning, match=r"expects train ⊂ database but 8 train images are not in the database"):
        make("nuswide", tmp_path)
    with open(tmp_path / "database.txt", "a") as f:
        f.write(f"{written['query']['paths'][0]} {' '.join(['1'] * 21)}\n")
    with pytest.warns(UserWarning) as rec:
        make("nuswide", tmp_path)
    assert any("1 query images also appear in the database" in str(w.message) for w in rec)


def test_size_overrides_and_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="list files"):
        make("nuswide", tmp_path, query_size=5)
    with pytest.raises(ValueError, match="check_images"):
        make("nuswide", tmp_path, check_images="some")
    base = dict(name="mine", root=str(tmp_path), num_classes=3, top_k="all",
                lists={"query": "q.txt", "database": "db.txt"})
    for bad, match in ((dict(lists={"query": "q.txt"}), "missing database"),
                       (dict(lists={"query": "q.txt", "database": "d.txt", "valid": "v.txt"}), "unknown split.*valid"),
                       (dict(lists={"query": ["q.txt", ""], "database": "d.txt"}), "lists.query must be a file name"),
                       (dict(num_classes=0), "num_classes"), (dict(name="my data"), "ImageList name"),
                       (dict(top_k=0), "top_k"), (dict(train_in_database="yes"), "train_in_database"),
                       (dict(name="cifar10"), "built-in dataset")):
        with pytest.raises(ValueError, match=match):
            ImageList(**{**base, **bad})


@pytest.mark.filterwarnings("ignore:.*(also appear in the query list|expects train)")
def test_validation_queries_drawn_from_the_train_list_never_test_queries(tmp_path):
    """nuswide_21 has no validation list: val_queries draws them from the train list, excluding any train
    entry that is also a test query, and records the draw in a split file."""
    written = write_list_dataset(str(tmp_path), 21, n_query=6, n_train=12, n_database=30)
    with open(tmp_path / "train.txt", "a") as f:  # a train list that (wrongly) holds 4 test queries
        for rel, lab in zip(written["query"]["paths"][:4], written["query"]["labels"][:4]):
            f.write(f"{rel} {' '.join(str(int(b)) for b in lab)}\n")
    dm = make("nuswide", tmp_path, val_queries=10)
    held = make("nuswide", tmp_path, val_queries=10, val_holdout=True)
    assert dm.has_validation and dm.splits_for("fit") == ("train", "val_query", "val_database")
    queries = set(dm.query_set.paths[i] for i in dm.query_set.pool_indices)
    vq = [dm.val_query_set.paths[i] for i in dm.val_query_set.pool_indices]
    vdb = [dm.val_database_set.paths[i] for i in dm.val_database_set.pool_indices]
    assert len(vq) == 10 and not set(vq) & queries and not set(vq) & set(vdb)
    assert len(vq) + len(vdb) == len(dm.train_set) == 16  # no holdout: train is the paper's list
    assert len(held.train_set) == 6 and np.array_equal(held.val_query_set.pool_indices, dm.val_query_set.pool_indices)
    assert not set(held.train_set.pool_indices) & set(held.val_query_set.pool_indices)
    # the eval transform for both validation sets; the draw is recorded in the split file
    assert repr(dm.val_query_set.transform) == repr(dm.val_database_set.transform) == repr(dm.query_set.transform)
    with np.load(dm.split_file) as f:
        meta = json.loads(str(f["meta"]))
        assert np.array_equal(f["val_query"], dm.val_query_set.pool_indices)
    assert os.path.basename(dm.split_file) == "nuswide_nuswide_21_seed0_val10.npz"
    assert meta["val_queries"] == 10 and meta["pool_size"] == 16
    assert [loader.dataset for loader in dm.val_dataloader()] == [dm.val_query_set, dm.val_database_set]
    with pytest.raises(ValueError, match="val_queries=30 but the train list .* has only 12"):
        make("nuswide", tmp_path, val_queries=30)


def test_file_fingerprints_follow_the_image_files_and_labels(tmp_path):
    written = write_list_dataset(str(tmp_path), 21)
    dm = make("nuswide", tmp_path)
    fp = dm.query_set.fingerprint()
    assert fp == make("nuswide", tmp_path).query_set.fingerprint() == dm.query_set.fingerprint()
    assert fp != dm.database_set.fingerprint()
    path = os.path.join(str(tmp_path), written["query"]["paths"][2])
    st = os.stat(path)
    write_jpeg(path, 999, size=(40, 40))  # replaced: new size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert dm.query_set.fingerprint() != fp
    write_jpeg(path, 2, size=(24 + (2 % 3) * 4, 16 + (2 % 2) * 8))  # same bytes as before ...
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert dm.query_set.fingerprint() == fp  # ... same size and mtime: unchanged
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))  # touched
    assert dm.query_set.fingerprint() != fp


def test_raw_images_and_eval_datasets_read_from_the_pool(tmp_path):
    written = write_list_dataset(str(tmp_path), 21)
    dm = make("nuswide", tmp_path)
    dm.replace_dataset("train", torch.utils.data.TensorDataset(torch.zeros(len(dm.train_set), 2)))
    img = dm.image("train", 3)
    assert img.mode == "RGB" and img.size == (24 + (written["train"]["ids"][3] % 3) * 4, img.size[1])
    assert decode_color(img.getpixel((5, 5))) == written["train"]["ids"][3]
    ev = dm.eval_dataset("train")  # deterministic eval transform, from the images, not the replacement
    assert repr(ev.transform) == repr(dm.query_set.transform) and len(ev) == 8
    assert decode_color(ev[3][0][:, 8, 8] * 255) == written["train"]["ids"][3]


def test_image_dataset_from_a_list_file_or_a_folder(tmp_path):
    written = write_list_dataset(str(tmp_path), 21)
    tf = build_transform("resize", False, 16, "none")
    ds = image_dataset(str(tmp_path / "test.txt"), tf)  # 21 label columns counted; paths relative to the list
    assert len(ds) == 6 and ds.labels.shape == (6, 21)
    assert np.array_equal(ds.labels.numpy(), written["query"]["labels"])
    img, label, idx = ds[2]
    assert img.shape == (3, 16, 16) and idx == 2 and decode_color(img[:, 8, 8] * 255) == written["query"]["ids"][2]
    folder = image_dataset(str(tmp_path / "images"), tf)
    assert len(folder) == 26 and folder.labels.shape == (26, 0)  # a folder has no labels
    assert folder.paths == sorted(folder.paths) and folder[0][0].shape == (3, 16, 16)
    assert image_dataset(str(tmp_path / "images"), tf, num_classes=4).labels.abs().sum() == 0
    with pytest.raises(DatasetNotFoundError, match="image list or folder not found"):
        image_dataset(str(tmp_path / "nothing"), tf)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(DatasetNotFoundError, match="images in the folder"):
        image_dataset(str(tmp_path / "empty"), tf)


def test_a_validation_list_is_ranked_against_the_database_list(tmp_path):
    written = write_list_dataset(str(tmp_path), 21, n_query=6, n_train=8, n_database=20)
    with open(tmp_path / "val.txt", "w") as f:  # 4 database images as validation queries
        for rel, lab in zip(written["database"]["paths"][:4], written["database"]["labels"][:4]):
            f.write(f"{rel} {' '.join(str(int(b)) for b in lab)}\n")
    cfg = data_config("nuswide")
    lists = {**cfg["lists"], "val_query": "val.txt"}
    dm = make("nuswide", tmp_path, lists=lists)
    assert dm.has_val_queries and dm.has_validation and dm.split_sizes["val_query"] == 4
    assert dm.dataset("val_database") is dm.database_set
    assert [l.dataset for l in dm.val_dataloader()] == [dm.val_query_set, dm.database_set]
    with pytest.raises(ValueError, match="val_queries does not apply"):
        make("nuswide", tmp_path, lists=lists, val_queries=3)
