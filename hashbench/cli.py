"""The one place that knows every class: LightningCLI over all methods, datamodules and callbacks.

``hashbench fit --config experiments/cifar_cib.yaml`` (also installed as ``lightning``, and
``python -m hashbench``). ``hashbench compare ...`` runs method × bits × seed sweeps (hashbench/compare.py).
"""
from __future__ import annotations

import netrc
import os
import sys
import warnings
from importlib import import_module
from typing import Optional
import yaml
from lightning.pytorch.cli import ArgsType, LightningCLI, SaveConfigCallback

# Imported for their side effect: short class_path names (CIBHash, CIFAR10, RetrievalEvaluation)
# resolve only for classes that are already imported.
import callbacks.feature_cache  # noqa: F401
import callbacks.retrieval  # noqa: F401
import datamodules  # noqa: F401
import lightning_modules.bihalf  # noqa: F401
import lightning_modules.cibhash  # noqa: F401
import lightning_modules.dch  # noqa: F401
import lightning_modules.greedyhash  # noqa: F401
from datamodules.base import HashDataModule
from lightning_modules.base import HashModule

# A frozen backbone is in eval mode (frozen BatchNorm; freeze_mode=eval) on purpose; Lightning warns about it
# at every fit. Silenced for hashbench runs only (this module is the CLI's).
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


def wandb_api_key_configured() -> bool:
    """True when wandb can log in without asking: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _uses_wandb(logger_cfg) -> bool:
    entries = logger_cfg if isinstance(logger_cfg, list) else [logger_cfg]
    return any("WandbLogger" in str(getattr(e, "class_path", "") or "") for e in entries)


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Besides writing config.yaml, upload the full resolved config to W&B so runs can be filtered by
    any hyperparameter. Runs on rank 0 only: no collective calls here."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        from lightning.pytorch.loggers import WandbLogger
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update({"cli": config}, allow_val_change=True)


def _short(class_path) -> str:
    return str(class_path or "").rsplit(".", 1)[-1]


def _find_cause(err: BaseException, kind: type) -> Optional[BaseException]:
    """The first exception of ``kind`` in ``err``'s cause/context chain (jsonargparse wraps ours)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


class HashbenchCLI(LightningCLI):
    def instantiate_classes(self) -> None:
        """Report every missing input at once (e.g. ImageNet weights *and* the dataset) as one clear error,
        instead of jsonargparse's union-validation traceback around the first one."""
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as err:
            missing = _find_cause(err, FileNotFoundError)
            if missing is None:
                raise
            problems = [str(missing)]
            data_problem = self._probe_data()
            if data_problem:
                problems.append(data_problem)
            numbered = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(problems, 1)) if len(problems) > 1 \
                else problems[0]
            raise FileNotFoundError(numbered) from None

    def _probe_data(self) -> Optional[str]:
        """Set up the configured datamodule alone and return its missing-file message, if any."""
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        try:
            data_cfg = cfg.data
            module, name = data_cfg.class_path.rsplit(".", 1)
            dm = getattr(import_module(module), name)(**data_cfg.init_args.as_dict())
            dm.prepare_data()
            dm.setup("fit")
        except FileNotFoundError as err:
            return str(err)
        except Exception:  # the probe is best effort: the real run reports anything else
            return None
        return None

    def before_instantiate_classes(self) -> None:
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        logger_cfg = cfg.get("trainer", {}).get("logger") if cfg is not None else None
        if not logger_cfg or not _uses_wandb(logger_cfg):
            return
        if not os.environ.get("WANDB_MODE") and not wandb_api_key_configured():
            os.environ["WANDB_MODE"] = "offline"
            print("hashbench: no W&B API key configured, so W&B logs offline. Upload later with "
                  "`wandb sync <save_dir>/wandb/offline-run-*` (or run `wandb login` first).", file=sys.stderr)
        # runs of one dataset × code length share a group; the method is a tag: the dashboard compares
        # methods at a glance. Filled here because bits are usually overridden on the command line.
        method, dataset = _short(cfg.model.class_path), _short(cfg.data.class_path)
        bits, seed = cfg.model.init_args.get("bits"), cfg.get("seed_everything")
        for entry in logger_cfg if isinstance(logger_cfg, list) else [logger_cfg]:
            if "WandbLogger" not in _short(entry.class_path):
                continue
            args = entry.init_args
            if args.get("group") is None:
                args.group = f"{dataset}-{bits}bit"
            args.tags = sorted({*(args.get("tags") or []), method, dataset})
            if args.get("name") is None:
                args.name = f"{method}-{bits}b-seed{seed}"


def run_cli(args: ArgsType = None, run: bool = True) -> HashbenchCLI:
    """Build (and by default run) the LightningCLI; returns it so callers can reach trainer/model/datamodule."""
    return HashbenchCLI(
        HashModule, HashDataModule, subclass_mode_model=True, subclass_mode_data=True,
        save_config_callback=LoggerSaveConfigCallback, save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False, args=args, run=run)


def main(args: ArgsType = None) -> None:
    """Console entry point of ``hashbench``, ``lightning`` and ``python -m hashbench``."""
    argv = sys.argv[1:] if args is None else list(args)
    try:
        if argv and argv[0] == "compare":
            from hashbench.compare import main as compare_main
            compare_main(argv[1:])
        else:
            run_cli(args)
    except FileNotFoundError as err:  # missing dataset / weights: the message says what to do
        if os.environ.get("HASHBENCH_TRACEBACK"):
            raise
        print(f"hashbench: error: {err}\n(set HASHBENCH_TRACEBACK=1 for the full traceback)", file=sys.stderr)
        raise SystemExit(2) from None
