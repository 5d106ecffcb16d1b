"""What a split is drawn from: a ``Pool`` of images and labels, and a ``SplitSource`` (a pool and one split's indices)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np


@dataclass
class Pool:
    """All images a split is drawn from (or one list file's entries)."""

    images: Union[np.ndarray, List[str]]   # uint8 (N,H,W[,3]) in memory, or absolute file paths
    labels: np.ndarray                     # (N, C) multi-hot (uint8 / float)
    is_test: Optional[np.ndarray] = None   # (N,) bool: official test-set membership
    class_names: Optional[Sequence[str]] = None
    origins: Optional[List[str]] = None    # file pools: "<list file>:<line>" per row
    order: str = ""                        # how pool indices map to the files (for the split file)


@dataclass
class SplitSource:
    pool: Pool
    indices: np.ndarray
