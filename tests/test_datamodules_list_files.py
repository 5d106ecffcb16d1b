"""List files as users write them: a UTF-8 byte-order mark (Windows editors) is not part of the first path, and an
entry whose image lies outside the image root (``../``, an absolute path) is one error naming the file and line
unless the user opts in with ``data.allow_outside_root``."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datamodules import DatasetFormatError, Flickr25k, ImageList, image_dataset
from datamodules.transforms import build_transform
from tests.data_fixtures import decode_color, write_bihalf_flickr_lists, write_jpeg, write_list_dataset, write_mirflickr

REPO = Path(__file__).resolve().parent.parent
LIGHTNING = Path(sys.executable).parent / "lightning"
BOM = "\ufeff"
SMALL = dict(image_size=16, num_workers=0, batch_size=4, normalize="none")
pytestmark = pytest.mark.filterwarnings("ignore:.*rows have no label")
LISTS = {"train": "train.txt", "query": "test.txt", "database": "database.txt"}


def image_list(root, **kw):
    dm = ImageList(name="mini", root=str(root), num_classes=21, top_k="all", lists=LISTS, **SMALL, **kw)
    dm.setup("fit")
    return dm


def with_bom(path: Path) -> None:
    path.write_text(BOM + path.read_text(encoding="utf-8"), encoding="utf-8")


def test_a_list_starting_with_a_byte_order_mark_reads_its_first_path(tmp_path):
    written = write_list_dataset(str(tmp_path), 21)
    for name in LISTS.values():
        with_bom(tmp_path / name)
    assert (tmp_path / "test.txt").read_bytes().startswith(b"\xef\xbb\xbf")
    dm = image_list(tmp_path)
    assert dm.query_set.paths[0] == str(tmp_path / written["query"]["paths"][0])
    assert decode_color(dm.query_set[0][0][:, 8, 8] * 255) == written["query"]["ids"][0]
    # the same list given to `hashbench encode` (labels counted on the first line, which holds the mark)
    ds = image_dataset(str(tmp_path / "test.txt"), build_transform("resize", False, 16, "none"))
    assert ds.labels.shape == (6, 21) and np.array_equal(ds.labels.numpy(), written["query"]["labels"])


def test_flickr_files_with_a_byte_order_mark(tmp_path):
    labels = write_mirflickr(str(tmp_path / "ann"), 40, with_r1=False)
    for concept in (tmp_path / "ann" / "mirflickr25k_annotations_v080").iterdir():
        with_bom(concept)
    write_bihalf_flickr_lists(str(tmp_path / "bihalf"), labels)
    with_bom(tmp_path / "bihalf" / "img.txt")
    with_bom(tmp_path / "bihalf" / "targets.txt")
    for folder in ("ann", "bihalf"):
        dm = Flickr25k(root=str(tmp_path / folder), num_images=40, query_size=5, train_size=10, **SMALL)
        dm.setup("fit")
        q = dm.query_set.pool_indices
        assert np.array_equal(dm.query_set.labels.numpy(), labels[q]), folder


def outside_lines(root: Path):
    """The train list of a miniature with line 3 pointing out of the root (``../``) and line 5 an absolute path."""
    write_list_dataset(str(root / "data"), 21)
    write_jpeg(str(root / "elsewhere" / "a.jpg"), 1)
    train = root / "data" / "train.txt"
    lines = train.read_text().splitlines()
    labels = lines[0].split(" ", 1)[1]
    lines[2] = f"../elsewhere/a.jpg {labels}"
    lines[4] = f"{root / 'elsewhere' / 'a.jpg'} {labels}"
    train.write_text("\n".join(lines) + "\n")
    return train


def test_an_entry_outside_the_root_is_an_error_naming_file_and_line_unless_allowed(tmp_path):
    train = outside_lines(tmp_path)
    with pytest.raises(DatasetFormatError) as info:
        image_list(tmp_path / "data")
    msg = str(info.value)
    assert msg.startswith(f"{train}:3: the image path '../elsewhere/a.jpg' resolves to {tmp_path / 'elsewhere'}")
    assert "1 more line(s)" in msg and "allow_outside_root=true" in msg
    dm = image_list(tmp_path / "data", allow_outside_root=True)
    assert dm.train_set.paths[2] == dm.train_set.paths[4] == str(tmp_path / "elsewhere" / "a.jpg")
    lines = train.read_text().splitlines()
    train.write_text("\n".join(lines[:2] + lines[5:]) + "\n")  # without lines 3-5: read as before
    assert len(image_list(tmp_path / "data").train_set) == 5


def test_a_folder_inside_the_root_may_link_elsewhere(tmp_path):
    """Data roots often link to shared storage: the check is on the path as written, not where links lead."""
    write_list_dataset(str(tmp_path / "store"), 21)
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "store" / "images", tmp_path / "data" / "images")
    for name in LISTS.values():
        os.symlink(tmp_path / "store" / name, tmp_path / "data" / name)
    assert len(image_list(tmp_path / "data").query_set) == 6


def test_bihalf_flickr_names_outside_the_image_folder(tmp_path):
    labels = write_mirflickr(str(tmp_path / "x"), 30, with_r1=False)
    write_bihalf_flickr_lists(str(tmp_path), labels)
    img = tmp_path / "img.txt"
    img.write_text(img.read_text().replace("im2.jpg", "../im2.jpg", 1))
    write_jpeg(str(tmp_path / "im2.jpg"), 1)
    kw = dict(root=str(tmp_path), num_images=30, query_size=5, train_size=10, **SMALL)
    with pytest.raises(DatasetFormatError, match=rf"{img}:2: the image path '../im2.jpg'"):
        Flickr25k(**kw).setup("fit")
    Flickr25k(**kw, allow_outside_root=True).setup("fit")


# ---------------------------------------------------------------- the console command, as users type it
CONFIG = """\
seed_everything: 0
model:
  class_path: GreedyHash
  init_args: {{bits: 8, backbone: tiny_cnn, pretrained: false, freeze: false}}
