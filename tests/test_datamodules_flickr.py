"""Flickr25k from mirflickr images + annotation files, Bi-half's img/targets lists, or one list file."""

import os
import warnings

import numpy as np
import pytest
import torch

from datamodules import DatasetFormatError, DatasetNotFoundError, Flickr25k
from tests.data_fixtures import (FLICKR_CONCEPTS, decode_color, set_up, write_bihalf_flickr_lists,
                                 write_list_dataset, write_mirflickr)

# write_mirflickr leaves every 7th image unlabelled, as in MIRFlickr; the warning is tested once below
pytestmark = pytest.mark.filterwarnings("ignore:.*rows have no label")

N = 60
SMALL = dict(image_size=16, num_workers=0, batch_size=4, normalize="none", num_images=N,
             query_size=10, train_size=20)


def make(root, **kw):
    return set_up(Flickr25k, root, SMALL, **kw)


def test_annotations_layout_labels_sizes_and_rules(tmp_path):
    labels = write_mirflickr(str(tmp_path), N)
    dm = make(str(tmp_path))
    assert dm.protocol == "bihalf" and dm.num_classes == 24 and dm.top_k is None
    assert dm.split_sizes == {"train": 20, "query": 10, "database": 50}
    q, db, tr = (s.pool_indices for s in (dm.query_set, dm.database_set, dm.train_set))
    assert np.intersect1d(q, db).size == 0 and np.isin(tr, db).all()
    assert len(np.union1d(q, db)) == N  # every image is a query or in the database
    # pool row k is im{k+1}.jpg; labels come from the concept files (README / *_r1 ignored)
    for ds in (dm.query_set, dm.database_set):
        assert ds.labels.dtype == torch.float32
        assert np.array_equal(ds.labels.numpy(), labels[ds.pool_indices])
    assert dm.class_names == list(FLICKR_CONCEPTS)
    img, label, idx = dm.query_set[3]
    assert idx == 3 and decode_color(img[:, 8, 8] * 255) == q[3]
    with np.load(dm.split_file) as f:
        assert np.array_equal(f["train"], tr) and '"pool_size": 60' in str(f["meta"])
    x, y, i = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and y.shape == (4, 24)


def test_seeded_reproducible_and_unlabelled_images(tmp_path):
    labels = write_mirflickr(str(tmp_path), N)
    a, b, c = make(str(tmp_path), seed=5), make(str(tmp_path), seed=5), make(str(tmp_path), seed=6)
    assert np.array_equal(a.query_set.pool_indices, b.query_set.pool_indices)
    assert not np.array_equal(a.query_set.pool_indices, c.query_set.pool_indices)
    kept = make(str(tmp_path), drop_unlabeled=True, seed=5)
    assert os.path.basename(kept.split_file).startswith("flickr25k-labeled_bihalf_seed5")
    n_labelled = int((labels.sum(1) > 0).sum())
    assert len(kept.query_set) + len(kept.database_set) == n_labelled < N
    assert torch.all(kept.database_set.labels.sum(1) > 0)


def test_bihalf_lists_and_single_list_sources(tmp_path):
    labels = write_mirflickr(str(tmp_path / "a"), N)
    write_bihalf_flickr_lists(str(tmp_path / "b"), labels)
    dm = make(str(tmp_path / "b"))
    assert dm.split_sizes == {"train": 20, "query": 10, "database": 50}
    assert np.array_equal(dm.database_set.labels.numpy(), labels[dm.database_set.pool_indices])
    assert decode_color(dm.database_set[0][0][:, 8, 8] * 255) == dm.database_set.pool_indices[0]
    # same labels, same seed -> same split whatever the source
    ann = make(str(tmp_path / "a"))
    assert np.array_equal(ann.query_set.pool_indices, dm.query_set.pool_indices)
    # one list file '<path> <24 labels>'
    root = tmp_path / "c"
    written = write_list_dataset(str(root), 24, n_query=30, n_train=0, n_database=30,
                                 names={"query": "all.txt", "database": "rest.txt", "train": "none.txt"})
    with open(root / "all.txt", "a") as f:
        f.write((root / "rest.txt").read_text())
    dm = make(str(root), list_file="all.txt", query_size=5, train_size=10)
    assert dm.split_sizes == {"train": 10, "query": 5, "database": 55}
    assert written["query"]["labels"].shape[1] == 24


