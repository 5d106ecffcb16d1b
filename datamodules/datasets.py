"""Split datasets: every item is ``(image, label, index)`` (docs/CONTRACTS.md).

* ``image``: ``transform(PIL RGB image)``; a list of tensors when the transform is multi-view;
* ``label``: float32 multi-hot vector (single-label data is one-hot);
* ``index``: int, the item's position in its split.

The datasets are deliberately simple (a pool + the split's row indices + a transform) so that a
feature cache can wrap or replace them later.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


class _SplitDataset(Dataset):
    def __init__(self, labels: np.ndarray, indices: np.ndarray, transform: Optional[Callable],
                 split: str = ""):
        self.pool_indices = np.asarray(indices, dtype=np.int64)
        # labels of this split only, float32 multi-hot, shape (len, C)
        self.labels = torch.as_tensor(np.asarray(labels)[self.pool_indices], dtype=torch.float32)
        self.transform = transform
        self.split = split

    def __len__(self) -> int:
        return len(self.pool_indices)

    def load_image(self, i: int) -> Image.Image:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, i: int):
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {self.split or 'split'} of size {len(self)}")
        img = self.load_image(i)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.labels[i], i

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, n={len(self)}, transform={self.transform!r})"


class ArrayDataset(_SplitDataset):
    """Images held in memory as a uint8 array ``(N, H, W)`` (grey) or ``(N, H, W, 3)`` (RGB)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray,
                 transform: Optional[Callable] = None, split: str = ""):
        super().__init__(labels, indices, transform, split)
        self.images = images  # the whole pool; shared between splits, not copied

    def load_image(self, i: int) -> Image.Image:
        return Image.fromarray(np.asarray(self.images[self.pool_indices[i]])).convert("RGB")


class ImageFileDataset(_SplitDataset):
    """Images loaded lazily from files with PIL (list-file datasets)."""

    def __init__(self, paths: Sequence[str], labels: np.ndarray, indices: np.ndarray,
                 transform: Optional[Callable] = None, split: str = "",
                 origins: Optional[Sequence[str]] = None):
        super().__init__(labels, indices, transform, split)
        self.paths = list(paths)  # absolute paths of the pool
        self.origins = origins  # per pool row: "list.txt:line" where the entry came from

    def load_image(self, i: int) -> Image.Image:
        j = int(self.pool_indices[i])
        path = self.paths[j]
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except FileNotFoundError as e:
            where = f" (entry {self.origins[j]})" if self.origins is not None else ""
            raise FileNotFoundError(f"image not found: {path}{where}") from e
        except OSError as e:
            where = f" (entry {self.origins[j]})" if self.origins is not None else ""
            raise OSError(f"cannot read image {path}{where}: {e}") from e

    def path(self, i: int) -> str:
        return self.paths[int(self.pool_indices[i])]
