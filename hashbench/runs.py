"""Stable run directories: where one run's checkpoints and logs live, so a killed run can be resumed.

A run is named after what it trains — ``<dataset>-<protocol>-<method>-<bits>b-seed<seed>`` — or ``--run_name``, and
lives in ``<root>/<name>/`` (root: ``trainer.default_root_dir`` if given, else ``runs``)::

    checkpoints/last.ckpt      written at the end of every epoch (atomically), what ``--ckpt_path last`` resumes
    checkpoints/best-*.ckpt    the selected checkpoint, when the config selects on a validation split
    checkpoints/*.ckpt.sha256  the checksum written with each checkpoint, verified before it is loaded
    hpc_ckpt_N.ckpt            Lightning's SLURM auto-requeue checkpoint (written on the requeue signal, mid-epoch);
                               ``--ckpt_path last`` resumes it when it got further than last.ckpt
    csv/version_N/metrics.csv  the logged metrics, whatever other logger the config has (W&B disabled or offline)
    wandb/                     W&B's files; W&B resumes the same run id (``wandb_id``)
    config.yaml                the resolved configuration of the latest start

The seed in the name is the seed the run uses (``seed_everything: true`` picks one; the name says which).
"""
from __future__ import annotations

import importlib
import os
import re
import secrets
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hashcore.launcher import is_launching_process

DEFAULT_ROOT = "runs"
LAST = "last.ckpt"
#: what Lightning's SLURM auto-requeue writes into trainer.default_root_dir (= the run folder under the CLI)
HPC_CHECKPOINTS = "hpc_ckpt_*.ckpt"


class RunError(ValueError):
    """A run directory or checkpoint problem the user can fix (exit 2)."""


def _class_attr(class_path: Optional[str], name: str, default=None):
    """A class attribute of the class a config names (protocol defaults, dataset names), without instantiating."""
    if not class_path or "." not in str(class_path):
        return default
    module, cls = str(class_path).rsplit(".", 1)
    try:
        return getattr(getattr(importlib.import_module(module), cls), name, default)
    except (ImportError, AttributeError):
        return default


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(text)).strip("_") or "run"


@dataclass(frozen=True)
class RunIdentity:
    """What a run trains: the keys runs are named, grouped and filtered by (W&B config, compare rows)."""

    method: str
    method_class: str
    dataset: str
    protocol: str
    bits: Optional[int]
    seed: Optional[int]
    supervised: bool

    @classmethod
    def from_config(cls, cfg) -> "RunIdentity":
        model_path, data_path = str(cfg.model.class_path), str(cfg.data.class_path)
        model_args, data_args = cfg.model.get("init_args") or {}, cfg.data.get("init_args") or {}
        dataset = data_args.get("name") or _class_attr(data_path, "dataset_name") or data_path.rsplit(".", 1)[-1]
        protocol = data_args.get("protocol") or _class_attr(data_path, "default_protocol") or ""
        supervised = bool(model_args.get("supervised", _class_attr(model_path, "supervised", False)))
        seed = cfg.get("seed_everything")
        return cls(method=_class_attr(model_path, "method_name") or model_path.rsplit(".", 1)[-1].lower(),
                   method_class=model_path.rsplit(".", 1)[-1], dataset=str(dataset), protocol=str(protocol),
                   bits=model_args.get("bits"), seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
                   supervised=supervised)

    @property
    def name(self) -> str:
        parts = [self.dataset, self.protocol, self.method, f"{self.bits}b", f"seed{self.seed}"]
        return _slug("-".join(p for p in parts if p))

    @property
    def group(self) -> str:
        """Seeds of one method × dataset × protocol × bits: one W&B group (mean ± band over seeds)."""
        return _slug("-".join(p for p in [self.dataset, self.protocol, self.method, f"{self.bits}b"] if p))

    def as_config(self) -> dict:
        return {"method": self.method_class, "method_name": self.method, "dataset": self.dataset,
                "protocol": self.protocol, "bits": self.bits, "seed": self.seed, "supervised": self.supervised}


