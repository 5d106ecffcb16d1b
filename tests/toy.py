"""Tiny in-memory data and model that follow docs/CONTRACTS.md, for fast callback / CLI / DDP tests."""
from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_modules.base import HashModule


class ToyImages(Dataset):
    """Class-dependent noisy 3×8×8 'images'; labels one-hot over ``num_classes``; items ``(img, label, index)``."""

    def __init__(self, n: int, num_classes: int = 4, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.targets = torch.arange(n) % num_classes
        centers = torch.randn(num_classes, 3, 8, 8, generator=torch.Generator().manual_seed(1234))
        self.images = centers[self.targets] + 0.5 * torch.randn(n, 3, 8, 8, generator=g)
        self.labels = torch.nn.functional.one_hot(self.targets, num_classes).float()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i], i


class ToyData(L.LightningDataModule):
    def __init__(self, n_train: int = 64, n_query: int = 11, n_database: int = 33, batch_size: int = 8,
                 top_k: int | None = 10, num_classes: int = 4):
        super().__init__()
        self.top_k, self.num_classes, self.batch_size = top_k, num_classes, batch_size
        self.train_set = ToyImages(n_train, num_classes, seed=1)
        self.query_set = ToyImages(n_query, num_classes, seed=2)
        self.database_set = ToyImages(n_database, num_classes, seed=3)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True)

    def query_dataloader(self):
        return DataLoader(self.query_set, batch_size=self.batch_size)

    def database_dataloader(self):
        return DataLoader(self.database_set, batch_size=self.batch_size)

    def val_dataloader(self):
        return [self.query_dataloader(), self.database_dataloader()]

    test_dataloader = val_dataloader


class ToyHash(HashModule):
    """Linear hash head on the tiny CNN, trained with a simple supervised pairwise loss."""

    def __init__(self, bits: int = 8, **kwargs):
        kwargs.setdefault("backbone", "tiny_cnn")
        kwargs.setdefault("pretrained", False)
        kwargs.setdefault("freeze", False)
        kwargs.setdefault("optimizer", "adam")
        kwargs.setdefault("lr", 1e-2)
        super().__init__(bits=bits, **kwargs)
        self.head = torch.nn.Linear(self.backbone.out_dim, bits)

    def training_step(self, batch, batch_idx):
        (images,), labels, _ = self.split_batch(batch)
        h = torch.tanh(self.hash_scores(images))
        s = (labels @ labels.T > 0).float() * 2 - 1
        loss = ((h @ h.T) / self.bits - s).pow(2).mean()
        self.log_terms({"loss": loss}, batch_size=len(images))
        return loss


class FlippedBitHash(ToyHash):
    """A method whose codes are NOT sign(hash_scores): bit 0 is flipped for the images with a positive mean
    (as a rotation or a learned threshold changes some codes). Evaluation must score what ``encode`` returns."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        codes = super().encode(images).clone()
        flip = images.flatten(1).mean(1) > 0
        codes[flip, 0] = -codes[flip, 0]
        return codes


class OnePassHash(ToyHash):
    """Has ``codes_and_scores`` (one forward pass for both); counts which entry points evaluation calls."""

    def __init__(self, bits: int = 8, **kwargs):
        super().__init__(bits=bits, **kwargs)
        self.calls = {"encode": 0, "hash_scores": 0, "codes_and_scores": 0}

    def encode(self, images):
        self.calls["encode"] += 1
        return super().encode(images)

    def hash_scores(self, x):
        self.calls["hash_scores"] += 1
        return super().hash_scores(x)

    def codes_and_scores(self, images):
        self.calls["codes_and_scores"] += 1
        scores = self.head(self.features(images))
        return torch.where(scores >= 0, 1.0, -1.0), scores


class RankMetricsRecorder(L.Callback):
    """Writes every rank's logged metrics and scored query share to ``<folder>/rank<r>.json`` after validation."""

    def __init__(self, folder: str):
        self.folder = folder

    def on_validation_end(self, trainer, pl_module):
        import json
        import pathlib

        from callbacks.retrieval import RetrievalEvaluation

        evaluator = next(c for c in trainer.callbacks if isinstance(c, RetrievalEvaluation))
        record = {"metrics": {k: v.item() for k, v in trainer.callback_metrics.items()},
                  "query_shard": evaluator.last_results["query_shard"]}
        folder = pathlib.Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)  # rank 0's JSON writer may not have created it yet
        (folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
