"""Find the config file the user meant: ``--config cifar_cib.yaml`` typed from the repository root is
``experiments/cifar_cib.yaml``; a name that exists nowhere is one error listing the close names."""
from __future__ import annotations

import difflib
import sys
from pathlib import Path

from .errors import ConfigError
from .runs import is_global_zero

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"
_FLAGS = ("--config", "-c")


def _candidates(value: str) -> list[Path]:
    name = Path(value)
    here = Path.cwd()
    out = [here / "experiments" / name, EXPERIMENTS / name]
    if name.suffix not in (".yaml", ".yml"):
        out += [p.with_name(p.name + ".yaml") for p in out]
    return out


def _known() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in EXPERIMENTS.rglob("*.yaml"))


def resolve(value: str) -> str:
    """The path of config ``value``: as given if it exists, else under ``experiments/``; else ConfigError."""
    if Path(value).is_file() or value.lstrip().startswith("{"):  # an inline YAML/JSON string is the CLI's business
        return value
    for path in _candidates(value):
        if path.is_file():
            shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
            if is_global_zero():  # said once, not again by every DDP rank that re-runs the command
                print(f"hashbench: config {value!r} not found here; using {shown}", file=sys.stderr)
            return str(path)
    known = _known()
    close = difflib.get_close_matches(str(value), known, n=5, cutoff=0.4) or difflib.get_close_matches(
        Path(value).name, [Path(k).name for k in known], n=5, cutoff=0.4)
    hint = f" Close names: {', '.join(close)}." if close else f" Configs that exist: {', '.join(known[:12])} …"
    raise ConfigError(f"config file {value!r} not found (looked at {value} and under {EXPERIMENTS}).{hint}")


def resolve_argv(argv: list[str]) -> list[str]:
    """``argv`` with every ``--config X`` / ``--config=X`` / ``-c X`` resolved by :func:`resolve`."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in _FLAGS and i + 1 < len(argv):
            out += [arg, resolve(argv[i + 1])]
            i += 2
            continue
        if arg.startswith("--config="):
            arg = "--config=" + resolve(arg.split("=", 1)[1])
        out.append(arg)
        i += 1
    return out
