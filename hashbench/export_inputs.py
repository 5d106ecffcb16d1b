"""What the export commands read: a split, a list file or an image folder (or query images) as a dataset with the
datamodule's evaluation transform; and their shared help text."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .errors import ConfigError

#: the help text of ``hashbench encode`` (the three export commands in one paragraph)
EXPORT_HELP = """``hashbench encode`` / ``evaluate`` / ``search``: codes out of the lab, re-scored or searched anywhere.

    hashbench encode --config experiments/cifar_cib.yaml --ckpt_path last --split database --out codes/database
    hashbench encode --config experiments/cifar_cib.yaml --ckpt_path last --split query --out codes/query
    hashbench evaluate --codes codes/                 # or --query codes/query --database codes/database
    hashbench search --index codes/database --query photo.jpg -k 10

``encode`` builds model and datamodule from the config like ``fit`` does, loads the checkpoint and encodes a
split (``query``, ``database``, ``train``, ``val_query``), a list file (``<image path> <C 0/1 labels>`` per
line) or an image folder with ``trainer.predict``: under DDP every rank writes its part and rank 0 merges them,
dropping repeats by dataset index as evaluation does. The codes folder format is in hashbench/codes.py.
"""
from hashcore.splits import SPLITS


def eval_transform(dm):
    from datamodules.transforms import build_transform
    return build_transform(dm.eval_transform, False, dm.image_size, dm.normalize)


def dataset_paths(ds) -> Optional[list[str]]:
    """Image path of every item of a file dataset (None for images held in memory)."""
    return [ds.paths[int(j)] for j in ds.pool_indices] if hasattr(ds, "paths") else None


def split_dataset(dm, split: str, image_root: Optional[str] = None):
    """``(dataset, labels known, paths or None)`` for a split name, a list file or an image folder, all with the
    datamodule's deterministic evaluation transform (``train`` too: codes of the images, not of augmentations)."""
    if split in SPLITS:
        dm.prepare_data()
        dm.setup("predict")
        ds = dm.eval_dataset(split)
        return ds, True, dataset_paths(ds)
    if not Path(split).exists():
        raise ConfigError(f"--split {split!r} is neither a split ({', '.join(SPLITS)}) nor an existing list file or "
                          "image folder")
    from datamodules import image_dataset
    folder = Path(split).is_dir()
    ds = image_dataset(split, eval_transform(dm), None if folder else dm.num_classes, image_root,
                       allow_outside_root=bool(getattr(dm, "allow_outside_root", False)))
    return ds, not folder, dataset_paths(ds)


def query_images(path: Path, transform):
    """An image file or a folder of images (recursively, sorted) as a dataset without labels."""
    from datamodules import image_dataset
    from datamodules.datasets import ImageFileDataset
    if path.is_dir():
        return image_dataset(str(path), transform)
    if not path.is_file():
        raise FileNotFoundError(f"--query {path}: no such image file or folder")
    return ImageFileDataset([str(path.resolve())], np.zeros((1, 0), np.float32), np.arange(1), transform, "query")