def test_nothing_found_names_all_layouts(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        make(str(tmp_path))
    msg = str(e.value)
    assert os.path.join(str(tmp_path), "mirflickr25k_annotations_v080") in msg
    assert "img.txt" in msg and "targets.txt" in msg and "1-based image numbers" in msg
    assert "press.liacs.nl/mirflickr" in msg


def test_annotation_file_errors(tmp_path):
    write_mirflickr(str(tmp_path), N)
    ann = tmp_path / "mirflickr25k_annotations_v080"
    os.remove(ann / "sunset.txt")
    with pytest.raises(DatasetNotFoundError, match=r"(?s)Missing: sunset.txt.*one 1-based image number per line"):
        make(str(tmp_path))
    (ann / "sunset.txt").write_text("3\nseven\n")
    with pytest.raises(DatasetFormatError, match=r"sunset.txt:2: expected a 1-based image number, found 'seven'"):
        make(str(tmp_path))
    (ann / "sunset.txt").write_text(f"3\n{N + 1}\n")
    with pytest.raises(DatasetFormatError, match=rf"sunset.txt:2: image number {N + 1} is outside 1..{N}"):
        make(str(tmp_path))


def test_missing_image_is_an_error_naming_it(tmp_path):
    write_mirflickr(str(tmp_path), N)
    os.remove(tmp_path / "mirflickr" / "im17.jpg")
    os.remove(tmp_path / "mirflickr" / "im30.jpg")
    with pytest.raises(DatasetNotFoundError, match=r"im17\.jpg.*image number 17"):
        make(str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"(?s)2 of 60 images not found.*im17.jpg.*im30.jpg"):
        make(str(tmp_path), check_images="all")


def test_bihalf_targets_must_match_img_txt(tmp_path):
    labels = write_mirflickr(str(tmp_path / "a"), N)
    write_bihalf_flickr_lists(str(tmp_path), labels[:-1])
    with open(tmp_path / "img.txt", "a") as f:
        f.write("im999.jpg\n")
    with pytest.raises(DatasetFormatError, match="img.txt has 60 entries but .*targets.txt has 59 label lines"):
        make(str(tmp_path))


def test_deephash_mirflickr_lists_38_labels(tmp_path):
    write_list_dataset(str(tmp_path / "mirflickr"), 38, n_query=5, n_train=7, n_database=12,
                       train_in_database=False, prefix="", list_dir=str(tmp_path))
    dm = Flickr25k(root=str(tmp_path), protocol="deephash_mirflickr", image_size=16, num_workers=0,
                   batch_size=4, list_dir=str(tmp_path))
    dm.setup()
    assert dm.num_classes == 38 and dm.top_k is None
    assert dm.split_sizes == {"train": 7, "query": 5, "database": 12}
    assert dm.split_report["train∩database"] == 0


@pytest.mark.filterwarnings("default")
def test_images_without_any_label_are_counted_once(tmp_path):
    labels = write_mirflickr(str(tmp_path / "a"), N)
    write_bihalf_flickr_lists(str(tmp_path / "b"), labels)
    n = int((labels.sum(1) == 0).sum())
    for root, where in ((tmp_path / "a", "mirflickr25k_annotations_v080"), (tmp_path / "b", "targets.txt")):
        with pytest.warns(UserWarning) as rec:
            make(str(root))
        msgs = [str(w.message) for w in rec if "have no label" in str(w.message)]
        assert msgs == [f"{root / where}: {n} of {N} rows have no label; they are never relevant to any query "
                        f"and lower mAP. Remove them or check the label columns"]
    with warnings.catch_warnings():  # dropped: nothing to warn about
        warnings.filterwarnings("error", message=".*have no label")
        make(str(tmp_path / "a"), drop_unlabeled=True)
