"""The mAP cut-off ``top_k``, read in one place: configs, the retrieval callback, the commands and the metrics.

A cut-off is a positive integer k (the first k retrieved items) or the whole database, which configs and
command lines write ``all`` (or ``-1``, DeepHash-pytorch's spelling) and Python code ``None``. Integers may come
as text (command lines, YAML strings). Booleans, floats, 0 and other negatives are refused with one message that
names the option and shows what to write.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np

#: what configs and command lines may write for "the whole database" (lower case, stripped)
WHOLE_DATABASE = ("all", "-1", "full", "none")

TopKValue = Union[int, str, None]


def _hint(option: str, value) -> str:
    return (f"{option} must be a positive integer or 'all' (the whole database), got {value!r}; "
            "e.g. 1000 or all")


def parse_top_k(value: TopKValue, option: str = "top_k") -> Optional[int]:
    """One cut-off: ``k`` (int, numpy int or its text) -> k; ``None`` / ``"all"`` / ``-1`` -> None (whole database).

    ``option`` is how the user wrote the setting (``data.top_k``, ``--top-k``); it starts the error message.
    """
    if value is None:
        return None
    k = value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in WHOLE_DATABASE:
            return None
        if not text.lstrip("-").isdigit():  # "1e3", "1000.0", "ten": not an integer
            raise ValueError(_hint(option, value))
        k = int(text)
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise ValueError(_hint(option, value))
    if k == -1:
        return None
    if k < 1:
        raise ValueError(_hint(option, value))
    return int(k)


def parse_top_ks(value, option: str = "top_k") -> list[Optional[int]]:
    """Several cut-offs (a list, or one value): each as :func:`parse_top_k`; none twice, at least one."""
    entries = list(value) if isinstance(value, (list, tuple)) else [value]
    example = "e.g. [1000] or [5000, all]"
    if not entries:
        raise ValueError(f"{option} is empty; give positive integers or 'all' (the whole database), {example}")
    out = []
    for entry in entries:
        try:
            out.append(parse_top_k(entry, option))
        except ValueError:
            raise ValueError(f"{option} has an invalid entry {entry!r}: give positive integers or 'all' (the whole "
                             f"database), {example}") from None
    if len(set(out)) != len(out):
        raise ValueError(f"{option} lists a cut-off twice: {entries!r}; give each once, {example}")
    return out


def top_k_name(k: Optional[int]) -> str:
    """The metric-name suffix of a parsed cut-off (``mAP@1000``, ``mAP@all``)."""
    return "all" if k is None else str(int(k))
