"""Environment variables a run may set, restored when it ends (so one run of a sweep cannot change the next)."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def restored_env(*names: str) -> Iterator[None]:
    """Put ``names`` back as they were on entry (set, changed or removed inside), also after an exception."""
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
