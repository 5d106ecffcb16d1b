"""Errors raised by the datamodules, with messages a user can act on.

Every "missing" error names the exact path(s) looked at, the file expected, its format and where the
standard files come from; every "malformed" error names the file (and line) and the expected format.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file (data batch, list file, annotation file or image) is missing."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # FileNotFoundError would otherwise format errno/filename
        return self.message


class DatasetFormatError(ValueError):
    """A dataset file exists but does not have the expected format."""


class ProtocolSizeError(ValueError):
    """The data available cannot supply the split sizes a protocol asks for."""


def abspath(path: str | os.PathLike) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def not_found(
    what: str,
    looked_at: Sequence[str] | str,
    expected: str,
    where_from: str,
    missing: Optional[Iterable[str]] = None,
    hint: Optional[str] = None,
) -> DatasetNotFoundError:
    """Build a :class:`DatasetNotFoundError` with the standard four parts.

    Args:
        what: what is missing, e.g. "CIFAR-10 python batches".
        looked_at: the exact path(s) looked at (made absolute).
        expected: the file(s) expected and their format.
        where_from: where the standard files come from.
        missing: optional list of the specific files that are missing.
        hint: optional extra sentence (e.g. an option that would help).
    """
    if isinstance(looked_at, (str, os.PathLike)):
        looked_at = [looked_at]
    lines = [f"{what} not found."]
    lines.append("Looked at: " + ", ".join(abspath(p) for p in looked_at))
    if missing:
        missing = list(missing)
        lines.append("Missing: " + ", ".join(missing))
    lines.append(f"Expected: {expected}")
    lines.append(f"Where to get it: {where_from}")
    if hint:
        lines.append(hint)
    return DatasetNotFoundError("\n".join(lines))
