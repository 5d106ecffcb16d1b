"""One ``hashbench: error:`` line for every mistake in the user's input or files; tracebacks only for our bugs.

``main()`` runs every command inside :func:`reported`. An exception is a *user error* when it is one of the suite's
own error types (missing/malformed data, split-file mismatch, run/checkpoint problems, a non-finite loss) or when a
``ValueError``/``TypeError``/``OSError`` raised by our code reaches the CLI while the run is being configured (bad
option values, missing weights): its message says what is wrong and what to do. Anything else is a bug and keeps
its traceback. ``HASHBENCH_TRACEBACK=1`` shows the traceback of user errors too.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import traceback
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator, Optional

#: always the user's to fix, wherever they are raised (exit 2), or a run that failed cleanly (exit 1): (module,
#: class) pairs looked up only when an error is reported and only in modules already imported (an exception of a
#: class whose module was never imported cannot exist), so the console imports no torch to report a usage error
USER_ERRORS = (("datamodules.errors", "DatasetNotFoundError"), ("datamodules.errors", "DatasetFormatError"),
               ("datamodules.errors", "ProtocolSizeError"), ("datamodules.protocols", "SplitFileMismatchError"),
               ("hashbench.runs", "RunError"), ("hashbench.codes", "CodesFormatError"),
               ("hashcore.cache_storage", "CacheStorageError"), ("lightning_modules.backbones", "BackboneMismatchError"))
RUN_FAILURES = (("lightning_modules.base", "NonFiniteLossError"),)


def _loaded(entries) -> tuple:
    """The classes of ``entries`` (classes, or (module, name) pairs looked up only if that module is loaded)."""
    return tuple(e if isinstance(e, type) else getattr(sys.modules[e[0]], e[1])
                 for e in entries if isinstance(e, type) or e[0] in sys.modules)


#: raised by our own code while a run is configured: the message names the option
CONFIG_ERRORS = (ValueError, TypeError, OSError, KeyError)
OUR_PACKAGES = ("hashcore", "lightning_modules", "datamodules", "callbacks", "hashbench")


class ConfigError(ValueError):
    """A wrong command-line option or config value (exit 2)."""


@dataclass
class Phase:
    """Where the command being reported stands: a configuration mistake before its work starts, a bug after."""
    command: str = "fit"
    configuring: bool = True  # until the Trainer starts running a stage


#: the phase of the command running in this context; each :func:`command_phase` sets its own and restores the one
#: before, so two commands in one process (tests, a sweep's runs) never see each other's
_current: ContextVar[Optional[Phase]] = ContextVar("hashbench_phase", default=None)


def current_phase() -> Phase:
    """The running command's phase; outside any command a fresh one (configuring)."""
    return _current.get() or Phase()


@contextlib.contextmanager
def command_phase(command: str = "fit") -> Iterator[Phase]:
    """Run a command (or one run of a sweep) in a phase of its own, restoring the previous phase on exit."""
    token = _current.set(Phase(command))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def work_started() -> None:
    """The running command's work began (its first batch): from now on an unexpected error is a bug."""
    phase = _current.get()
    if phase is not None:
        phase.configuring = False


def chain(err: BaseException) -> Iterator[BaseException]:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _raised_by_us(err: BaseException) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return False
    last = frames[-1].filename.replace(os.sep, "/")
    return any(f"/{pkg}/" in last for pkg in OUR_PACKAGES) and "/site-packages/" not in last


def _clean(message: str) -> str:
    """A DataLoader worker re-raises our error with the worker's traceback inside the message: keep our words."""
    if "Original Traceback" not in message:
        return message.strip()
    lines = message.rstrip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        m = re.match(r"^[\w.]+(Error|Exception): (.*)$", lines[i])
        if m:
            return "\n".join([m.group(2), *lines[i + 1:]]).strip()
    return lines[-1].strip()


def _parse_message(message: str, command: str) -> str:
    """jsonargparse's message without its echo of the value and the "NoneType" alternative of every union."""
    keep = [ln.strip() for ln in message.splitlines()
            if ln.strip() and not ln.strip().startswith(("Given value", "Subtypes:", "- Expected a <class 'NoneType'>"))]
    text = " ".join(k for k in keep if k not in ("Errors:", "Does not validate against any of the Union subtypes"))
    return f"{text} (`hashbench {command} --help` lists the options)"


def user_error(err: BaseException, phase: Optional[Phase] = None) -> Optional[tuple[str, int]]:
    """``(message, exit code)`` when ``err`` (or an exception it wraps) is the user's to fix, else None.

    ``phase``: where the command stood when ``err`` was raised (default: the running command's)."""
    phase = phase or current_phase()
    causes = list(chain(err))
    if isinstance(err, argparse.ArgumentError):  # an option the parser refused
        inner = user_error(err.__cause__, phase) if err.__cause__ is not None else None
        return inner or (_parse_message(str(err), phase.command), 2)
    for e in causes:
        if isinstance(e, _loaded(USER_ERRORS) + (ConfigError,)):
            return _clean(str(e)), 2
        if isinstance(e, _loaded(RUN_FAILURES)):
            return _clean(str(e)), 1
    if phase.configuring:
        for e in reversed(causes):  # innermost first: jsonargparse wraps ours in a "Union subtypes" error
            if isinstance(e, CONFIG_ERRORS) and _raised_by_us(e):
                return _clean(str(e)), 2
    return None


@contextlib.contextmanager
def reported(command: str = "fit") -> Iterator[None]:
    """Run ``command`` in a phase of its own (:func:`command_phase`); print a user error as one
    ``hashbench: error:`` message and exit with its code."""
    with command_phase(command) as phase:
        try:
            yield
        except KeyboardInterrupt:
            print("hashbench: interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        except Exception as err:  # noqa: BLE001 - sorted into user errors and bugs just below
            found = user_error(err, phase)
            if found is None or os.environ.get("HASHBENCH_TRACEBACK"):
                raise
            message, code = found
            print(f"hashbench: error: {message}", file=sys.stderr)
            raise SystemExit(code) from None
