"""Pins each private Lightning/argparse access in hashbench/framework_internals.py (one test per access, named after
it), and fails on any new ``_``-named access to those libraries elsewhere in our sources."""
from __future__ import annotations

import argparse
import ast
import inspect
from pathlib import Path

import jsonargparse
import pytest
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from hashbench import framework_internals
from hashbench.lightning_cli import HashbenchCLI

ROOT = Path(__file__).resolve().parents[1]
OUR_PACKAGES = ("hashbench", "callbacks", "lightning_modules", "datamodules", "hashcore")
ADAPTER = Path("hashbench/framework_internals.py")
FRAMEWORK_CLASSES = (LightningCLI, SaveConfigCallback, LightningModule, LightningDataModule, Trainer, Callback,
                     ModelCheckpoint, CSVLogger, TensorBoardLogger, WandbLogger, argparse.ArgumentParser,
                     argparse.Action, argparse._ArgumentGroup, jsonargparse.ArgumentParser)
# private names of the frameworks that the adapter (and only it) may touch
ADAPTER_NAMES = {"_prepare_subcommand_parser", "_parse_ckpt_path", "_actions", "_action_groups", "_group_actions"}
# accesses outside the adapter not yet replaced: file -> names. Empty: keep it so (a new one fails the test)
KNOWN_REMAINING: dict = {}
# our own helpers whose names happen to equal a private framework name (not framework access)
OUR_OWN_NAMES = {"_parser", "_results", "_get"}


def _framework_private_names() -> set:
    names = set()
    for cls in FRAMEWORK_CLASSES:
        for klass in inspect.getmro(cls):
            if klass.__module__.split(".")[0] in ("lightning", "jsonargparse", "argparse", "wandb"):
                names.update(n for n in vars(klass) if n.startswith("_") and not n.startswith("__"))
    # set in __init__, so not in the class dict
    names.update(("_hparams_initial", "_experiment", "_actions", "_action_groups", "_group_actions"))
    return names - OUR_OWN_NAMES


def _private_framework_uses(path: Path, framework: set) -> set:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in framework:
            found.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in framework:
            found.add(node.name)  # an override of a private framework method
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "setattr", "hasattr") \
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value in framework:
            found.add(node.args[1].value)
    return found


def test_no_private_framework_access_outside_the_adapter():
    framework = _framework_private_names()
    offences = {}
    for package in OUR_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel == ADAPTER:
                continue
            extra = _private_framework_uses(path, framework) - KNOWN_REMAINING.get(rel.as_posix(), set())
            if extra:
                offences[rel.as_posix()] = sorted(extra)
    assert not offences, (f"private Lightning/jsonargparse/argparse/W&B attributes used outside {ADAPTER}: {offences}. "
                          "Use a public API, or move the access into the adapter with a test pinning it.")


def test_adapter_touches_only_listed_names():
    assert _private_framework_uses(ROOT / ADAPTER, _framework_private_names()) <= ADAPTER_NAMES


@pytest.mark.parametrize("name", ["_prepare_subcommand_parser", "_parse_ckpt_path"])
def test_lightning_cli_private_step_exists(name):
    """The adapter overrides these LightningCLI steps; they must still exist and be called by LightningCLI."""
    assert callable(getattr(LightningCLI, name, None)), f"LightningCLI.{name} is gone: update framework_internals"
    assert f"self.{name}(" in inspect.getsource(LightningCLI), f"LightningCLI no longer calls {name}"


def test_parse_ckpt_path_runs_before_instantiation():
    """before_checkpoint_path must run before LightningCLI reads the checkpoint's hparams and builds classes."""
    source = inspect.getsource(LightningCLI.__init__)
    assert source.index("self._parse_ckpt_path(") < source.index("self.before_instantiate_classes(")


def test_prepare_subcommand_parser_hook_sees_each_subcommand(monkeypatch, capsys):
    from hashbench.lightning_cli import run_cli
    seen = []
    original = HashbenchCLI.after_subcommand_parser

    def probe(self, parser, subcommand):
        seen.append(subcommand)
        original(self, parser, subcommand)

    monkeypatch.setattr(HashbenchCLI, "after_subcommand_parser", probe)
    with pytest.raises(SystemExit):
        run_cli(["fit", "--help"])
    assert {"fit", "validate", "test"} <= set(seen)
    assert "--ckpt_path" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["_actions", "_action_groups", "_group_actions"])
def test_argparse_private_lists_move_the_checkpoint_group(name):
    """lead_with_checkpoint moves --ckpt_path's group before the trainer's and replaces its help."""
    parser = jsonargparse.ArgumentParser()
    trainer = parser.add_argument_group("trainer")
    trainer.add_argument("--trainer.max_epochs", type=int)
    run = parser.add_argument_group("run")
    run.add_argument("--ckpt_path", type=str, help="lightning's text")
    assert isinstance(getattr(parser if name != "_group_actions" else run, name), list)
    framework_internals.lead_with_checkpoint(parser, "ours")
    titles = [g.title for g in parser._action_groups]
    assert titles.index("run") < titles.index("trainer")
    assert "ours" in parser.format_help() and "lightning's text" not in parser.format_help()
