"""Split datasets: every item is ``(image, label, index)`` (docs/CONTRACTS.md).

* ``image``: ``transform(PIL RGB image)``; a list of tensors when the transform is multi-view;
* ``label``: float32 multi-hot vector (single-label data is one-hot);
* ``index``: int, the item's position in its split.

A dataset is a pool + the split's row indices + a transform, so a feature cache can wrap or replace
it (``HashDataModule.replace_dataset``). ``fingerprint()`` hashes what the items are made of (for
cache keys); ``load_image(i)`` is item ``i``'s raw, untransformed RGB image.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .errors import DatasetFormatError, DatasetNotFoundError

_FINGERPRINT_ROWS = 4096  # array rows hashed per chunk (bounded memory for 50k+ image pools)


class _SplitDataset(Dataset):
    #: read in the DataLoader's main process (True for cached feature rows: cheaper than shipping
    #: them from worker processes); the datamodule then builds this split's loader with 0 workers
    loads_in_process: bool = False

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

    def fingerprint(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _hash_labels(self, h) -> None:
        labels = np.ascontiguousarray(self.labels.numpy())
        h.update(f"labels{labels.shape}".encode())
        h.update(labels.tobytes())

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

    def fingerprint(self) -> str:
        """sha256 of the pixels of this split's rows (in split order) and their labels."""
        h = hashlib.sha256(b"hashbench-array-split-v1")
        h.update(f"{np.dtype(self.images.dtype).str}{tuple(self.images.shape[1:])}n{len(self)}".encode())
        for start in range(0, len(self), _FINGERPRINT_ROWS):
            rows = self.pool_indices[start:start + _FINGERPRINT_ROWS]
            h.update(np.ascontiguousarray(self.images[rows]).tobytes())
        self._hash_labels(h)
        return h.hexdigest()


class ImageFileDataset(_SplitDataset):
    """Images loaded lazily from files with PIL (list-file datasets)."""

    def __init__(self, paths: Sequence[str], labels: np.ndarray, indices: np.ndarray,
                 transform: Optional[Callable] = None, split: str = "",
                 origins: Optional[Sequence[str]] = None):
        super().__init__(labels, indices, transform, split)
        self.paths = list(paths)  # absolute paths of the pool
        self.origins = origins  # per pool row: "list.txt:line" where the entry came from

    def _entry(self, j: int) -> str:
        return f" (list entry {self.origins[j]})" if self.origins is not None else ""

    def load_image(self, i: int) -> Image.Image:
        j = int(self.pool_indices[i])
        path = self.paths[j]
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except FileNotFoundError:
            raise DatasetNotFoundError(
                f"image not found: {path}{self._entry(j)}. Restore the file, or remove its entry from the "
                f"list.") from None
        except PermissionError as e:
            raise DatasetFormatError(f"cannot read image {path}{self._entry(j)}: {e}. Make the file readable "
                                     f"by this user.") from e
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            # one string argument: DataLoader workers re-raise the class with the message only
            raise DatasetFormatError(
                f"cannot read image {path}{self._entry(j)}: {type(e).__name__}: {e}. The file is corrupt or "
                f"truncated: re-download it, or remove its entry from the list.") from e

    def fingerprint(self) -> str:
        """sha256 of every item's path, size and modification time (one ``os.stat`` each, no reads)
        and the labels: it changes when an image file is replaced or touched."""
        h = hashlib.sha256(b"hashbench-file-split-v1")
        h.update(f"n{len(self)}".encode())
        for j in self.pool_indices.tolist():
            path = self.paths[j]
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise DatasetNotFoundError(f"image not found: {path}{self._entry(j)}. Restore the file, or "
                                           f"remove its entry from the list.") from None
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        self._hash_labels(h)
        return h.hexdigest()