data:
  class_path: ImageList
  init_args:
    name: mini
    root: {root}
    num_classes: 21
    top_k: all
    lists: {{train: train.txt, query: test.txt, database: database.txt}}
    image_size: 16
    num_workers: 0
    batch_size: 4
trainer:
  accelerator: cpu
  max_epochs: 1
  num_sanity_val_steps: 0
  enable_progress_bar: false
  enable_model_summary: false
  logger: false
"""


def lightning_fit(folder: Path, *args: str) -> subprocess.CompletedProcess:
    if not LIGHTNING.exists():
        pytest.skip("package not installed with `pip install -e .` (console scripts missing)")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([str(LIGHTNING), "fit", "--config", str(folder / "mini.yaml"), "--trainer.default_root_dir",
                           str(folder / "runs"), *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)


def test_console_fit_reads_a_bom_list(tmp_path):
    write_list_dataset(str(tmp_path / "data"), 21)
    with_bom(tmp_path / "data" / "train.txt")
    (tmp_path / "mini.yaml").write_text(CONFIG.format(root=tmp_path / "data"))
    out = lightning_fit(tmp_path, "--run_name", "bom")
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "runs" / "bom" / "checkpoints" / "last.ckpt").is_file()


def test_console_fit_stops_at_a_list_entry_outside_the_root_and_runs_with_the_opt_in(tmp_path):
    train = outside_lines(tmp_path)
    (tmp_path / "mini.yaml").write_text(CONFIG.format(root=tmp_path / "data"))
    out = lightning_fit(tmp_path, "--run_name", "outside")
    assert out.returncode == 2, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("hashbench: error:")]
    assert len(errors) == 1 and f"{train}:3: the image path '../elsewhere/a.jpg'" in errors[0], out.stderr[-3000:]
    assert "data.allow_outside_root=true" in errors[0] and "Traceback" not in out.stderr
    out = lightning_fit(tmp_path, "--run_name", "allowed", "--data.allow_outside_root", "true")
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "runs" / "allowed" / "checkpoints" / "last.ckpt").is_file()
