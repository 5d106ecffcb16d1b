"""Lightning overhead: the same model, batches and optimiser in a plain PyTorch loop vs under ``lightning.Trainer``.

Two workloads:

* ``backbone``: a backbone training step (BiHalfNet with a trainable MobileNetV2 / tiny CNN on small images).
  Target: Lightning ≤ 1.10× the plain loop.
* ``head``: the cached-feature step (4096-d cached VGG16 relu(fc6) rows read from a feature-cache memory
  map; BiHalf head), once with VGG's live suffix (dropout → fc7 → ReLU → dropout, what a cached
  BiHalf/GreedyHash run computes) and once head-only (suffix removed), where per-step framework cost
  dominates. Reported in microseconds per step.

Per step = (time between the start of the warm-up's last step and the start of the last step) / steps:
everything a step costs (batch fetch, forward, backward, optimiser, hooks, logging) is in it, the one-off
setup is not. Configurations are interleaved over ``--rounds`` rounds and the median is reported, because
a shared machine drifts. ``log_terms`` variants (subclasses here) measure what HashModule's per-step
logging costs and what the change in ``lightning_modules/base.py`` saves.

    python benchmarks/bench_lightning_overhead.py                      # CPU, small sizes (minutes)
    python benchmarks/bench_lightning_overhead.py --device cuda --backbone mobilenet_v2 --image-size 224
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from hashcore.feature_store import CachedFeatureDataset  # noqa: E402
from benchmarks.machine import machine_info  # noqa: E402
from lightning_modules import BiHalfNet  # noqa: E402
from hashcore.hash_layers import bihalf  # noqa: E402
from hashcore.losses import cosine_mse_halves  # noqa: E402


# ------------------------------------------------------------------------------------------- machine


# ------------------------------------------------------------------------------------------- data
class ImageBatches(Dataset):
    """Random images, items ``(image, label, index)`` (values do not matter for timing)."""

    def __init__(self, n: int, size: int):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.y = torch.nn.functional.one_hot(torch.arange(n) % 10, 10).float()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i], i


def synthetic_feature_cache(n: int, dim: int, folder: str, dtype=np.float16) -> CachedFeatureDataset:
    """A feature-cache entry filled with random relu(fc6)-like rows (timing does not depend on values)."""
    os.makedirs(folder, exist_ok=True)
    arr = np.lib.format.open_memmap(os.path.join(folder, "features.npy"), "w+", dtype, (n, dim))
    rng = np.random.default_rng(0)
    for s in range(0, n, 4096):
        arr[s:s + 4096] = np.maximum(rng.standard_normal((min(4096, n - s), dim)), 0).astype(dtype)
    arr.flush()
    del arr
    labels = torch.nn.functional.one_hot(torch.arange(n) % 10, 10).float()
    return CachedFeatureDataset(folder, labels, "train", meta={"shape": [n, dim], "dtype": np.dtype(dtype).name})


# ------------------------------------------------------------------------------------------- log_terms variants
class NoLogging(BiHalfNet):
    """Lower bound: the training step without any self.log (not a valid configuration, a reference)."""

    def log_terms(self, terms, batch_size):
        pass


class LossOnly(BiHalfNet):
    """Reference: only train/loss (what one self.log call per step costs)."""

    def log_terms(self, terms, batch_size):
        self.log("train/loss", terms["loss"], on_step=True, on_epoch=True, batch_size=batch_size, prog_bar=True)


class DetachedLogTerms(BiHalfNet):
    """Candidate: detach every term once (one stack) before the self.log calls."""

    def log_terms(self, terms, batch_size):
        values = torch.stack([v.detach().float() for v in terms.values()]).unbind(0)
        for name, value in zip(terms, values):
            self.log(f"train/{name}", value, on_step=True, on_epoch=True, batch_size=batch_size,
                     prog_bar=name == "loss")


VARIANTS = {"no_logging": NoLogging, "loss_only": LossOnly, "detached_log_terms": DetachedLogTerms,
            "current_log_terms": BiHalfNet}


# ------------------------------------------------------------------------------------------- loops
class Stamps(L.Callback):
    def __init__(self):
        self.t = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.t.append(time.perf_counter())


def per_step_us(stamps, warmup: int) -> float:
    s = stamps[warmup:]
    return (s[-1] - s[0]) / (len(s) - 1) * 1e6


def plain_loop(model: BiHalfNet, loader, steps: int, device: torch.device) -> list:
    """The official-code structure: forward, loss, zero_grad, backward, step — nothing else."""
    model.to(device).train()
    conf = model.configure_optimizers()
    opt = conf["optimizer"] if isinstance(conf, dict) else conf
    gamma = model.hparams.gamma
    stamps = []
    it = iter(loader)
    for _ in range(steps):
        x, _, _ = next(it)
        stamps.append(time.perf_counter())
        x = x.to(device, non_blocking=True)
        feats = model.features(x)
        loss = cosine_mse_halves(bihalf(model.head(feats), gamma), feats)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    stamps.append(time.perf_counter())
    return stamps


def lightning_loop(model, loader, steps: int, device: str, style: str, tmp: str) -> list:
    stamps = Stamps()
    kw = dict(max_steps=steps, accelerator="gpu" if device == "cuda" else "cpu", devices=1,
              limit_val_batches=0, num_sanity_val_steps=0, enable_checkpointing=False, callbacks=[stamps])
    if style == "defaults":  # what a user gets by default, checkpointing off: CSV logger, progress bar, summary
        from lightning.pytorch.loggers import CSVLogger
        kw.update(logger=CSVLogger(tmp, name="bench"), enable_progress_bar=True, enable_model_summary=True)
    elif style == "lean":
        kw.update(logger=False, enable_progress_bar=False, enable_model_summary=False)
    elif style == "bar_refresh50":
        from lightning.pytorch.callbacks import TQDMProgressBar
        from lightning.pytorch.loggers import CSVLogger
        kw["callbacks"].append(TQDMProgressBar(refresh_rate=50))
        kw.update(logger=CSVLogger(tmp, name="bench"), enable_model_summary=False)
    else:
        raise ValueError(style)
    trainer = L.Trainer(**kw)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        trainer.fit(model, train_dataloaders=loader)
    if device == "cuda":
        torch.cuda.synchronize()
    return stamps.t + [time.perf_counter()]


# ------------------------------------------------------------------------------------------- workloads
def make_model(cls, workload: str, args, vgg_suffix: nn.Module | None):
    torch.manual_seed(0)
    if workload == "backbone":
        return cls(bits=64, backbone=args.backbone, pretrained=False, freeze=False, lr=1e-3)
    model = cls(bits=64, backbone="tiny_cnn", pretrained=False, freeze=True)  # backbone replaced below
    model.head = nn.Linear(4096, 64)
    model.backbone.suffix = vgg_suffix if workload == "head_vgg_suffix" else nn.Identity()
    model.use_cached_inputs(True)  # the loader serves cached rows: only the suffix and the head run
    return model


def run(args) -> None:
    device = torch.device(args.device)
    print(machine_info(args.device))
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    tmp = tempfile.mkdtemp(prefix="hashbench_overhead_")
    workloads = args.workloads.split(",")
    from lightning_modules.backbones import build_backbone
    vgg_suffix = None
    if any(w == "head_vgg_suffix" for w in workloads):
        vgg_suffix = build_backbone("vgg16", pretrained=False, freeze=True).suffix  # dropout, fc7, ReLU, dropout
    results = {}
    for workload in workloads:
        if workload == "backbone":
            steps, warm = args.backbone_steps, args.warmup_backbone
            data = ImageBatches((steps + 2) * args.batch_size, args.image_size)
            desc = f"{args.backbone} trainable, {args.image_size}px images"
        else:
            steps, warm = args.head_steps, args.warmup_head
            data = synthetic_feature_cache((steps + 2) * args.batch_size, 4096, os.path.join(tmp, "cache"))
            desc = ("cached 4096-d relu(fc6) + VGG suffix (dropout, fc7, ReLU, dropout) + head"
                    if workload == "head_vgg_suffix" else "cached 4096-d features + head only (suffix removed)")
        loader = lambda: DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True,  # noqa: E731
                                    generator=torch.Generator().manual_seed(0))
        configs = [("plain PyTorch loop", None, None)]
        configs += [(f"Lightning {style}, log_terms={variant}", style, variant)
                    for style in args.styles.split(",") for variant in args.variants.split(",")]
        times = {name: [] for name, _, _ in configs}
        for _ in range(args.rounds):
            for name, style, variant in configs:
                if style is None:
                    stamps = plain_loop(make_model(BiHalfNet, workload, args, vgg_suffix), loader(), steps, device)
                else:
                    stamps = lightning_loop(make_model(VARIANTS[variant], workload, args, vgg_suffix), loader(),
                                            steps, args.device, style, tmp)
                times[name].append(per_step_us(stamps, warm))
        results[workload] = (desc, steps, warm, times)
        print(f"\n== {workload}: {desc}; batch {args.batch_size}; {steps} steps, first {warm} excluded; "
              f"{args.rounds} interleaved rounds: median, and min (least disturbed by other load)")
        base = statistics.median(times["plain PyTorch loop"])
        base_min = min(times["plain PyTorch loop"])
        for name, vals in times.items():
            med, low = statistics.median(vals), min(vals)
            spread = ", ".join(f"{v:.0f}" for v in vals)
            print(f"  {name:<54s} median {med:9.0f} µs ×{med / base:5.3f} (+{med - base:6.0f}) | "
                  f"min {low:9.0f} µs ×{low / base_min:5.3f} (+{low - base_min:6.0f})  [{spread}]")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--workloads", default="backbone,head_vgg_suffix,head_only")
    p.add_argument("--backbone", default="mobilenet_v2", help="backbone of the 'backbone' workload")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--backbone-steps", type=int, default=12)
    p.add_argument("--warmup-backbone", type=int, default=3)
    p.add_argument("--head-steps", type=int, default=400)
    p.add_argument("--warmup-head", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--styles", default="defaults,lean", help="comma list of: defaults, lean, bar_refresh50")
    p.add_argument("--variants", default="current_log_terms",
                   help="comma list of log_terms variants: " + ", ".join(VARIANTS))
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = p.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available" lines per run
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
