"""RetrievalEvaluation: encode queries and database, gather across ranks without duplicates, score, log metrics.

It reaches the model only through ``encode()`` (the codes that are scored) and, for DCH's radius re-ranking,
a continuous-scores method (``scores_method``); the datamodule only through its evaluation loaders:
``val_dataloader()`` / ``test_dataloader()`` return ``[query_loader, database_loader]`` (docs/CONTRACTS.md).
Encoding runs inside Lightning's own evaluation loop (eval mode, inference mode, device transfer,
DistributedSampler, precision), so a validation pass costs one forward per query and database image.
Under DDP every rank holds the whole database but scores only its contiguous share of the queries; the
per-query values are gathered and reduced in query order, so every rank logs bit-for-bit the
single-process numbers.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Literal, Optional, Union

import lightning as L
import torch

from hashcore.distributed import (deduplicate_by_index, gather_padded, gather_padded_any, global_rank,
                                          shard_bounds,  # pure
                                           world_size)

from hashcore import retrieval_metrics as rm
from hashcore.retrieval_metrics.cut_offs import parse_top_ks
from hashcore.retrieval_metrics.cut_offs import top_k_name as _k_name

TopK = Union[int, Literal["all"]]
_QUERY, _DATABASE = 0, 1
_EXAMPLE_DEPTH = 10  # retrieved items kept per example query (the retrieval figure's row)


def _parse_top_k(top_k, option: str = "RetrievalEvaluation.top_k") -> list[Optional[int]]:
    """``[1000]`` / ``[5000, "all"]`` / ``1000`` / ``"all"`` -> list of cut-offs (None = whole database)."""
    return parse_top_ks(top_k, option)


def score_queries_sharded(q_codes, q_labels, db_codes, db_labels, q_scores=None, db_scores=None,
                          timings: Optional[dict] = None, **metric_kwargs) -> rm.PerQuery:
    """Per-query results of ALL queries on every rank, each rank scoring only its contiguous share.

    Every rank passes the same (gathered) queries and database; rank r scores queries
    ``shard_bounds(Q, r, world)`` against the whole database; the per-query values are all-gathered in
    rank order (= query order). ``metric_kwargs`` go to :func:`retrieval_metrics.per_query_metrics`.
    Without torch.distributed this is just ``per_query_metrics`` of all queries. ``timings``, if given,
    receives this rank's ``score_seconds`` and ``gather_seconds``.
    """
    t0 = time.perf_counter()
    start, stop = shard_bounds(len(q_codes), global_rank(), world_size())
    # an empty share still runs the collectives: score one query and keep none (same names and dtypes)
    lo, hi = (start, stop) if stop > start else (0, 1)
    mine = rm.per_query_metrics(q_codes[lo:hi], q_labels[lo:hi], db_codes, db_labels,
                                query_scores=None if q_scores is None else q_scores[lo:hi],
                                db_scores=db_scores, **metric_kwargs)
    if stop == start:
        mine = mine.rows(0, 0)
    t1 = time.perf_counter()
    if world_size() > 1:
        mine = rm.PerQuery({name: gather_padded_any(v.contiguous()) for name, v in mine.values.items()}, mine.info)
    if timings is not None:
        timings.update(score_seconds=t1 - t0, gather_seconds=time.perf_counter() - t1)
    return mine


class RetrievalEvaluation(L.Callback):
    """Hamming-ranking retrieval metrics at every validation and at test.

    Args:
        top_k: cut-offs for mAP@k / P@k, e.g. ``[1000]`` or ``[5000, "all"]``; None uses the
            datamodule's protocol default (its ``top_k`` attribute, None meaning the whole database).
            The first cut-off is the headline, also logged as ``{stage}/mAP``.
        radius: Hamming radius for P/R/mAP within the ball (DCH reports radius 2); None turns them off.
        tie_averaged: also report the tie-order-independent expected mAP (``mAP@k_tie_avg``).
        exclude_no_relevant: drop queries with no relevant item from the mean (thulab convention);
            default counts them as AP 0 like DeepHash-pytorch and the official CIBHash/BiHalf code.
        scores_method: the model method giving the continuous scores by which the Hamming ball is
            re-ranked for ``mAP@H<=r`` (DCH); asked for only when ``radius`` is set. None ranks the
            ball by (Hamming distance, index). The scored codes always come from ``encode()``.
        log_curves: log PR curves and per-bit balance as W&B plots when a WandbLogger is attached.
        save_dir: also write every evaluation as JSON there (rank 0): ``{stage}_last.json`` and
            ``{stage}_epoch{NNNN}.json`` with metrics, sizes, curves, per-bit +1 rate and examples.
        print_results: after ``trainer.validate`` / ``trainer.test`` (not fit's validations), rank 0
            prints the metrics once as one compact block.
        examples: for this many evenly spaced queries, save the top-10 database items (dataset
            indices, relevance, distance) in the JSON (for a retrieval figure).
    """

    def __init__(self, top_k: Optional[list[TopK]] = None, radius: Optional[int] = 2, tie_averaged: bool = False,
                 exclude_no_relevant: bool = False, log_curves: bool = True, save_dir: Optional[str] = None,
                 scores_method: Optional[str] = "hash_scores", print_results: bool = True, examples: int = 0):
        super().__init__()
        self.top_k = None if top_k is None else _parse_top_k(top_k)
        if radius is not None and (isinstance(radius, bool) or not isinstance(radius, int) or radius < 0):
            raise ValueError(f"RetrievalEvaluation.radius must be a non-negative integer or null, got {radius!r}")
        if isinstance(examples, bool) or not isinstance(examples, int) or examples < 0:
            raise ValueError(f"RetrievalEvaluation.examples must be a non-negative integer, got {examples!r}")
        if scores_method is not None and not (isinstance(scores_method, str) and scores_method.isidentifier()):
            raise ValueError("RetrievalEvaluation.scores_method must name a method of the model (e.g. "
                             f"hash_scores) or be null, got {scores_method!r}")
        self.radius, self.tie_averaged, self.exclude_no_relevant = radius, tie_averaged, exclude_no_relevant
        self.log_curves, self.save_dir, self.scores_method = log_curves, save_dir, scores_method
        self.print_results, self.examples = print_results, examples
        self.last_results: Optional[dict] = None  # the most recent evaluation, for programmatic use
        self._reset()

    def _reset(self) -> None:
        self._store: dict[int, list[tuple[torch.Tensor, ...]]] = {_QUERY: [], _DATABASE: []}

    # ---- what is logged -------------------------------------------------------------------------
    def metric_keys(self, stage: str, default_top_k: Optional[int] = None) -> list[str]:
        """The exact keys this callback logs at ``stage`` ("val"/"test"), in logging order.

        ``default_top_k`` is the datamodule's protocol cut-off (None = whole database), used when
        ``top_k`` is unset.
        """
        names = [_k_name(k) for k in self._cut_offs(default_top_k)]
        keys = ["mAP"]
        for name in names:
            keys += [f"mAP@{name}", *([f"mAP@{name}_tie_avg"] if self.tie_averaged else []), f"P@{name}"]
        if self.radius is not None:
            keys += [f"P@H<={self.radius}", f"R@H<={self.radius}", f"mAP@H<={self.radius}"]
        keys += ["bit_entropy", "distinct_codes", "bit_balance_worst"]
        return [f"{stage}/{k}" for k in keys]

    def _cut_offs(self, default_top_k) -> list[Optional[int]]:
        if self.top_k is not None:
            return self.top_k
        return _parse_top_k(["all" if default_top_k is None else default_top_k], "the datamodule's top_k")

    def _trainer_cut_offs(self, trainer) -> list[Optional[int]]:
        return self._cut_offs(getattr(trainer.datamodule, "top_k", None) if trainer.datamodule is not None else None)

    # ---- collection -----------------------------------------------------------------------------
    def _wants_scores(self) -> bool:
        return self.radius is not None and self.scores_method is not None

    def _encode(self, pl_module, images) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Codes from ``encode()`` and, if the radius metrics need them, the continuous scores."""
        if not self._wants_scores():
            return pl_module.encode(images), None
        if self.scores_method == "hash_scores" and hasattr(pl_module, "codes_and_scores"):
            return pl_module.codes_and_scores(images)  # one forward pass where encode = sign(hash_scores)
        method = getattr(pl_module, self.scores_method, None)
        if not callable(method):
            raise ValueError(f"{type(pl_module).__name__} has no method {self.scores_method!r} for the continuous "
                             "scores of the Hamming-ball re-ranking; set RetrievalEvaluation.scores_method to the "
                             "method that returns them, or to null to rank the ball by Hamming distance")
        return pl_module.encode(images), method(images)

    def _collect(self, trainer, pl_module, batch, dataloader_idx: int) -> None:
        if trainer.sanity_checking:
            return
        if dataloader_idx not in self._store:
            raise ValueError("RetrievalEvaluation expects the datamodule's val/test dataloaders to be exactly "
                             f"[query_loader, database_loader]; got a loader with index {dataloader_idx}")
        images, labels, index = batch
        with trainer.precision_plugin.forward_context():
            codes, scores = self._encode(pl_module, images)
        codes = _checked_codes(codes, pl_module, len(index))
        entry = (codes, labels.float(), index.long())
        if scores is not None:
            if scores.ndim != 2 or scores.shape[0] != len(index):
                raise ValueError(f"{type(pl_module).__name__}.{self.scores_method} must return (batch, dim) scores, "
                                 f"got shape {tuple(scores.shape)} for a batch of {len(index)}")
            entry += (scores.float(),)
        self._store[dataloader_idx].append(entry)

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

    def _gathered(self, pl_module, which: int) -> dict:
        """This split from every rank, DistributedSampler repeats dropped, sorted by dataset index."""
        parts = self._store[which]
        device = pl_module.device
        names = ["codes", "labels", "index"] + (["scores"] if self._wants_scores() else [])
        if parts:
            local = [torch.cat([p[i] for p in parts]).to(device) for i in range(len(names))]
        else:  # this rank saw nothing (tiny split under DDP): still join the collectives
            local = [torch.zeros(0, pl_module.bits, dtype=torch.int8, device=device),
                     torch.zeros(0, 0, device=device), torch.zeros(0, dtype=torch.long, device=device),
                     torch.zeros(0, 0, device=device)][:len(names)]
        codes, labels, index, *scores = (gather_padded(t) for t in local)
        index, codes, labels, *scores = deduplicate_by_index(index, codes, labels, *scores)
        return {"codes": codes, "labels": labels, "index": index, **({"scores": scores[0]} if scores else {})}

    # ---- evaluation -----------------------------------------------------------------------------
    def _evaluate(self, trainer, pl_module, stage: str, loaders) -> None:
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        if len(loaders) != 2:
            raise ValueError(f"RetrievalEvaluation needs the datamodule's {stage}_dataloader() to return "
                             f"[query_loader, database_loader]; it returned {len(loaders)} loader(s)")
        query, database = self._gathered(pl_module, _QUERY), self._gathered(pl_module, _DATABASE)
        self._reset()
        num_q, num_db = len(query["index"]), len(database["index"])
        if num_q == 0 or num_db == 0:
            warnings.warn(f"RetrievalEvaluation: no {'query' if num_q == 0 else 'database'} codes were "
                          f"collected at {stage}; nothing logged")
            return
        complete = True
        for name, got, loader in (("query", num_q, loaders[0]), ("database", num_db, loaders[1])):
            expected = len(loader.dataset)
            if got != expected:
                complete = False
                warnings.warn(f"RetrievalEvaluation: {stage} metrics use {got} of {expected} {name} items "
                              "(limit_{val,test}_batches or fast_dev_run); they are not the protocol's numbers")
        cut_offs = self._trainer_cut_offs(trainer)
        timings: dict = {}
        per_query = score_queries_sharded(
            query["codes"], query["labels"], database["codes"], database["labels"],
            query.get("scores"), database.get("scores"), timings, top_ks=cut_offs, radius=self.radius,
            tie_average=self.tie_averaged, curves=True)
        metrics, curves = rm.results_metrics_and_curves(per_query, exclude_no_relevant=self.exclude_no_relevant)
        bit_stats = rm.bit_statistics(database["codes"])
        metrics = {**metrics,
                   "bit_entropy": bit_stats["mean_bit_entropy"],
                   "distinct_codes": bit_stats["distinct_code_fraction"],
                   "bit_balance_worst": float((bit_stats["plus_one_rate"] - 0.5).abs().max())}
        # the same bits on every rank (same gathered per-query values, sequential CPU sums): no sync
        # is needed and ModelCheckpoint can monitor any of them on any rank
        for name, value in metrics.items():
            pl_module.log(f"{stage}/{name}", float(value), on_step=False, on_epoch=True, sync_dist=False)
        dm = trainer.datamodule
        self.last_results = {
            "stage": stage, "epoch": trainer.current_epoch, "global_step": trainer.global_step,
            "metrics": metrics, "num_query": num_q, "num_database": num_db, "complete": complete,
            "bits": int(database["codes"].shape[1]), "top_k": [_k_name(k) for k in cut_offs],
            "radius": self.radius, "exclude_no_relevant": self.exclude_no_relevant,
            "dataset": type(dm).__name__ if dm is not None else None,
            "protocol": getattr(dm, "protocol", None), "world_size": world_size(),
            "query_shard": list(shard_bounds(num_q, global_rank(), world_size())),  # what this rank scored
            "timing": {k: round(v, 4) for k, v in timings.items()},  # this rank's scoring and gather
            "curves": curves,
            "bit_plus_rate": _to_list(bit_stats["plus_one_rate"]),
        }
        if trainer.is_global_zero:
            if self.examples:
                self.last_results["examples"] = retrieval_examples(query, database, self.examples)
            self._save_json(stage, trainer.current_epoch)
            if self.log_curves:
                self._log_wandb(trainer, stage)
            if self.print_results and trainer.state.fn in ("validate", "test"):
                print(format_results(self.last_results), flush=True)

    def _save_json(self, stage: str, epoch: int) -> None:
        if self.save_dir is None:
            return
        path = Path(self.save_dir)
        path.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.last_results)
        # through a temporary file, so a reader (hashbench compare) never sees a half-written one
        for name in (f"{stage}_epoch{epoch:04d}.json", f"{stage}_last.json"):
            tmp = path / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(path / name)

    def _log_wandb(self, trainer, stage: str) -> None:
        from lightning.pytorch.loggers import WandbLogger
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                from .wandb_plots import log_retrieval_plots
                log_retrieval_plots(logger.experiment, stage, self.last_results, step=trainer.global_step)


