"""``CachedFeatureDataset``: a split served from its feature-cache entry (memory-mapped rows, bank views)."""
from __future__ import annotations

import os
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


class CachedFeatureDataset(Dataset):
    """The cached stand-in of a split: items ``(feature, label, index)`` like the original dataset.

    ``feature`` is a float32 vector (D,) — the cached encoder output — or, when the original train set
    yields ``views > 1`` images per item, a list of ``views`` vectors: distinct bank views drawn from
    torch's RNG at each fetch (augmentation bank), or copies of the one cached vector (deterministic
    transform). ``__getitems__`` (used by any ``DataLoader`` with a ``batch_size``) reads a whole batch with one
    fancy-index of the memory map, so a loader serves it fastest in the main process (``loads_in_process``).
    """

    transform = None
    #: a batch is one memory-map read: cheaper in the main process than shipped from DataLoader workers
    loads_in_process = True

    def __init__(self, path: str, labels: torch.Tensor, split: str = "", pool_indices=None, views: int = 1,
                 meta: Optional[dict] = None, source: Optional[Dataset] = None):
        self.path = str(path)
        self.features_file = os.path.join(self.path, "features.npy")
        self.labels = torch.as_tensor(labels, dtype=torch.float32)
        self.split = split
        n = len(self.labels)
        self.pool_indices = (np.asarray(pool_indices, dtype=np.int64) if pool_indices is not None
                             else np.arange(n, dtype=np.int64))
        self.meta = dict(meta or {})
        self.bank_views = int(self.meta.get("bank_views", 0))
        self.views = int(views)
        if self.bank_views and self.views > self.bank_views:
            raise ValueError(f"{self.views} views per item need at least as many bank views, got {self.bank_views}")
        self.source = source  # the original dataset (images), kept for inspection
        self.cache_status: str = self.meta.get("status", "")  # "built" / "resumed" / "loaded"
        self._array: Optional[np.ndarray] = None

    # memory map opened lazily in each process (DataLoader workers get no pickled copy of the data)
    @property
    def features(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.features_file, mmap_mode="r", allow_pickle=False)  # data only, never code
        return self._array

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[-1])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def _to_tensor(rows: np.ndarray) -> torch.Tensor:
        # `rows` is a fresh array (fancy indexing copies out of the memory map): no extra copy for float32
        t = torch.from_numpy(np.ascontiguousarray(rows))
        return t.float() if t.dtype != torch.float32 else t

    def _rows(self, idx: np.ndarray) -> List[torch.Tensor]:
        """Feature rows of ``idx`` for each of the ``views`` outputs (one memmap fancy-index per view)."""
        a = self.features
        if not self.bank_views:
            x = self._to_tensor(a[idx])
            return [x] + [x.clone() for _ in range(self.views - 1)]
        # distinct bank views per item: the first `views` columns of a random permutation of 0..M-1
        choice = torch.rand(len(idx), self.bank_views).argsort(dim=1)[:, :self.views].numpy()
        return [self._to_tensor(a[choice[:, j], idx]) for j in range(self.views)]

    def _check(self, i: int) -> int:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for cached {self.split or 'split'} of size {n}")
        return i

    def __getitem__(self, i):
        i = self._check(int(i))
        rows = self._rows(np.array([i]))
        feats = [r[0] for r in rows]
        return (feats[0] if self.views == 1 else feats), self.labels[i], i

    def get_batch(self, indices) -> tuple:
        """An already collated batch ``(features B×D | [views × B×D], labels B×C, index B)``."""
        idx = np.asarray(indices.tolist() if torch.is_tensor(indices) else indices, dtype=np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"indices out of range for cached {self.split or 'split'} of size {len(self)}")
        idx = np.where(idx < 0, idx + len(self), idx)
        rows = self._rows(idx)
        index = torch.from_numpy(idx)
        return (rows[0] if self.views == 1 else rows), self.labels[index], index

    def __getitems__(self, indices: Sequence[int]) -> list:
        """Batch fetch for ``DataLoader``'s auto-collation: one fancy-index read, then per-item views of it
        (so any ``collate_fn`` still receives ordinary ``(feature, label, index)`` items)."""
        feats, labels, index = self.get_batch(indices)
        if self.views == 1:
            return list(zip(feats.unbind(0), labels.unbind(0), index.tolist()))
        per_view = [v.unbind(0) for v in feats]
        return [([pv[k] for pv in per_view], labels[k], int(index[k])) for k in range(len(index))]

    def __repr__(self) -> str:
        bank = f", bank_views={self.bank_views}" if self.bank_views else ""
        return (f"CachedFeatureDataset(split={self.split!r}, n={len(self)}, dim={self.meta.get('shape', ['?'])[-1]}, "
                f"dtype={self.meta.get('dtype')}{bank}, views={self.views}, path={self.path!r})")

