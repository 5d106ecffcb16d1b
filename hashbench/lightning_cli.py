"""The one place that knows every class: LightningCLI over every registered method, datamodule and callback.

``hashbench fit --config experiments/cifar_cib.yaml`` reaches this module through the console dispatcher
(``hashbench/cli.py``, which imports nothing heavy so help and usage errors answer at once). Besides LightningCLI as
shipped, this file adds what a weekend run needs: a stable run directory per run
(``hashbench/runs.py``) so ``--ckpt_path last`` resumes it, the one model ↔ data hand-over (:func:`connect`), start-up
checks of what a run would otherwise crash on late, and one ``hashbench: error:`` line for user mistakes
(``hashbench/errors.py``).
"""
from __future__ import annotations

from contextlib import contextmanager
import logging
import netrc
import os
import sys
import warnings
from importlib import import_module
from typing import Optional

import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import ArgsType, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import TorchCheckpointIO

# Importing these makes short class_path names (CIBHash, CIFAR10, RetrievalEvaluation) resolve: jsonargparse
# only finds subclasses that are already imported. Methods and datasets are discovered: each
# package's discover() imports all its modules.
import callbacks.checkpoints  # noqa: F401
import callbacks.feature_cache  # noqa: F401
import callbacks.reproducibility  # noqa: F401
import callbacks.retrieval  # noqa: F401
import datamodules
import lightning_modules
from callbacks.checkpoints import LastCheckpoint
from callbacks.reproducibility import EpochSeeding
from datamodules.base import HashDataModule
from lightning_modules.base import HashModule

from . import errors, paper_settings
from .framework_internals import SubcommandHooks, lead_with_checkpoint
from .commands import LIGHTNING_COMMANDS
from .checkpoint_io import SafeCheckpointIO, read_checkpoint
from .cuda_probe import skip_nvml_probe_without_driver
from .ddp_launch import watch_launch
from .progress_bar import default_progress_bar
from .runs import (DEFAULT_ROOT, RunError, RunIdentity, check_checkpoint_file, check_checkpoint_matches,
                   check_writable, checkpoint_dir, find_checkpoint, has_checkpoints, is_global_zero, run_dir,
                   slurm_requeued, wandb_run_id)

lightning_modules.discover()
datamodules.discover()

class _Drop(logging.Filter):
    """Drops the records whose message holds ``text`` within its first ``within`` characters."""

    def __init__(self, text: str, within: int):
        super().__init__()
        self.text, self.within = text, within

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in str(record.getMessage())[:self.within]


#: logger name → what of it a researcher does not need to read
_DROPPED_LOG_LINES = {
    # Lightning's advertisements for its cloud products
    "lightning.pytorch.utilities.rank_zero": _Drop("Tip:", within=12),
    # printed at every checkpoint save: our checkpoints are full (weights, optimiser, loops) on purpose
    "lightning.pytorch.trainer.connectors.checkpoint_connector": _Drop("`weights_only` was not set", within=40),
}


@contextmanager
def framework_noise_filtered():
    """Lightning's warnings that say nothing to a hashbench user, silenced while a command runs (not on import, so
    a researcher importing our modules in a notebook keeps every warning)."""
    for name, drop in _DROPPED_LOG_LINES.items():
        logging.getLogger(name).addFilter(drop)
    try:
        with warnings.catch_warnings():
            # A frozen backbone is in eval mode (frozen BatchNorm; freeze_mode=eval) on purpose; Lightning warns at
            # every fit.
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
            # The console hands LightningCLI the command line it parsed (config names resolved) and leaves sys.argv as
            # typed, so that DDP's launcher re-runs the user's command; Lightning warns whenever both are set.
            warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within Python")
            # Lightning 2.6's own use of a torch pytree API that torch 2.14 deprecates: nothing a user can change
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            yield
    finally:
        for name, drop in _DROPPED_LOG_LINES.items():
            logging.getLogger(name).removeFilter(drop)