def _checked_codes(codes: torch.Tensor, pl_module, batch: int) -> torch.Tensor:
    """``encode()`` output as int8 ±1, or one clear error: the callback scores exactly these codes."""
    name = f"{type(pl_module).__name__}.encode"
    if codes.ndim != 2 or codes.shape[0] != batch:
        raise ValueError(f"{name} must return (batch, bits) codes, got shape {tuple(codes.shape)} for a batch of {batch}")
    if codes.dtype == torch.bool or not (codes.is_floating_point() or codes.is_signed()):
        return rm.to_signed_codes(codes).to(torch.int8)  # bits: 0 -> -1, 1 -> +1
    valid = (codes == 1) | (codes == -1)
    if not bool(valid.all()):
        bad = codes[~valid][0].item()
        raise ValueError(f"{name} returned {bad!r}; codes must be exactly -1 or +1 (docs/CONTRACTS.md). "
                         "Binarise them in encode() (e.g. sign with 0 -> +1); the evaluation scores what encode returns")
    return codes.to(torch.int8)


def retrieval_examples(query: dict, database: dict, count: int, depth: int = _EXAMPLE_DEPTH) -> list[dict]:
    """Top ``depth`` database items of ``count`` evenly spaced queries, by the suite's (distance, index) ranking.

    Indices are dataset indices of the query and database splits; ``relevant`` = shares a label.
    """
    num_q = len(query["index"])
    positions = torch.linspace(0, num_q - 1, min(count, num_q)).round().long().unique()
    positions = positions.to(query["codes"].device)
    idx, dist = rm.hamming_topk(query["codes"][positions], database["codes"], depth)
    relevant = ((query["labels"][positions][:, None, :] > 0) & (database["labels"][idx] > 0)).any(-1)
    return [{"query": int(query["index"][p]), "retrieved": database["index"][i].tolist(),
             "relevant": r.tolist(), "distance": d.tolist()}
            for p, i, r, d in zip(positions.tolist(), idx, relevant, dist)]


def format_results(results: dict) -> str:
    """One compact block: the stage, sizes and every metric (what ``print_results`` prints)."""
    m = results["metrics"]
    head = (f"RetrievalEvaluation {results['stage']} (epoch {results['epoch']}): {results['num_query']:,} queries x "
            f"{results['num_database']:,} database items, {results['bits']} bits"
            + ("" if results.get("complete", True) else "  [PARTIAL: not the protocol's numbers]"))
    groups = [[k for k in m if k.startswith(("mAP", "P@")) and "H<=" not in k],
              [k for k in m if "H<=" in k], [k for k in m if k.startswith(("bit_", "distinct"))]]
    lines = ["  " + "   ".join(f"{k} {m[k]:.4f}" for k in g) for g in groups if g]
    return "\n".join([head, *lines])


def _to_list(x):
    return x.detach().cpu().tolist() if torch.is_tensor(x) else x
