"""Per-training-image state kept by index (DPSH's U and B, DTSH's official U): buffers sized from the train split,
written from the global batch, saved in checkpoints and restored on resume. A mixin for :class:`HashModule`s."""
from __future__ import annotations

import torch


class TrainRows:
    """Buffers ``U`` (N, K) outputs, ``B`` (N, K) their signs and ``Y`` (N, C) labels of every training image.

    The subclass calls :meth:`init_train_rows` in ``__init__`` and :meth:`remember` in ``training_step`` with the
    global batch (gathered under DDP, so every rank holds the same rows). Rows not seen yet are zero.
    """

    def init_train_rows(self, rows: int, bits: int) -> None:
        self.register_buffer("U", torch.zeros(rows, bits))  # outputs of every training image, by index
        self.register_buffer("B", torch.zeros(rows, bits))  # their codes sign(U)
        self.register_buffer("Y", torch.zeros(rows, 0))     # their labels (width set by the first batch)

    def uses_train_rows(self) -> bool:
        """Whether this configuration keeps the rows (a variant without them keeps empty buffers)."""
        return True

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Size U, B and Y as the checkpoint's, so that loading the state dict restores them."""
        super().on_load_checkpoint(checkpoint)  # the frozen backbone's weights, when stored by identity
        state = checkpoint.get("state_dict", {})
        for name in ("U", "B", "Y"):
            if name in state:
                setattr(self, name, torch.zeros_like(state[name], device=getattr(self, name).device))

    def on_train_start(self) -> None:
        if not self.uses_train_rows():
            return
        rows = len(self.trainer.train_dataloader.dataset)
        if self.U.shape[0] == 0:
            self.U = self.U.new_zeros(rows, self.bits)
            self.B = self.B.new_zeros(rows, self.bits)
            self.Y = self.Y.new_zeros(rows, 0)
        elif self.U.shape[0] != rows:
            raise ValueError(f"{type(self).__name__} keeps one row per training image: this model holds "
                             f"{self.U.shape[0]} rows but the train split has {rows} images; train it on the split "
                             "it was started on, or start a new run")

    def remember(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> None:
        """Write the batch's outputs, codes and labels into their rows (the official ``U[ind, :] = ...``)."""
        name = type(self).__name__
        if self.U.shape[0] == 0:
            raise ValueError(f"{name} needs the number of training images: set model.num_train, or train it with "
                             "trainer.fit, which sizes its rows from the train loader")
        if int(index.max()) >= self.U.shape[0]:
            raise ValueError(f"{name} got train index {int(index.max())} but holds {self.U.shape[0]} rows: the train "
                             "loader must give each image's position in the train split as its index")
        if labels.dim() != 2:
            raise ValueError(f"{name} compares multi-hot label rows (B, C); the train loader gave shape "
                             f"{tuple(labels.shape)}")
        if self.Y.shape[1] != labels.shape[1]:
            self.Y = self.Y.new_zeros(self.U.shape[0], labels.shape[1])
        self.U[index] = u.detach()
        self.B[index] = torch.sign(u.detach())
        self.Y[index] = labels.to(self.Y.dtype)