def run_dir(root: Optional[str], name: str) -> Path:
    """Absolute: loggers' helper processes (W&B's service) may live in another working directory."""
    return (Path(root or DEFAULT_ROOT) / name).absolute()


def checkpoint_dir(run: Path) -> Path:
    return run / "checkpoints"


def checkpoint_progress(path: Path) -> Optional[tuple]:
    """How far training had got when ``path`` was written — (global_step, epoch) as saved in it — or None if it cannot
    be read (a damaged file; the checksum check names it if it is chosen anyway). mmap: the weights are not read."""
    import torch
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ckpt.get("global_step", 0)), int(ckpt.get("epoch", 0))
    except Exception:  # unreadable for any reason: it just cannot win
        return None


def resume_candidates(run: Path) -> list[Path]:
    """The checkpoints a resume may continue from: ``checkpoints/last.ckpt`` (every epoch end) and Lightning's
    ``hpc_ckpt_N.ckpt`` (SLURM requeue signal) in the run folder."""
    last = checkpoint_dir(run) / LAST
    return ([last] if last.is_file() else []) + sorted(run.glob(HPC_CHECKPOINTS))


def newest_checkpoint(run: Path) -> Optional[Path]:
    """The candidate that got furthest: by the saved (global_step, epoch) — closed-form methods take no step, so the
    epoch decides — and the file's time only between equals; None when the run has none."""
    found = resume_candidates(run)
    if not found:
        return None
    progress = {p: checkpoint_progress(p) for p in found}
    readable = [p for p in found if progress[p] is not None] or found
    best = max(readable, key=lambda p: (*(progress[p] or (-1, -1)), p.stat().st_mtime))
    if best.name != LAST and len(found) > 1 and is_global_zero():
        others = ", ".join(f"{p.name} (step {progress[p][0]}, epoch {progress[p][1]})" if progress[p] else
                           f"{p.name} (unreadable)" for p in found if p != best)
        print(f"hashbench: note: resuming {run.name} from {best.name} (step {progress[best][0]}, epoch "
              f"{progress[best][1]}), written when SLURM requeued the job, newer than {others}", file=sys.stderr)
    return best


def slurm_requeued() -> bool:
    """This process is a SLURM job started again after a requeue (preemption, time limit, Lightning's auto-requeue):
    the same command line, so a ``fit`` without ``--ckpt_path`` continues its run instead of refusing it."""
    return (os.environ.get("SLURM_RESTART_COUNT") or "0").strip() not in ("", "0")


