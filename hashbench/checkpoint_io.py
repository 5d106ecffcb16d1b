"""How the suite writes and reads checkpoint files: atomically, with a checksum, and as data only.

Every checkpoint (``last.ckpt``, ``best-*.ckpt``, Lightning's ``hpc_ckpt_*.ckpt``) goes through
:class:`SafeCheckpointIO`, a Lightning ``CheckpointIO`` plugin the CLI installs on the trainer:

* written into ``<name>.partial`` and renamed, so a crash or a full disk never leaves a half-written checkpoint in
  place of the previous one; a full disk or a read-only folder is one ``hashbench: error:`` line;
* with ``<name>.sha256`` next to it (``sha256sum -c`` format), verified before every load, so bytes flipped on disk
  or in a copy are an error that names a checkpoint of the run that still verifies, instead of a silent resume;
* loaded with ``torch.load(weights_only=True)`` whatever the caller asks: a checkpoint is a pickle, and a crafted one
  could otherwise run code (our checkpoints hold tensors, numbers, strings and containers only).

Checkpoints written before checksums existed still load (a note says once that they are unverified).
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import sys
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from .runs import RunError, is_global_zero

SUFFIX = ".sha256"
#: a write that failed for lack of room or rights: the user's to fix, not a bug
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
_verified: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> sha256 already checked in this process
_unverified_noted: set[str] = set()


def checksum_path(path) -> Path:
    return Path(str(path) + SUFFIX)


def _digests(sums: Path) -> list[str]:
    """The digests a checksum file accepts (one, or two for the instant a checkpoint is being replaced)."""
    return [line.split()[0].lower() for line in sums.read_text().splitlines() if line.strip()]


def _write_text_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _sha256_file(path: Path, chunk: int = 2**20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checkpoint(data: bytes, path) -> None:
    """Write serialised checkpoint bytes to ``path`` atomically with ``path.sha256``.

    The checksum file first lists the new and the old digest, then (after the rename) the new one only, so a crash
    at any instant leaves a checkpoint that its checksum file accepts."""
    path = Path(path)
    sums, partial = checksum_path(path), path.with_name(path.name + ".partial")
    digest = hashlib.sha256(data).hexdigest()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        old = _digests(sums) if sums.is_file() and path.is_file() else []
        _write_text_atomically(sums, "".join(f"{d}  {path.name}\n" for d in [digest, *old]))
        os.replace(partial, path)
        _write_text_atomically(sums, f"{digest}  {path.name}\n")
    except OSError as err:
        for leftover in (partial, sums.with_name(sums.name + ".partial")):
            try:
                leftover.unlink()
            except OSError:
                pass
        if err.errno not in DISK_ERRORS:
            raise
        kept = f"the previous {path.name} is intact" if path.is_file() else "no earlier checkpoint is affected"
        raise RunError(f"could not write checkpoint {path} ({len(data) / 2**20:.1f} MiB): {err.strerror}; {kept}. "
                       f"Free space on that disk or make {path.parent} writable (or point --trainer.default_root_dir "
                       "at a disk with room), then resume with --ckpt_path last") from None


def verified_alternatives(path) -> list[Path]:
    """Other checkpoints of the same folder whose checksums verify, newest first (what a damaged one can be
    replaced by)."""
    path = Path(path)
    found = []
    for other in sorted(path.parent.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True):
        if other.resolve() == path.resolve() or not checksum_path(other).is_file():
            continue
        try:
            if _sha256_file(other) in _digests(checksum_path(other)):
                found.append(other)
        except OSError:
            continue
    return found


def verify_checksum(path) -> None:
    """Raise :class:`RunError` when ``path`` differs from the checksum written with it; a checkpoint without a
    checksum file (written before the suite wrote them) is accepted with a note, once."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    sums = checksum_path(path)
    if not sums.is_file():
        if key[0] not in _unverified_noted and is_global_zero():  # once, not once per DDP process
            _unverified_noted.add(key[0])
            print(f"hashbench: note: {path} has no checksum file ({sums.name}; checkpoints written before the suite "
                  "wrote them have none), so it is loaded unverified", file=sys.stderr)
        return
    if key in _verified:
        return
    actual, expected = _sha256_file(path), _digests(sums)
    if actual not in expected:
        others = verified_alternatives(path)
        if others:
            names = ", ".join(p.name for p in others)
            use = (f"Checkpoints of this run that verify: {names}. Continue from the newest "
                   f"with --ckpt_path {others[0]} (training goes on from its epoch; the next epoch rewrites "
                   f"{path.name}).")
        else:
            use = ("No other checkpoint in that folder verifies: restore the file from a copy, or start the run again "
                   f"after moving {path.parent} away.")
        raise RunError(f"checkpoint {path} is damaged: its sha256 is not the one in {sums.name} written with it (bytes "
                       f"changed on disk or in a copy), so it is not loaded. {use}")
    _verified[key] = actual


def load_data_only(path, map_location: Any = "cpu", mmap: bool = False, model: bool = True) -> dict:
    """``torch.load(weights_only=True)``: tensors, numbers, strings and containers; anything else is refused before it
    can run (a crafted checkpoint names a callable such as ``os.system`` in its pickle)."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"checkpoint {path} was refused: it holds more than plain data ({first[:200]}). A checkpoint "
                       "written by this suite holds only tensors and numbers; a file with other objects can run code "
                       "when loaded, so it is not loaded. Use a checkpoint of one of your runs") from None
    if model and (not isinstance(ckpt, dict) or "state_dict" not in ckpt):
        raise RunError(f"checkpoint {path} holds no model weights (no 'state_dict'): it is not a Lightning "
                       "checkpoint of this suite")
    return ckpt


def read_checkpoint(path, map_location: Any = "cpu", mmap: bool = False, model: bool = True) -> dict:
    """Verify the checksum, then load as data only: the one way the suite opens a checkpoint (``model``: it must be
    a Lightning checkpoint with a state_dict; Lightning's own hand-overs, e.g. ddp_spawn's weights, are not)."""
    verify_checksum(path)
    return load_data_only(path, map_location, mmap, model)


def _local(path) -> bool:
    return "://" not in str(path)


class SafeCheckpointIO(TorchCheckpointIO):
    """Atomic writes with a checksum file, verified data-only loads (see the module docstring)."""

    writes_atomically = True  # LastCheckpoint hands its path straight to us instead of renaming itself

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or not _local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_checkpoint(buffer.getbuffer(), path)

    def load_checkpoint(self, path, map_location: Optional[Any] = None, weights_only: Optional[bool] = None) -> dict:
        if not _local(path):
            return super().load_checkpoint(path, map_location, weights_only=True)
        return read_checkpoint(path, map_location if map_location is not None else "cpu", model=False)

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        if _local(path):
            checksum_path(path).unlink(missing_ok=True)
