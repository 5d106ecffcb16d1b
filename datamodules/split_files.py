"""Split files: the record of one seeded draw (``<split_dir>/<name>.npz``: the index arrays of every split plus a
JSON ``meta`` entry), written atomically and, when the file exists, verified against the splits drawn now.

The format is unchanged since ``hashbench-split-v1`` (tests/fixtures/layout_a951ebe holds files of that layout).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, Mapping, Optional

import numpy as np

from hashcore.splits import SPLITS as SPLIT_NAMES  # the split file's arrays

SPLIT_ALGORITHM = "hashbench-split-v1"


def pool_fingerprint(*arrays: np.ndarray) -> str:
    """sha256 over the arrays that define a pool (labels, official-test mask, ...)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            continue
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def split_file_name(dataset: str, protocol: Any, seed: int,
                    sizes: Mapping[str, Optional[int]], val_queries: Optional[int] = None,
                    val_holdout: bool = False) -> str:
    """``protocol`` is a :class:`~datamodules.protocols.Protocol` (not imported: protocols.py imports this module).

    ``<dataset>_<protocol>_seed<seed>[_q..-t..-db..-v..][_val<N>[h]].npz`` (non-default sizes and a
    drawn validation split are part of the name, so differently drawn splits never share a file)."""
    stem = f"{dataset}_{protocol.name}_seed{seed}"
    if dict(sizes) != protocol.default_sizes():
        f = lambda x: "all" if x is None else str(x)  # noqa: E731
        stem += f"_q{f(sizes['query'])}-t{f(sizes['train'])}-db{f(sizes['database'])}-v{f(sizes['val_query'])}"
    if val_queries:
        stem += f"_val{int(val_queries)}" + ("h" if val_holdout else "")
    return stem + ".npz"


class SplitFileMismatchError(RuntimeError):
    """An existing split file does not match the splits computed now."""


def save_or_verify_splits(path: str, splits: Mapping[str, np.ndarray], meta: Mapping) -> str:
    """Write ``splits`` to ``path`` (atomically), or verify an existing file.

    Returns ``"written"`` or ``"verified"``. Raises :class:`SplitFileMismatchError` when the file
    exists but was made from different data (fingerprint) or holds different indices. A split absent
    from ``splits`` or from the file (e.g. ``val_database`` in files written before it existed) counts
    as empty.
    """
    empty = np.zeros(0, np.int64)
    if os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as f:
                old_meta = json.loads(str(f["meta"]))
                old = {k: f[k] for k in SPLIT_NAMES if k in f.files}
        except Exception as e:  # noqa: BLE001
            raise SplitFileMismatchError(
                f"split file {path} exists but cannot be read ({type(e).__name__}: {e}); "
                f"delete it to regenerate the splits") from e
        if old_meta.get("pool_fingerprint") != meta.get("pool_fingerprint"):
            raise SplitFileMismatchError(
                f"split file {path} was written for different data (pool fingerprint "
                f"{old_meta.get('pool_fingerprint', '?')[:12]}, pool size {old_meta.get('pool_size')}) than "
                f"the data loaded now ({meta.get('pool_fingerprint', '?')[:12]}, pool size "
                f"{meta.get('pool_size')}). The dataset under root changed: restore it, or delete "
                f"the split file to regenerate (results would no longer be comparable).")
        diff = [k for k in SPLIT_NAMES
                if not np.array_equal(old.get(k, empty), np.asarray(splits.get(k, empty)))]
        if diff:
            raise SplitFileMismatchError(
                f"split file {path} holds different {', '.join(diff)} indices than the ones computed "
                f"now for the same data, protocol and seed (split algorithm "
                f"{old_meta.get('algorithm')} vs {meta.get('algorithm')}). Delete it to regenerate.")
        return "verified"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(dict(meta), sort_keys=True)),
                     **{k: np.asarray(splits.get(k, empty), dtype=np.int64) for k in SPLIT_NAMES})
        os.replace(tmp, path)  # atomic: ranks writing the same content concurrently are harmless
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return "written"
