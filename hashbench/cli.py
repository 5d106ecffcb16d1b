"""The console: ``hashbench <command>`` (also installed as ``lightning``, and ``python -m hashbench``).

This module only dispatches and imports nothing heavy at import time, so ``hashbench --help``, an unknown command and
a config name that exists nowhere answer at once; each command imports its own module (torch, Lightning, W&B) when it
runs. ``fit``/``validate``/``test``/``predict`` are LightningCLI (``hashbench/lightning_cli.py``); ``compare``,
``encode``, ``evaluate`` and ``search`` are dispatched to their modules.

Under ``--trainer.strategy ddp`` Lightning starts the other ranks by re-running this process's command line
(``sys.argv``), so nothing here rewrites ``sys.argv``: rank 1 re-runs the user's own ``hashbench fit …`` and joins.
"""
from __future__ import annotations

import sys
from importlib import import_module

from . import errors
from .commands import COMMANDS, LIGHTNING_COMMANDS
from .config_files import resolve_argv
from hashcore.launcher import launcher_rank

from .runs import is_global_zero



def top_level_help() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: hashbench <command> [options]     (the same as `lightning <command>` and `python -m hashbench`)",
             "", "Deep image hashing on PyTorch Lightning: reproduce the papers, compare methods fairly, export and "
             "search codes.", "", "commands:"]
    for name, (what, example) in COMMANDS.items():
        lines += [f"  {name:<{width}}  {what}", f"  {'':<{width}}    e.g. {example}"]
    lines += ["", "`hashbench <command> --help` lists a command's options. A config name alone (cifar_cib.yaml) is looked",
              "up under experiments/. Mistakes print one `hashbench: error:` line; HASHBENCH_TRACEBACK=1 shows the",
              "traceback."]
    return "\n".join(lines)


#: the LightningCLI part, imported on first use (``from hashbench.cli import run_cli`` keeps working)
_LIGHTNING_CLI_NAMES = ("HashbenchCLI", "run_cli", "connect", "LoggerSaveConfigCallback", "wandb_api_key_configured")


def __getattr__(name: str):
    if name in _LIGHTNING_CLI_NAMES:
        return getattr(import_module("hashbench.lightning_cli"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _launched_rank() -> str:
    return launcher_rank() or "?"


def _dispatch(argv: list[str]) -> None:
    command = argv[0] if argv else None
    if command is None and not is_global_zero():
        # a DDP rank re-run from a command line that did not hold the command (e.g. a program that called
        # hashbench.cli.main([...]) itself): printing the help and exiting 0 would leave rank 0 waiting forever
        raise errors.ConfigError(
            f"this process was started as DDP rank {_launched_rank()} but its command line holds no hashbench "
            "command (the launcher re-runs the command line of the process that started it). Start multi-process "
            "runs from the command itself: `hashbench fit --config … --trainer.devices 2 --trainer.strategy ddp`, "
            "or `torchrun --nproc_per_node 2 -m hashbench fit --config …`.")
    if command is None or command in ("-h", "--help", "help"):
        print(top_level_help())
        return
    if command not in COMMANDS and not command.startswith("-"):
        raise errors.ConfigError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)} "
                                 "(`hashbench --help` says what each does)")
    rest = resolve_argv(argv[1:])
    if command == "compare":
        from hashbench.compare import main as compare_main
        compare_main(rest)
    elif command == "reproduce":
        import_module("hashbench.reproduce").main(rest)
    elif command in ("encode", "evaluate", "search"):
        code = _export_main(command)(rest)
        if code:
            raise SystemExit(code)
    else:
        from .lightning_cli import run_cli
        run_cli([command, *rest] if command in LIGHTNING_COMMANDS else resolve_argv(argv))


def _export_main(command: str):
    """The ``main`` of encode/evaluate/search, imported only when that command runs."""
    if command == "encode":
        from .encode_command import encode_main
        return encode_main
    if command == "evaluate":
        from .evaluate_command import evaluate_main
        return evaluate_main
    from .search_command import search_main
    return search_main


def main(args=None) -> None:
    """Console entry point of ``hashbench``, ``lightning`` and ``python -m hashbench``."""
    argv = sys.argv[1:] if args is None else list(args)
    with errors.reported(command=argv[0] if argv else "fit"):
        _dispatch(argv)