def wandb_api_key_configured() -> bool:
    """True when wandb can log in without asking: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def connect(model, datamodule) -> None:
    """The one model ↔ data hand-over (docs/CONTRACTS.md): the model's train input needs go to the datamodule,
    the data's number of classes to the model, and the batch size is checked against the loss before training."""
    transform = getattr(model, "train_transform", None)
    if transform == "eval":  # closed-form baselines fit on the deterministic evaluation view
        transform = getattr(datamodule, "eval_transform", None)
    request = getattr(datamodule, "request_train_input", None)
    if request is not None:
        request(views=int(getattr(model, "train_views", 1) or 1), transform=transform)
    num_classes = getattr(datamodule, "num_classes", None)
    if num_classes is not None and hasattr(model, "set_num_classes"):
        model.set_num_classes(int(num_classes))
    if hasattr(model, "check_batch_size") and getattr(datamodule, "batch_size", None) is not None:
        model.check_batch_size(int(datamodule.batch_size))


def _entries(value) -> list:
    if not value or value is True:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _short(class_path) -> str:
    return str(class_path or "").rsplit(".", 1)[-1]


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Besides writing config.yaml, give W&B the run's identity as top-level config keys (method, dataset,
    protocol, bits, seed, supervised: the dashboard groups and filters by them) and the full resolved config.
    Runs on rank 0 only: no collective calls here."""

    def __init__(self, *args, identity: Optional[RunIdentity] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.identity = identity

    def save_config(self, trainer, pl_module, stage: str) -> None:
        from lightning.pytorch.loggers import WandbLogger
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                keys = self.identity.as_config() if self.identity else {}
                logger.experiment.config.update({**keys, "cli": config}, allow_val_change=True)


class _WorkStarted(Callback):
    """From the first batch on, an unexpected error is a bug (traceback), no longer a configuration mistake."""

    def _started(self, *args, **kwargs) -> None:
        errors.work_started()

    on_train_batch_start = on_validation_batch_start = on_test_batch_start = on_predict_batch_start = _started


#: one usage line instead of jsonargparse's 47 (one per Trainer option); the options follow in this order
USAGE = ("%(prog)s [--config CONFIG ...] [--model METHOD] [--data DATASET] [--run_name NAME]\n"
         "       [--ckpt_path last|best|PATH] [--seed_everything SEED] [--trainer.OPTION VALUE ...] [--print_config]")
CKPT_PATH_HELP = (
    "the checkpoint to start from: 'last' = this run folder's checkpoints/last.ckpt (fit: resume the run after a crash "
    "or a kill; test/validate: the last epoch's weights), 'best' = the run folder's best-*.ckpt selected on "
    "validation, or the path of a .ckpt file. The run folder is <trainer.default_root_dir>/<run_name> "
    "(runs/<dataset>-<protocol>-<method>-<bits>b-seed<seed> unless --run_name is given).")


class HashbenchCLI(SubcommandHooks, LightningCLI):
    identity: RunIdentity
    run: "os.PathLike"
    resuming: bool = False

    def add_default_arguments_to_parser(self, parser) -> None:
        """Nothing here: --seed_everything comes with the core arguments, after what a researcher sets first."""

    def add_core_arguments_to_parser(self, parser) -> None:
        """Model, data, run name and seed before the Trainer's ~45 options: the order of ``--help`` and of
        ``--print_config``."""
        parser.add_lightning_class_args(self.model_class, "model", subclass_mode=self.subclass_mode_model)
        parser.add_lightning_class_args(self.datamodule_class, "data", subclass_mode=self.subclass_mode_data)
        parser.add_argument(
            "--run_name", type=Optional[str], default=None,
            help="this run's directory under trainer.default_root_dir (default 'runs'), where its checkpoints and logs "
                 "live; default <dataset>-<protocol>-<method>-<bits>b-seed<seed>. --ckpt_path last resumes it.")
        super().add_default_arguments_to_parser(parser)  # --seed_everything
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"})

    def after_subcommand_parser(self, parser, subcommand: str) -> None:
        if subcommand in ("validate", "test"):
            parser.set_defaults(verbose=False)  # the retrieval callback prints its metrics once itself
        lead_with_checkpoint(parser, CKPT_PATH_HELP)

    def instantiate_trainer(self, **kwargs):
        trainer_cfg = self.config_init.get(self.subcommand, self.config_init).get("trainer") or {}
        callbacks = trainer_cfg.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        # Lightning's default bar redraws after every batch (x1.3 on the autoencoders' few-ms steps): ours redraws by
        # time; a bar the user configured, or --trainer.enable_progress_bar false, is left as it is
        if trainer_cfg.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            kwargs.setdefault("callbacks", [*callbacks, default_progress_bar()])
        trainer = super().instantiate_trainer(**kwargs)
        watch_launch(trainer)  # a DDP launch that cannot form its process group stops with a message, never hangs
        return trainer

    def _cfg(self):
        return self.config.get(self.config.get("subcommand")) if self.config.get("subcommand") else self.config

    # ---- run directory and checkpoint (before anything is built) --------------------------------------
    def before_checkpoint_path(self) -> None:
        cfg = self._cfg()
        if cfg.get("seed_everything") is True:  # Lightning picks the seed later; pick it now so the run is named by it
            from lightning.pytorch import seed_everything
            cfg.seed_everything = seed_everything(workers=True)
        self.identity = RunIdentity.from_config(cfg)
        root = cfg.trainer.get("default_root_dir") or DEFAULT_ROOT
        self.run = run_dir(root, cfg.get("run_name") or self.identity.name)
        ckpt = cfg.get("ckpt_path")
        if ckpt in ("last", "best"):
            ckpt = cfg.ckpt_path = str(find_checkpoint(self.run, ckpt))
        elif not ckpt and self.config.get("subcommand") == "fit" and slurm_requeued() and has_checkpoints(self.run):
            ckpt = cfg.ckpt_path = str(find_checkpoint(self.run, "last"))  # the same command, requeued by SLURM
        if ckpt:
            # checksum, data only, and the model the config builds: before LightningCLI reads its hyper-parameters
            check_checkpoint_file(ckpt)
            check_checkpoint_matches(read_checkpoint(ckpt, mmap=True), cfg, ckpt)
        subcommand = self.config.get("subcommand")
        if subcommand is None:  # a programmatic fit (hashbench compare) resumes what its run directory holds
            self.resuming = has_checkpoints(self.run)
        else:  # only a fresh fit starts a new run (and W&B run); resuming, validate and test continue the run's
            self.resuming = not (subcommand == "fit" and not ckpt)
        if subcommand == "fit" and not ckpt and is_global_zero() and has_checkpoints(self.run):
            raise RunError(f"run directory {self.run} already holds checkpoints of an earlier run. Resume it with "
                           "--ckpt_path last, start a separate run with --run_name <new name>, or delete "
                           f"{checkpoint_dir(self.run)} to start this one again from scratch.")

    def before_instantiate_classes(self) -> None:
        cfg = self._cfg()
        cfg.trainer.default_root_dir = str(self.run)
        if self.config.get("subcommand") and is_global_zero():  # a read-only or full disk: now, not after epoch 1
            check_writable(checkpoint_dir(self.run) if self._checkpointing_enabled() else self.run)
        for entry in _entries(cfg.trainer.get("logger")):
            self._configure_logger(entry)
        self.save_config_kwargs = {**self.save_config_kwargs, "identity": self.identity}

    def _configure_logger(self, entry) -> None:
        kind, args = _short(entry.class_path), entry.init_args
        if kind == "CSVLogger":
            args.save_dir, args.name = str(self.run), "csv"
        elif kind == "TensorBoardLogger":
            args.save_dir, args.name = str(self.run), "tensorboard"
        elif kind == "WandbLogger":
            if not os.environ.get("WANDB_MODE") and not wandb_api_key_configured():
                os.environ["WANDB_MODE"] = "offline"
                print(f"hashbench: no W&B API key configured, so W&B logs offline. Upload later with "
                      f"`wandb sync {self.run}/wandb/offline-run-*` (or run `wandb login` first).", file=sys.stderr)
            ident = self.identity
            args.save_dir = str(self.run)
            args.id = args.get("id") or wandb_run_id(self.run, resume=self.resuming)
            args.resume = "allow"
            args.group = args.get("group") or ident.group  # the seeds of one method × data × bits
            args.name = args.get("name") or self.run.name
            args.tags = sorted({*(args.get("tags") or []), ident.method_class, ident.dataset, ident.protocol,
                                f"{ident.bits}bit", "supervised" if ident.supervised else "unsupervised"} - {""})

    # ---- after everything is built: hand-over and start-up checks -----------------------------------------
    def instantiate_classes(self) -> None:
        """Report every missing input at once (e.g. ImageNet weights *and* the dataset) as one clear error,
        instead of jsonargparse's union-validation traceback around the first one."""
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as err:
            missing = next((e for e in errors.chain(err) if isinstance(e, FileNotFoundError)), None)
            if missing is None:
                raise
            problems = [str(missing)]
            data_problem = self._probe_data()
            if data_problem and data_problem not in problems:
                problems.append(data_problem)
            numbered = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(problems, 1)) if len(problems) > 1 \
                else problems[0]
            raise errors.ConfigError(numbered) from None
        connect(self.model, self.datamodule)
        self._configure_trainer_callbacks()
        self._check_monitors()
        self._note_global_batch()

    def _note_global_batch(self) -> None:
        """Under DDP every batch-level loss sees the global batch = per-device batch × devices: say how it relates
        to the paper's batch, so a 4-GPU run is the paper's recipe only when the user means it."""
        world = self.trainer.num_devices * self.trainer.num_nodes
        batch = getattr(self.datamodule, "batch_size", None)
        paper = paper_settings.declared_settings(self.identity.method)
        if world < 2 or batch is None or paper is None or not is_global_zero():
            return
        same = batch * world == paper.batch_size
        hint = "" if same or paper.batch_size % world else f"; --data.batch_size {paper.batch_size // world} gives the paper's"
        print(f"hashbench: {world} devices × data.batch_size {batch} = global batch {batch * world} (the paper's: "
              f"{paper.batch_size}){hint}", file=sys.stderr)

    def _probe_data(self) -> Optional[str]:
        """Set up the configured datamodule alone and return its missing-file message, if any."""
        try:
            data_cfg = self._cfg().data
            module, name = data_cfg.class_path.rsplit(".", 1)
            dm = getattr(import_module(module), name)(**data_cfg.init_args.as_dict())
            dm.prepare_data()
            dm.setup("fit")
        except FileNotFoundError as err:
            return str(err)
        except Exception:  # the probe is best effort: the real run reports anything else
            return None
        return None

    def _configure_trainer_callbacks(self) -> None:
        """Checkpoints live in the run directory; ``last.ckpt`` every epoch; every epoch reseeded (resume = replay);
        every checkpoint written atomically with a checksum and loaded as data only; metrics also in a local CSV."""
        strategy = self.trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:  # a plugin the user configured stays
            strategy.checkpoint_io = SafeCheckpointIO()
        loggers = self.trainer.loggers
        if loggers and not any(isinstance(lg, CSVLogger) for lg in loggers):  # W&B disabled/offline keeps no numbers
            self.trainer.loggers = [*loggers, CSVLogger(save_dir=str(self.run), name="csv")]
        cbs = self.trainer.callbacks
        if not self.trainer.loggers:  # --trainer.logger false: a learning-rate monitor has nowhere to log (it would crash)
            cbs[:] = [c for c in cbs if type(c).__name__ != "LearningRateMonitor"]
        ckpt_dir = str(checkpoint_dir(self.run))
        # Lightning's default checkpoint (no monitor, no name) would write a second copy of last.ckpt every epoch
        cbs[:] = [c for c in cbs if not (type(c) is ModelCheckpoint and c.monitor is None and c.filename is None)]
        for cb in cbs:
            if isinstance(cb, ModelCheckpoint) and not isinstance(cb, LastCheckpoint):
                if cb.dirpath is None:
                    cb.dirpath = ckpt_dir
                cb.save_last = False  # LastCheckpoint owns last.ckpt (every epoch, atomic)
        if self._checkpointing_enabled() and not any(isinstance(c, LastCheckpoint) for c in cbs):
            cbs.append(LastCheckpoint(ckpt_dir))
        seed = self._cfg().get("seed_everything")
        if isinstance(seed, int) and not isinstance(seed, bool) and not any(isinstance(c, EpochSeeding) for c in cbs):
            cbs.insert(0, EpochSeeding(seed))
        cbs.append(_WorkStarted())

    def _checkpointing_enabled(self) -> bool:
        return self._cfg().trainer.get("enable_checkpointing") is not False

    def _check_monitors(self) -> None:
        """A monitored key that validation never logs crashes the run at its first validation (epoch 20 of 60, or
        the end of epoch 1): refuse it now. Selection on the test queries is refused outright."""
        dm = self.datamodule
        evaluators = [cb for cb in self.trainer.callbacks if hasattr(cb, "metric_keys")]
        for cb in self.trainer.callbacks:
            monitor = getattr(cb, "monitor", None)
            if not monitor:
                continue
            where = f"{type(cb).__name__}(monitor={monitor!r})"
            if monitor.startswith("test/"):
                raise errors.ConfigError(f"{where}: a checkpoint is never selected on the test queries; monitor a "
                                         "val/ key (a validation split disjoint from the test queries) or none")
            if not monitor.startswith("val/"):
                continue
            if not getattr(dm, "has_validation", True):
                raise errors.ConfigError(
                    f"{where}: protocol {getattr(dm, 'protocol', '?')!r} of {type(dm).__name__} has no validation "
                    "split, so nothing is logged under val/. Hold out validation queries from the train split with "
                    "--data.val_queries N, or drop the monitor (the last epoch is then the result).")
            keys = {k for e in evaluators for k in e.metric_keys("val", getattr(dm, "top_k", None))}
            if evaluators and monitor not in keys:
                raise errors.ConfigError(f"{where}: validation logs {', '.join(sorted(keys))}, not {monitor!r}. "
                                         "Monitor val/mAP (the protocol's headline mAP, whatever its cut-off) or one "
                                         "of those keys.")


def run_cli(args: ArgsType = None, run: bool = True, cli_class: type = HashbenchCLI) -> HashbenchCLI:
    """Build (and by default run) the LightningCLI; returns it so callers can reach trainer/model/datamodule.

    ``sys.argv`` is left as it is: Lightning's ``ddp`` launcher starts the other ranks by re-running it, so it must
    stay the command that started this process (``hashbench fit|test|encode|compare …``), never a bare ``hashbench``.
    ``cli_class``: a subclass that overrides LightningCLI's public hooks (compare's config identity stops after parsing).
    """
    # parse errors are raised (not printed with the whole usage) so main() reports them in one line
    no_exit = {"exit_on_error": False}
    skip_nvml_probe_without_driver()
    with framework_noise_filtered():
        return cli_class(
            HashModule, HashDataModule, subclass_mode_model=True, subclass_mode_data=True,
            save_config_callback=LoggerSaveConfigCallback, save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False, args=args, run=run,
            parser_kwargs={**no_exit, **{c: {**no_exit, "usage": USAGE} for c in LIGHTNING_COMMANDS}})