def find_checkpoint(run: Path, which: str) -> Path:
    """``last`` (the newest of last.ckpt and a SLURM requeue checkpoint) / ``best`` of a run directory; a clear error
    when the run has none."""
    ckpts = checkpoint_dir(run)
    if which == "last":
        path = newest_checkpoint(run)
        if path is not None:
            return path
        path = ckpts / LAST
        raise RunError(f"--ckpt_path last: run {run.name!r} has no checkpoint to resume ({path} does not exist). "
                       "A checkpoint is written at the end of every epoch; start the run without --ckpt_path, or name "
                       f"the run to resume with --run_name (runs under {run.parent}: "
                       f"{', '.join(sorted(p.name for p in run.parent.glob('*') if p.is_dir())[:8]) or 'none'})")
    best = sorted(ckpts.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    raise RunError(f"--ckpt_path best: run {run.name!r} has no selected checkpoint in {ckpts} (only configs that "
                   "select on a validation split write best-*.ckpt); use --ckpt_path last or a file path")


def check_checkpoint_file(path: str) -> None:
    """A checkpoint must be a complete torch zip archive; a truncated or foreign file is named, not a traceback."""
    p = Path(path)
    if not p.is_file():
        raise RunError(f"checkpoint not found: {p} (option --ckpt_path); give a .ckpt file, or 'last' / 'best' of "
                       "this run's directory")
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise RunError(f"checkpoint {p} is unreadable ({err}): it is truncated or not a PyTorch checkpoint "
                       f"(size {p.stat().st_size:,} bytes). An interrupted copy or a full disk does this; use another "
                       "checkpoint (e.g. --ckpt_path last of the run, or a best-*.ckpt)") from None
    if not any(n.endswith("data.pkl") for n in names):
        raise RunError(f"checkpoint {p} is a zip archive but holds no PyTorch checkpoint (no data.pkl)")


def _short(class_path) -> Optional[str]:
    return str(class_path).rsplit(".", 1)[-1] if class_path else None


def _trained_as(model: dict, data: dict) -> str:
    parts = [model.get("method") or "?", f"{model.get('bits')} bits", f"backbone {model.get('backbone')}",
             f"on {data.get('data') or '?'}" + (f" ({data['protocol']} protocol)" if data.get("protocol") else "")]
    return ", ".join(parts)


def check_checkpoint_matches(ckpt: dict, cfg, path) -> None:
    """The checkpoint must hold the model the config builds: LightningCLI would otherwise replace the configured
    method, code length or backbone by the checkpoint's (after the run was named after the config), and a checkpoint
    of other data would continue on data it was not trained for."""
    hp, dhp = ckpt.get("hyper_parameters") or {}, ckpt.get("datamodule_hyper_parameters") or {}
    model_args, data_args = cfg.model.get("init_args") or {}, cfg.data.get("init_args") or {}
    saved_model = {"method": _short(hp.get("_class_path")), "bits": hp.get("bits"), "backbone": hp.get("backbone")}
    asked_model = {"method": _short(cfg.model.class_path), "bits": model_args.get("bits"),
                   "backbone": model_args.get("backbone")}
    saved_data = {"data": _short(dhp.get("_class_path")), "protocol": dhp.get("protocol"), "name": dhp.get("name")}
    asked_data = {"data": _short(cfg.data.class_path), "protocol": data_args.get("protocol"),
                  "name": data_args.get("name")}
    differ = [f"{key} {saved[key]} vs {asked[key]}" for saved, asked in ((saved_model, asked_model),
                                                                        (saved_data, asked_data))
              for key in saved if saved[key] is not None and asked[key] is not None and saved[key] != asked[key]]
    if not differ:
        return
    own_config = Path(path).resolve().parent.parent / "config.yaml"
    hint = f"--config {own_config}" if own_config.is_file() else "the config it was trained with"
    raise RunError(f"checkpoint {path} holds {_trained_as(saved_model, saved_data)}, but this command configures "
                   f"{_trained_as(asked_model, asked_data)} ({'; '.join(differ)}). Use it with {hint}, or give a "
                   "checkpoint of this configuration (--ckpt_path last resumes this config's run)")


def has_checkpoints(run: Path) -> bool:
    return any(checkpoint_dir(run).glob("*.ckpt")) or any(run.glob(HPC_CHECKPOINTS))


def check_writable(folder: Path) -> None:
    """Create ``folder`` and a file in it now, so a read-only or full disk stops the run before training, not at the
    end of its first epoch."""
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"0")
        probe.unlink()
    except OSError as err:
        raise RunError(f"run folder {folder} is not writable ({err.strerror}): checkpoints and logs go there. Make it "
                       "writable or free space on its disk, or point --trainer.default_root_dir (or --run_name) at a "
                       "writable folder") from None


def is_global_zero() -> bool:
    """True in the launching process; False in the processes Lightning's DDP launcher starts (they re-run the CLI)."""
    return is_launching_process()


def wandb_run_id(run: Path, resume: bool) -> str:
    """The W&B id of this run: reused when resuming (same W&B run), new for a fresh start. Only the launching
    process writes it (DDP children read the id it wrote before launching them)."""
    path = run / "wandb_id"
    if (resume or not is_global_zero()) and path.is_file():
        return path.read_text().strip()
    run.mkdir(parents=True, exist_ok=True)
    run_id = secrets.token_hex(4)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(run_id + "\n")
    os.replace(tmp, path)
    return run_id
