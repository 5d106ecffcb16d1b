"""A run's identity: 12 hex digits of its resolved LightningCLI configuration (the run folder's name holds it, so a
change here orphans every existing run folder: keep the digest byte-identical)."""
from __future__ import annotations

import hashlib
import json

import yaml

#: resolved-config keys that do not change a result (where it is written, how much is printed)
NOT_HASHED = ("run_name", "trainer.default_root_dir", "trainer.logger", "trainer.enable_progress_bar",
              "trainer.enable_model_summary", "trainer.log_every_n_steps", "data.init_args.num_workers")


class _Parsed(Exception):
    def __init__(self, config: dict):
        self.config = config


def _drop(cfg: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        cfg = cfg.get(key) if isinstance(cfg, dict) else None
        if cfg is None:
            return
    if isinstance(cfg, dict):
        cfg.pop(leaf, None)


def config_hash(args: list[str]) -> str:
    """12 hex digits of the resolved configuration (LightningCLI's own parse, nothing instantiated)."""
    from .lightning_cli import HashbenchCLI, run_cli

    class ParseOnly(HashbenchCLI):
        """Stops at LightningCLI's public ``before_instantiate_classes`` hook with the parsed config (a subclass per
        call, so two sweeps in one process never see each other's hook)."""

        def before_instantiate_classes(self) -> None:
            raise _Parsed(yaml.safe_load(self.parser.dump(self.config, skip_none=False)))

    try:
        run_cli(args, run=False, cli_class=ParseOnly)
    except _Parsed as parsed:
        cfg = parsed.config
    for key in NOT_HASHED:
        _drop(cfg, key)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]
