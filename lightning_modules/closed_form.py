"""Base of the classic baselines fitted in closed form (LSH, ITQ): no gradient loop, one pass over the train split.

Fitting is the training epoch: ``training_step`` only collects the (frozen, deterministic) backbone features of the
train split; at the end of the epoch :meth:`fit` solves for the hash function from all of them. Under DDP every
rank gathers the features of every rank (de-duplicated by dataset index), so every rank fits the same function.
The fitted tensors are buffers: they are saved in checkpoints and moved with the model.
"""
from __future__ import annotations

import torch

from .base import HashModule
from hashcore.distributed import deduplicate_by_index, gather_padded


class ClosedFormHashModule(HashModule):
    """A frozen backbone in eval mode (deterministic features) and a hash function fitted by :meth:`fit`."""

    baseline = True

    def __init__(self, bits: int = 64, backbone: str = "vgg16", **kwargs):
        kwargs.update(freeze=True, freeze_mode="eval")  # the features must not depend on dropout draws
        super().__init__(bits=bits, backbone=backbone, **kwargs)
        self.automatic_optimization = False
        self._rows: list[torch.Tensor] = []
        self._index: list[torch.Tensor] = []

    def register_pca_buffers(self, bits: int) -> None:
        """``mean`` and ``projection`` buffers of a PCA on the backbone features (ITQ, PCAH, Hashing-Baseline), with
        their final shapes so a checkpoint carries the fit; refuses more bits than feature dimensions."""
        dim = self.backbone.out_dim
        if bits > dim:
            raise ValueError(f"{type(self).__name__} projects the {dim}-d backbone features on {bits} principal "
                             f"directions; model.bits must be <= {dim}")
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("projection", torch.eye(dim, bits, dtype=torch.float64))

    def fit(self, features: torch.Tensor) -> None:
        """Solve for the hash function from the (N, D) float64 train features."""
        raise NotImplementedError

    def configure_optimizers(self):
        return None  # nothing is trained by gradient

    def on_train_epoch_start(self) -> None:
        self._rows, self._index = [], []

    def training_step(self, batch, batch_idx):
        (images,), _, index = self.split_batch(batch)
        with torch.no_grad():
            self._rows.append(self.features(images).double())
        self._index.append(index.long())
        return None

    def on_train_epoch_end(self) -> None:
        if not self._rows:
            raise ValueError(f"{type(self).__name__}: the train loader gave no batch to fit on")
        rows, index = torch.cat(self._rows), torch.cat(self._index).to(self.device)
        index, rows = deduplicate_by_index(gather_padded(index), gather_padded(rows))  # one row per train image
        self.fit(rows)
        self._rows, self._index = [], []
        self.log("train/fitted_on", float(len(rows)), on_epoch=True, on_step=False, sync_dist=False)
