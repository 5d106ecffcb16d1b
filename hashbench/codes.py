"""A codes folder: bit-packed hash codes with their labels, dataset indices and provenance, readable without us.

Layout (``hashbench encode`` writes it; ``hashbench evaluate`` and ``hashbench search`` read it)::

    codes.npy    uint8 (N, ceil(K/8)) = np.packbits(codes > 0, axis=1): bit j of item i is 1 <=> code +1,
                 numpy's default big-endian bit order, a row's last byte padded with 0 bits
    labels.npy   (N, C) 0/1 multi-hot (uint8), or (N,) integer class ids; (N, 0) when labels are unknown
    index.npy    int64 (N,) the items' dataset indices in their split (optional: default 0..N-1)
    meta.json    {"bits": K, ...}: K is required (to unpack); hashbench also writes method, checkpoint and its
                 sha256, dataset, protocol, split, top_k, code convention, count, created
    paths.txt    one image path per item (file datasets, list files, image folders; optional)

Codes from another codebase are scored by our conventions after three lines of NumPy
(``B``: (N, K) codes in {-1, +1} or {0, 1}; ``L``: (N, C) 0/1 labels)::

    import numpy as np, json, os; os.makedirs("db", exist_ok=True)
    np.save("db/codes.npy", np.packbits(B > 0, axis=1)); np.save("db/labels.npy", L)
    json.dump({"bits": B.shape[1]}, open("db/meta.json", "w"))

and the same for ``query/``; then ``hashbench evaluate --query query --database db --top-k 1000``.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

FORMAT_VERSION = 1
CODE_CONVENTION = ("np.packbits(codes > 0, axis=1): bit j of item i is 1 <=> code +1 (numpy's default big-endian "
                   "bit order), each row padded with 0 bits to whole bytes")
CODES, LABELS, INDEX, META, PATHS = "codes.npy", "labels.npy", "index.npy", "meta.json", "paths.txt"


class CodesFormatError(ValueError):
    """A codes folder that is missing a file or does not follow the format (the message says which and how)."""


def _fail(folder: Path, message: str) -> CodesFormatError:
    return CodesFormatError(f"codes folder {folder}: {message}. The format is described in hashbench/codes.py "
                            "(codes.npy = np.packbits(codes > 0, axis=1), labels.npy, meta.json with 'bits')")


def _array(x) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)


def pack_codes(codes) -> np.ndarray:
    """(N, K) codes in {-1, +1}, {0, 1} or bool -> uint8 (N, ceil(K/8)) packed bits (1 = +1)."""
    arr = _array(codes)
    if arr.ndim != 2:
        raise CodesFormatError(f"codes must be 2-D (items, bits), got shape {arr.shape}")
    if arr.dtype != np.bool_:
        ones = arr == 1
        if not (bool(np.all(ones | (arr == -1))) or bool(np.all(ones | (arr == 0)))):
            bad = arr[~(ones | (arr == -1) | (arr == 0))][:3].tolist() or "a mix of -1 and 0"
            raise CodesFormatError(f"codes must be all in {{-1, +1}} or all in {{0, 1}} (binarise them first), "
                                   f"found {bad}")
    return np.packbits(arr > 0, axis=1)


def unpack_codes(packed: np.ndarray, bits: int) -> np.ndarray:
    """Packed bits -> int8 (N, bits) codes in {-1, +1}."""
    return np.unpackbits(packed, axis=1, count=bits).astype(np.int8) * 2 - 1


@dataclass
class Codes:
    """A loaded codes folder (see the module docstring)."""

    packed: np.ndarray  # uint8 (N, ceil(bits/8))
    bits: int
    labels: np.ndarray  # (N, C) or (N,)
    index: np.ndarray  # int64 (N,)
    meta: dict = field(default_factory=dict)
    paths: Optional[list[str]] = None
    folder: Optional[Path] = None

    def __len__(self) -> int:
        return self.packed.shape[0]

    def signed(self) -> np.ndarray:
        """int8 (N, bits) codes in {-1, +1}."""
        return unpack_codes(self.packed, self.bits)

    @property
    def has_labels(self) -> bool:
        return self.labels.ndim == 1 or self.labels.shape[1] > 0


def save_codes(folder, codes, labels=None, index=None, *, meta: Optional[dict] = None,
               paths: Optional[Sequence[str]] = None) -> Path:
    """Write a codes folder; ``codes`` (N, K) in {-1, +1} / {0, 1} / bool, ``labels`` (N, C) 0/1 or (N,) ids
    (None: unknown), ``index`` the dataset indices (None: 0..N-1), ``meta`` extra provenance for meta.json."""
    codes = _array(codes)
    return save_packed(folder, pack_codes(codes), codes.shape[1], labels, index, meta=meta, paths=paths)


def save_packed(folder, packed: np.ndarray, bits: int, labels=None, index=None, *, meta: Optional[dict] = None,
                paths: Optional[Sequence[str]] = None) -> Path:
    """:func:`save_codes` for codes already packed with :func:`pack_codes`."""
    folder = Path(folder)
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    n = packed.shape[0]
    if packed.ndim != 2 or packed.shape[1] != -(-int(bits) // 8):
        raise CodesFormatError(f"packed codes must be (N, {-(-int(bits) // 8)}) bytes for {bits} bits, got {packed.shape}")
    labels = np.zeros((n, 0), np.uint8) if labels is None else _array(labels)
    if labels.ndim == 2 and labels.size and set(np.unique(labels).tolist()) <= {0, 1}:
        labels = labels.astype(np.uint8)
    index = np.arange(n, dtype=np.int64) if index is None else _array(index).astype(np.int64)
    if len(labels) != n or len(index) != n or (paths is not None and len(paths) != n):
        raise CodesFormatError(f"{n} codes but {len(labels)} labels, {len(index)} indices"
                               + (f", {len(paths)} paths" if paths is not None else ""))
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / CODES, packed)
    np.save(folder / LABELS, labels)
    np.save(folder / INDEX, index)
    kind = "none" if labels.ndim == 2 and labels.shape[1] == 0 else ("class ids" if labels.ndim == 1 else "multi-hot")
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    full_meta = {**(meta or {}), "format_version": FORMAT_VERSION, "bits": int(bits), "count": int(n),
                 "code_convention": CODE_CONVENTION, "labels": kind, "created": created}
    (folder / META).write_text(json.dumps(full_meta, indent=1))
    if paths is not None:
        (folder / PATHS).write_text("".join(f"{p}\n" for p in paths))
    elif (folder / PATHS).exists():
        (folder / PATHS).unlink()  # a stale list from an earlier export would name the wrong images
    return folder


def _load_array(folder: Path, name: str) -> np.ndarray:
    """A plain .npy array; a pickled object array is refused (loading it could run code), as is anything unreadable."""
    try:
        arr = np.load(folder / name, allow_pickle=False)
    except (ValueError, EOFError) as err:
        what = "holds Python objects (a pickle), which are never loaded" if "allow_pickle" in str(err) else \
            f"is not a readable .npy array ({err})"
        raise _fail(folder, f"{name} {what}; write it with np.save of a numeric array") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive under a .npy name
        raise _fail(folder, f"{name} is not a single .npy array")
    return arr


def load_codes(folder) -> Codes:
    """Read and check a codes folder; one clear error naming the file for anything wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"codes folder not found: {folder} (write one with `hashbench encode ... --out "
                                f"{folder}` or see hashbench/codes.py for the format)")
    for name in (CODES, META):
        if not (folder / name).is_file():
            raise _fail(folder, f"{name} is missing")
    try:
        meta = json.loads((folder / META).read_text())
    except ValueError as err:
        raise _fail(folder, f"{META} is not valid JSON ({err})") from None
    bits = meta.get("bits")
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise _fail(folder, f"{META} must give the code length as a positive integer 'bits', got {bits!r}")
    packed = _load_array(folder, CODES)
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != -(-bits // 8):
        raise _fail(folder, f"{CODES} must be uint8 (N, {-(-bits // 8)}) for {bits} bits, got {packed.dtype} "
                            f"{packed.shape}")
    if bits % 8 and packed.size and np.any(packed[:, -1] & ((1 << (8 - bits % 8)) - 1)):
        raise _fail(folder, f"{CODES} has nonzero padding bits after bit {bits}: were the codes packed along "
                            "axis=1 with numpy's default (big-endian) bit order?")
    n = packed.shape[0]
    labels = _load_array(folder, LABELS) if (folder / LABELS).is_file() else np.zeros((n, 0), np.uint8)
    index = _load_array(folder, INDEX) if (folder / INDEX).is_file() else np.arange(n)
    if labels.ndim not in (1, 2) or len(labels) != n:
        raise _fail(folder, f"{LABELS} must have one row per code ({n}), got shape {labels.shape}")
    if index.ndim != 1 or len(index) != n or len(np.unique(index)) != n:
        raise _fail(folder, f"{INDEX} must hold {n} distinct dataset indices, got shape {index.shape}")
    paths = None
    if (folder / PATHS).is_file():
        paths = (folder / PATHS).read_text().splitlines()
        if len(paths) != n:
            raise _fail(folder, f"{PATHS} has {len(paths)} lines for {n} codes")
    return Codes(packed, bits, labels, index.astype(np.int64), meta, paths, folder)


def sha256_file(path, chunk: int = 2**20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
