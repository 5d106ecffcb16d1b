"""NUS-WIDE and MS-COCO from list files + JPEGs written to a temp dir in the standard format."""

import os

import numpy as np
import pytest
import torch

from data_fixtures import decode_color, set_up, write_list_dataset
from datamodules import COCO, NUSWIDE, DatasetFormatError, DatasetNotFoundError

SMALL = dict(image_size=16, num_workers=0, batch_size=4, normalize="none")
HASHNET_PREFIX = "/home/caozhangjie/run-czj/dataset/coco/"


def make(cls, root, **kw):
    return set_up(cls, root, SMALL, **kw)


def test_nuswide_lists_sizes_labels_and_images(tmp_path):
    written = write_list_dataset(str(tmp_path), 21, n_query=6, n_train=8, n_database=20)
    dm = make(NUSWIDE, str(tmp_path))
    assert dm.protocol == "nuswide_21" and dm.num_classes == 21 and dm.top_k == 5000
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


def test_list_dir_and_other_protocols(tmp_path):
    write_list_dataset(str(tmp_path), 81, list_dir=str(tmp_path / "lists81"))
    with pytest.raises(DatasetFormatError, match=r"test.txt:1: found 81 label columns, expected 21"):
        make(NUSWIDE, str(tmp_path), list_dir=str(tmp_path / "lists81"))
    dm = make(NUSWIDE, str(tmp_path), list_dir=str(tmp_path / "lists81"), protocol="nuswide_81")
    assert dm.num_classes == 81 and dm.query_set.labels.shape[1] == 81


def test_missing_list_error_names_path_format_and_source(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        make(NUSWIDE, str(tmp_path))
    msg = str(e.value)
    assert os.path.join(str(tmp_path), "test.txt") in msg
    assert "21 space-separated 0/1 labels" in msg and "relative to" in msg
    assert "DeepHash-pytorch" in msg and "DSDH_PyTorch" in msg and "list_dir" in msg
    with pytest.raises(DatasetNotFoundError) as e:
        make(COCO, str(tmp_path))
    msg = str(e.value)
    assert "test_coco.txt" in msg and "80 space-separated" in msg and "HashNet" in msg and "cocodataset.org" in msg


def test_malformed_list_lines_are_reported_with_file_and_line(tmp_path):
    write_list_dataset(str(tmp_path), 21)
    db = tmp_path / "database.txt"
    lines = db.read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0] + " 2"
    db.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"database.txt:4: labels must be 0 or 1, found '2'"):
        make(NUSWIDE, str(tmp_path))
    lines[3] = "images/only_a_path.jpg 1 0"
    db.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"database.txt:4: expected an image path and 21 labels"):
        make(NUSWIDE, str(tmp_path))
    db.write_text("\n\n")
    with pytest.raises(DatasetFormatError, match="the list is empty"):
        make(NUSWIDE, str(tmp_path))


def test_missing_images_first_all_and_lazy(tmp_path):
    written = write_list_dataset(str(tmp_path), 21)
    gone = [written["database"]["paths"][k] for k in (2, 9, 11)]
    for rel in gone:
        os.remove(os.path.join(str(tmp_path), rel))
    with pytest.raises(DatasetNotFoundError) as e:
        make(NUSWIDE, str(tmp_path))
    msg = str(e.value)
    assert "database.txt:3" in msg and gone[0] in msg and "check_images='all'" in msg
    with pytest.raises(DatasetNotFoundError) as e:
        make(NUSWIDE, str(tmp_path), check_images="all")
    msg = str(e.value)
    assert "3 of 20 images not found" in msg and all(g in msg for g in gone)
    report = os.path.join(str(tmp_path), "splits", "missing_images_database.txt")
    assert os.path.isfile(report) and len(open(report).read().splitlines()) == 3
    dm = make(NUSWIDE, str(tmp_path), check_images="none")  # nothing skipped: fails when loaded
    with pytest.raises(FileNotFoundError, match=r"database.txt:3"):
        dm.database_set[2]
    assert dm.database_set[0][2] == 0
    # an unreadable image names its list entry too
    with open(os.path.join(str(tmp_path), written["database"]["paths"][4]), "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(OSError, match=r"cannot read image .*database.txt:5"):
        dm.database_set[4]


def test_coco_bihalf_names_and_hashnet_absolute_prefix(tmp_path):
    names = {"train": "train_coco.txt", "query": "test_coco.txt", "database": "database_coco.txt"}
    write_list_dataset(str(tmp_path), 80, names=names, prefix="train2014/COCO_",
                       path_prefix_in_list=HASHNET_PREFIX, train_in_database=False)
    with pytest.raises(DatasetNotFoundError, match="strip_prefix"):
        make(COCO, str(tmp_path))
    dm = make(COCO, str(tmp_path), strip_prefix=HASHNET_PREFIX)
    assert dm.protocol == "coco" and dm.num_classes == 80 and dm.top_k == 5000
    assert dm.split_sizes == {"train": 8, "query": 6, "database": 20}
    assert dm.split_report["train∩database"] == 0  # coco: the lists decide, no warning either way
    assert dm.train_set.path(0).startswith(os.path.join(str(tmp_path), "train2014"))


def test_overlap_rules_are_checked_with_warnings(tmp_path):
    written = write_list_dataset(str(tmp_path), 21, train_in_database=False)
    with pytest.warns(UserWarning, match=r"expects train ⊂ database but 8 train images are not in the database"):
        make(NUSWIDE, str(tmp_path))
    with open(tmp_path / "database.txt", "a") as f:
        f.write(f"{written['query']['paths'][0]} {' '.join(['1'] * 21)}\n")
    with pytest.warns(UserWarning) as rec:
        make(NUSWIDE, str(tmp_path))
    assert any("1 query images also appear in the database" in str(w.message) for w in rec)


def test_size_overrides_do_not_apply_to_list_protocols(tmp_path):
    with pytest.raises(ValueError, match="list files"):
        NUSWIDE(root=str(tmp_path), query_size=5)
    with pytest.raises(ValueError, match="check_images"):
        NUSWIDE(root=str(tmp_path), check_images="some")
