"""RetrievalEvaluation: encode queries and database, gather across ranks without duplicates, log metrics.

It reaches the model only through ``encode()`` and the datamodule only through its evaluation loaders:
``val_dataloader()`` / ``test_dataloader()`` return ``[query_loader, database_loader]`` (docs/CONTRACTS.md).
Encoding runs inside Lightning's own evaluation loop (eval mode, inference mode, device transfer,
DistributedSampler, precision), so a validation pass costs one forward per query and database image.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Literal, Optional, Union

import lightning as L
import torch

from lightning_modules.distributed import gather_padded  # pure torch.distributed helper

from . import retrieval_metrics as rm

TopK = Union[int, Literal["all"]]
_QUERY, _DATABASE = 0, 1


def deduplicate_by_index(index: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Sort rows by ``index`` and keep the first occurrence of each index.

    DistributedSampler pads every rank to the same length by repeating the first samples, so the
    gathered set holds a few items twice; without this the database (and mAP) would be wrong under DDP.
    """
    order = torch.sort(index, stable=True).indices
    index = index[order]
    keep = torch.ones_like(index, dtype=torch.bool)
    keep[1:] = index[1:] != index[:-1]
    return (index[keep], *(t[order][keep] for t in tensors))


class RetrievalEvaluation(L.Callback):
    """Hamming-ranking retrieval metrics at every validation and at test.

    Args:
        top_k: cut-offs for mAP@k / P@k, e.g. ``[1000]`` or ``[5000, "all"]``; None uses the
            datamodule's protocol default (its ``top_k`` attribute, None meaning the whole database).
        radius: Hamming radius for P/R/mAP within the ball (DCH reports radius 2).
        tie_averaged: also report the tie-order-independent expected mAP (``mAP@k_tie_avg``).
        exclude_no_relevant: drop queries with no relevant item from the mean (thulab convention);
            default counts them as AP 0 like DeepHash-pytorch and the official CIBHash/BiHalf code.
        log_curves: log PR curves and per-bit balance as W&B plots when a WandbLogger is attached.
        save_dir: also write every evaluation (metrics, curves, bit statistics) as JSON there (rank 0).
    """

    def __init__(self, top_k: Optional[list[TopK]] = None, radius: int = 2, tie_averaged: bool = True,
                 exclude_no_relevant: bool = False, log_curves: bool = True, save_dir: Optional[str] = None):
        super().__init__()
        self.top_k, self.radius, self.tie_averaged = top_k, radius, tie_averaged
        self.exclude_no_relevant, self.log_curves = exclude_no_relevant, log_curves
        self.save_dir = save_dir
        self.last_results: Optional[dict] = None  # the most recent evaluation, for programmatic use
        self._reset()

    def _reset(self) -> None:
        self._store: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {_QUERY: [], _DATABASE: []}

    # ---- collection -----------------------------------------------------------------------------
    def _collect(self, trainer, pl_module, batch, dataloader_idx: int) -> None:
        if trainer.sanity_checking:
            return
        if dataloader_idx not in self._store:
            raise ValueError("RetrievalEvaluation expects the datamodule's val/test dataloaders to be exactly "
                             f"[query_loader, database_loader]; got a loader with index {dataloader_idx}")
        images, labels, index = batch
        with trainer.precision_plugin.forward_context():
            scores = pl_module.encode(images, continuous=True)
        self._store[dataloader_idx].append((scores.float(), labels.float(), index.long()))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._reset()

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module, batch, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module, batch, dataloader_idx)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._evaluate(trainer, pl_module, "val", trainer.val_dataloaders)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._evaluate(trainer, pl_module, "test", trainer.test_dataloaders)

    def _gathered(self, pl_module, which: int):
        parts = self._store[which]
        device = pl_module.device
        if parts:
            scores, labels, index = (torch.cat([p[i] for p in parts]).to(device) for i in range(3))
        else:  # this rank saw nothing (tiny split under DDP): still join the collectives
            scores = torch.zeros(0, pl_module.bits, device=device)
            labels, index = torch.zeros(0, 0, device=device), torch.zeros(0, dtype=torch.long, device=device)
        scores, labels, index = gather_padded(scores), gather_padded(labels), gather_padded(index)
        index, scores, labels = deduplicate_by_index(index, scores, labels)
        return scores, labels, index

    # ---- evaluation -----------------------------------------------------------------------------
    def _evaluate(self, trainer, pl_module, stage: str, loaders) -> None:
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        if len(loaders) != 2:
            raise ValueError(f"RetrievalEvaluation needs the datamodule's {stage}_dataloader() to return "
                             f"[query_loader, database_loader]; it returned {len(loaders)} loader(s)")
        q_scores, q_labels, _ = self._gathered(pl_module, _QUERY)
        db_scores, db_labels, _ = self._gathered(pl_module, _DATABASE)
        self._reset()
        if len(q_scores) == 0 or len(db_scores) == 0:
            warnings.warn(f"RetrievalEvaluation: no {'query' if len(q_scores) == 0 else 'database'} codes were "
                          f"collected at {stage}; nothing logged")
            return
        for name, got, loader in (("query", len(q_scores), loaders[0]), ("database", len(db_scores), loaders[1])):
            expected = len(loader.dataset)
            if got != expected:
                warnings.warn(f"RetrievalEvaluation: {stage} metrics use {got} of {expected} {name} items "
                              "(limit_{val,test}_batches or fast_dev_run); they are not the protocol's numbers")
        q_codes, db_codes = rm.to_signed_codes(q_scores), rm.to_signed_codes(db_scores)
        metrics = rm.retrieval_report(
            q_codes, q_labels, db_codes, db_labels, top_ks=self._top_ks(trainer), radius=self.radius,
            tie_average=self.tie_averaged, exclude_no_relevant=self.exclude_no_relevant,
            query_scores=q_scores, db_scores=db_scores)
        bit_stats = rm.bit_statistics(db_codes)
        metrics["bit_entropy"] = bit_stats["mean_bit_entropy"]
        metrics["distinct_codes"] = bit_stats["distinct_code_fraction"]
        metrics["bit_balance_worst"] = float((bit_stats["plus_one_rate"] - 0.5).abs().max())
        # identical on every rank (same gathered codes), so no sync: ModelCheckpoint can monitor it anywhere
        for name, value in metrics.items():
            pl_module.log(f"{stage}/{name}", float(value), on_step=False, on_epoch=True, sync_dist=False)
        curves = rm.retrieval_curves(q_codes, q_labels, db_codes, db_labels)
        self.last_results = {"stage": stage, "epoch": trainer.current_epoch, "metrics": metrics,
                             "curves": {k.replace("pr_", "").replace("/", "_"): _to_list(v)
                                        for k, v in curves.items()},
                             "bit_plus_rate": _to_list(bit_stats["plus_one_rate"]),
                             "num_query": len(q_codes), "num_database": len(db_codes)}
        if trainer.is_global_zero:
            self._save_json(stage, trainer.current_epoch)
            if self.log_curves:
                self._log_wandb(trainer, stage)

    def _top_ks(self, trainer) -> list[Optional[int]]:
        ks = self.top_k
        if ks is None:
            ks = [getattr(trainer.datamodule, "top_k", None)] if trainer.datamodule is not None else [None]
        ks = ks if isinstance(ks, (list, tuple)) else [ks]
        return [None if k in ("all", None, -1) else int(k) for k in ks]

    def _save_json(self, stage: str, epoch: int) -> None:
        if self.save_dir is None:
            return
        path = Path(self.save_dir)
        path.mkdir(parents=True, exist_ok=True)
        (path / f"{stage}_epoch{epoch:04d}.json").write_text(json.dumps(self.last_results))
        (path / f"{stage}_last.json").write_text(json.dumps(self.last_results))

    def _log_wandb(self, trainer, stage: str) -> None:
        from lightning.pytorch.loggers import WandbLogger
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                from .wandb_plots import log_retrieval_plots
                log_retrieval_plots(logger.experiment, stage, self.last_results, step=trainer.global_step)


def _to_list(x):
    return x.detach().cpu().tolist() if torch.is_tensor(x) else x
