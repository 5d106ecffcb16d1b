"""ADSH (Jiang & Li, AAAI 2018): asymmetric deep supervised hashing. Database codes V of the whole training set are
learned directly; the network is trained on a sampled subset of queries against all of V.

Official code ``jiangqy/ADSH-AAAI2018@2e95574:ADSH_pytorch/ADSH_CIFAR_10.py: adsh_algo`` (docs/methods.md#adsh): each
outer iteration samples ``num_samples`` training images, trains the network ``epochs`` passes over them on the loss
of hashcore/asymmetric.py (against all of V), then updates V bit by bit in closed form; 50 iterations × 3 epochs, SGD
lr 1e-3 (no momentum), wd 5e-4, lr ÷10 after iterations 10, 20, 30, 40; batch 64; γ 200; Linear(·, K) + tanh.

Here one outer iteration is ``iteration_epochs`` Lightning epochs over the train loader, and a step trains on the
rows of its global batch that are in the iteration's sample (a batch with none of them gives a zero loss and no
optimiser step: ``optimizer_step``). Why: the train loader belongs to the datamodule, so the sample is a property of the method, not a loader.
Consequence: the network sees the sampled queries in batches of varying size (about batch × num_samples / N), and the
first epoch also collects every training label, which the V update needs. The sample of iteration t is drawn from
``(sample_seed, t)`` alone, so a resumed run draws the same one; V, the sample, the sampled outputs U and the labels
Y are buffers saved in checkpoints. Under DDP every rank writes the rows of the global batch, so U, Y and then V
are identical on every rank. Evaluation encodes the database with the network (as every method), not with V.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from .base import HashModule
from hashcore.asymmetric import adsh_loss, adsh_similarity, adsh_update_codes
from hashcore.distributed import gather_with_grad
from hashcore.method_settings import MethodSettings
from hashcore.registry import register_method


@register_method("adsh")
class ADSH(HashModule):
    """Args (besides :class:`HashModule`'s):
        gamma: weight γ of the quantization term (official ``--gamma`` 200).
        num_samples: queries sampled per outer iteration (official ``--num-samples`` 2000; all when larger).
        iteration_epochs: epochs per outer iteration (official ``--epochs`` 3).
        sample_seed: seed of the per-iteration query samples.
        num_train: rows of V; None takes the size of the train loader's dataset when training starts.
    """

    paper_settings = MethodSettings(
        "jiangqy/ADSH-AAAI2018@2e95574 (ADSH_pytorch/ADSH_CIFAR_10.py, utils/adsh_loss.py): network fully "
        "trained, SGD lr 1e-3 (no momentum), wd 5e-4, batch 64, γ 200, 2,000 sampled queries per outer iteration,"
        " 3 epochs per iteration, V updated bit by bit after each, 50 iterations, lr ÷10 every 10 iterations",
        epochs=150, batch_size=64, val_every=15)

    train_transform = "resize_center_crop"
    supervised = True

    def __init__(self, bits: int = 48, gamma: float = 200.0, num_samples: int = 2000, iteration_epochs: int = 3,
                 sample_seed: int = 0, num_train: Optional[int] = None, backbone: str = "alexnet",
                 freeze: bool = False, optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd",
                 lr: float = 1e-3, weight_decay: float = 5e-4, momentum: float = 0.0, lr_step: Optional[int] = 30,
                 lr_decay: float = 0.1, **kwargs):
        if int(num_samples) < 1 or int(iteration_epochs) < 1:
            raise ValueError(f"ADSH needs num_samples >= 1 and iteration_epochs >= 1, got {num_samples} and "
                             f"{iteration_epochs} (options model.num_samples, model.iteration_epochs)")
        super().__init__(bits=bits, backbone=backbone, freeze=freeze, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, momentum=momentum, lr_step=lr_step, lr_decay=lr_decay, **kwargs)
        self.head = nn.Sequential(nn.Linear(self.backbone.out_dim, bits), nn.Tanh())
        rows = int(num_train or 0)
        self.register_buffer("V", torch.zeros(rows, bits))           # database codes of every training image
        self.register_buffer("U", torch.zeros(rows, bits))           # network outputs of this iteration's sample
        self.register_buffer("Y", torch.zeros(rows, 0))              # labels of every training image
        self.register_buffer("sample", torch.zeros(0, dtype=torch.long))  # this iteration's query rows
        self._steps = True  # whether this step's batch held sampled queries
        self._ratio = 0.0  # the soft similarity's r of this epoch's sample (computed at epoch start)

    # ---- state: sized from the checkpoint or the train split ------------------------------------------------
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)  # the frozen backbone's weights, when stored by identity
        state = checkpoint.get("state_dict", {})
        for name in ("V", "U", "Y", "sample"):
            if name in state:
                setattr(self, name, torch.zeros_like(state[name], device=getattr(self, name).device))

    def on_train_start(self) -> None:
        rows = len(self.trainer.train_dataloader.dataset)
        if self.V.shape[0] == 0:
            self.V, self.U = self.V.new_zeros(rows, self.bits), self.U.new_zeros(rows, self.bits)
            self.Y = self.Y.new_zeros(rows, 0)
        elif self.V.shape[0] != rows:
            raise ValueError(f"ADSH keeps one database code per training image: this model holds {self.V.shape[0]} "
                             f"rows but the train split has {rows} images; train it on the split it was started on, "
                             "or start a new run")

    # ---- the outer iteration: sample at its first epoch, update V after its last batch ---------------------
    def _iteration(self) -> tuple[int, bool, bool]:
        per = self.hparams.iteration_epochs
        return self.current_epoch // per, self.current_epoch % per == 0, self.current_epoch % per == per - 1

    def on_train_epoch_start(self) -> None:
        iteration, first, _ = self._iteration()
        if first or self.sample.numel() == 0:
            rows = self.V.shape[0]
            generator = torch.Generator().manual_seed(int(self.hparams.sample_seed) * 1_000_003 + iteration)
            draw = torch.randperm(rows, generator=generator)[:min(self.hparams.num_samples, rows)]
            self.sample = draw.to(self.V.device)
            if first:
                self.U.zero_()
        self._ratio = self._similarity_ratio()

    def _similarity_ratio(self) -> float:
        """``r`` of the official soft similarity over the whole sample × train set (0 before labels are known)."""
        if self.Y.shape[1] == 0:
            return 0.0
        s = (self.Y[self.sample] @ self.Y.t() > 0)
        dissimilar = int((~s).sum())
        return float(s.sum()) / dissimilar if dissimilar else 0.0

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        _, _, last = self._iteration()
        if last and self.trainer.is_last_batch:
            s = adsh_similarity(self.Y[self.sample], self.Y)
            self.V = adsh_update_codes(self.V, self.U[self.sample], s, self.sample, gamma=self.hparams.gamma)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        """Run the step's forward and backward (every rank: DDP all-reduces in it), then step the optimiser only after
        a batch that held sampled queries (``training_step`` sets ``_steps``)."""
        self._steps = True
        if optimizer_closure is not None:
            optimizer_closure()
        if self._steps:
            optimizer.step()

    # ---- the step: the sampled rows of the global batch against all of V -------------------------------------
    def training_step(self, batch, batch_idx):
        (images,), labels, index = self.split_batch(batch)
        if self.V.shape[0] == 0:
            raise ValueError("ADSH needs the number of training images: set model.num_train, or train it with "
                             "trainer.fit, which sizes its rows from the train loader")
        labels = gather_with_grad(labels.float())
        u, index = gather_with_grad(self.hash_scores(images)), gather_with_grad(index)
        if labels.dim() != 2:
            raise ValueError(f"ADSH compares multi-hot label rows (B, C); the train loader gave shape "
                             f"{tuple(labels.shape)}")
        if self.Y.shape[1] != labels.shape[1]:
            self.Y = self.Y.new_zeros(self.V.shape[0], labels.shape[1])
        self.Y[index] = labels
        in_sample = torch.zeros(self.V.shape[0], dtype=torch.bool, device=index.device)
        in_sample[self.sample] = True
        keep = in_sample[index]
        self._steps = bool(keep.any())  # identical on every rank (the global batch)
        if not self._steps:
            # no sampled query here: a zero loss (DDP needs every rank's backward; Lightning refuses a None step under
            # DDP) and no optimiser step (optimizer_step), so weight decay and momentum do not move the weights either
            return (u * 0).sum()
        u, index = u[keep], index[keep]
        self.U[index] = u.detach()
        s = (labels[keep] @ self.Y.t() > 0).to(u.dtype)
        s = s * (1 + self._ratio) - self._ratio
        terms = adsh_loss(u, self.V, s, self.V[index], gamma=self.hparams.gamma)
        self.log_terms(terms, batch_size=int(keep.sum()))
        return terms["loss"]
