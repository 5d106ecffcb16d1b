"""The feature cache's disk side: every write checked, a full disk said in one line, one builder per entry.

* :func:`pwrite_all` loops over short writes (``os.pwrite`` may write fewer bytes than asked) and treats a write of
  0 bytes as a full disk, so no row is ever counted as written when it is not.
* :func:`guarded` turns a full disk, a file-size limit, a quota or a permission problem into one
  :class:`CacheStorageError` naming the path, the space the entry needs and the space that is free (raised outside
  the ``except`` block, so the CLI reports this message and not the bare ``[Errno 28]`` under it).
* :func:`entry_lock` is an OS file lock per entry (``<parent>/.<cache folder>.locks/<entry>.lock``): two processes
  building the same entry (two jobs on one cache folder) take turns; the second then loads what the first built.
  The lock dies with its process, so a killed build never blocks the next one.

No Lightning import (the store runs without it).
"""
from __future__ import annotations

import errno
import os
import shutil
import sys
from typing import Callable, Optional, TypeVar

from filelock import FileLock, Timeout

T = TypeVar("T")
#: errors the user fixes by freeing space, raising a limit or choosing another folder
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS})
CACHE_DIR_OPTION = "the FeatureCache callback's cache_dir (trainer.callbacks → FeatureCache → init_args.cache_dir)"


class CacheStorageError(OSError):
    """The cache folder cannot hold an entry (full disk, file-size limit, quota, no permission)."""


def _error(code: int, message: str) -> CacheStorageError:
    err = CacheStorageError(message)  # one argument: str(err) is the message alone, no "[Errno N]" in front
    err.errno = code
    return err


def human(n: Optional[float]) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def free_bytes(path: str) -> Optional[int]:
    """Free space of the filesystem holding ``path`` (or its nearest existing parent)."""
    p = os.path.abspath(path)
    while p and not os.path.exists(p):
        p = os.path.dirname(p)
    try:
        return shutil.disk_usage(p or "/").free
    except OSError:
        return None


def storage_message(err: OSError, path: str, needed: Optional[int]) -> str:
    where = err.filename or path
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"feature cache: cannot write {where}: {err.strerror or err}; make {os.path.dirname(where) or '.'} "
                f"writable, or set {CACHE_DIR_OPTION} to a folder you can write")
    reason = {errno.EFBIG: "the file is larger than this process may write (file-size limit, `ulimit -f`)",
              errno.EDQUOT: "the disk quota is exceeded"}.get(err.errno, "no space left on the device")
    return (f"feature cache: cannot write {where}: {reason}. The entry needs {human(needed)} on disk, "
            f"{human(free_bytes(where))} is free there; free space or set {CACHE_DIR_OPTION} to a disk with room. "
            "Rows already written are kept: rerun to resume the build")


def guarded(action: Callable[[], T], path: str, needed: Optional[int]) -> T:
    """``action()``, with a storage failure turned into one :class:`CacheStorageError`."""
    failure = None
    try:
        return action()
    except CacheStorageError:
        raise
    except OSError as err:
        if err.errno not in STORAGE_ERRNOS:
            raise
        failure = err
    raise _error(failure.errno, storage_message(failure, path, needed))


def check_space(path: str, needed: int) -> None:
    """Refuse to start a build the disk cannot hold (before any image is encoded)."""
    free = free_bytes(path)
    if free is not None and free < needed:
        raise _error(errno.ENOSPC, storage_message(OSError(errno.ENOSPC, "No space left", path), path, needed))


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """Write every byte of ``data`` at ``offset`` (short writes continue; 0 bytes written = the disk is full)."""
    view = data.cast("B") if data.format != "B" else data
    while len(view):
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view, offset = view[n:], offset + n


class entry_lock:
    """Held by the process (rank 0 of a job) that plans, builds or checks one entry; another process waits."""

    def __init__(self, entry: str, needed: Optional[int] = None):
        # beside the cache folder, not in it: the folder holds entries only (``ls`` shows what is cached)
        cache_dir, name = os.path.split(os.path.abspath(entry))
        parent, base = os.path.split(cache_dir)
        self.entry, self.needed = entry, needed
        self.path = os.path.join(parent, f".{base}.locks", f"{name}.lock")
        self.lock = FileLock(self.path)

    def __enter__(self) -> "entry_lock":
        guarded(lambda: os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True), self.path, self.needed)
        try:
            guarded(lambda: self.lock.acquire(timeout=0), self.path, self.needed)
        except Timeout:
            print(f"feature cache: another process is building {self.entry}; waiting for it to finish (it is "
                  "then loaded, not built twice)", file=sys.stderr, flush=True)
            guarded(lambda: self.lock.acquire(), self.path, self.needed)
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()
