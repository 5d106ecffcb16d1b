"""A run's LightningCLI arguments: its method's official schedule (a config file under ``<results>/configs/``), then
the user's ``--config`` files, the ``--method-config`` entry for its method, bits and seed, then the user's overrides."""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Optional

import yaml

from . import paper_settings
from .sweep_grid import Cell


class RunConfigs:
    """Writes the per-method config files of one results folder (the writing process only) and builds each run's
    arguments from them."""

    def __init__(self, args: argparse.Namespace, overrides: list[str], configs_dir: Path, writer: bool):
        self.args, self.overrides, self.configs_dir, self.writer = args, overrides, configs_dir, writer
        self.data_class = self._data_class()  # read once: every method file names it

    def _data_class(self) -> Optional[str]:
        """The data class of the user's configs (the method files below name it so their batch size merges)."""
        found = None
        for c in self.args.config:
            with contextlib.suppress(OSError, yaml.YAMLError, AttributeError, TypeError):
                found = (yaml.safe_load(Path(c).read_text()) or {}).get("data", {}).get("class_path") or found
        return found

    def _write(self, path: Path, text: str) -> None:
        """Only when it changes: another process of this sweep may be reading it."""
        if self.writer and (not path.is_file() or path.read_text() != text):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def _method_file(self, cell: Cell) -> str:
        """The method's official schedule and batch size; the user's configs (after it) decide the data."""
        cfg = paper_settings.method_config(cell.method, protocol_settings=False, select=False)
        cfg["trainer"]["max_epochs"] = paper_settings.epochs_for(cell.method, cell.bits)
        if self.data_class:
            cfg["data"] = {"class_path": self.data_class, "init_args": cfg["data"]["init_args"]}
        else:
            cfg.pop("data")
        path = self.configs_dir / f"{cell.method}_{cell.bits}b.yaml"
        self._write(path, yaml.safe_dump(cfg, sort_keys=False))
        return str(path)

    def _override_file(self, method: str) -> Optional[str]:
        extra = self.args.method_overrides.get(method)
        if not extra:
            return None
        path = self.configs_dir / f"{method}_overrides.yaml"
        self._write(path, yaml.safe_dump(extra, sort_keys=False))
        return str(path)

    def cli_args(self, cell: Cell) -> list[str]:
        a = ["--config", self._method_file(cell)]
        for c in self.args.config:
            a += ["--config", c]
        extra = self._override_file(cell.method)
        if extra:
            a += ["--config", extra]
        a += ["--model.bits", str(cell.bits), "--seed_everything", str(cell.seed)]
        if not self.args.verbose:
            a += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
        return a + self.overrides
