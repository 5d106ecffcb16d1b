"""Pure torch.distributed helpers (no Lightning): this process's rank and world size in the process group,
gradient-preserving gather, padded gather, contiguous shards.

Used by contrastive losses (CIBHash negatives from every rank, as in SimCLR), by the retrieval callback (codes of
uneven size per rank) and by the train sampler. Before a process group exists, which process a launcher started is
read from the environment by :mod:`hashcore.launcher` (torch-free, for the console).
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slice.

    If every rank computes the same global loss L from the gathered tensor, the all-reduced gradient
    is world·dL/dx_local; DDP's gradient averaging divides by world again, so parameters receive
    exactly dL/dθ of the global loss (the solo-learn / SimCLR construction).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack(grads)
        dist.all_reduce(stacked)
        return stacked[dist.get_rank()]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0, keeping gradients; identity without DDP.

    Every rank must pass the same shape (training batches with ``drop_last=True`` guarantee it).
    """
    if _world() == 1:
        return x
    return torch.cat(_GatherWithGrad.apply(x), dim=0)


def gather_padded(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (any dim-0 size per rank) from all ranks along dim 0, without gradients.

    all_gather needs equal shapes, so shapes are exchanged first and every piece is padded to the
    largest, then trimmed. Rank order is kept. A rank with no rows may pass trailing dims of 0
    (it cannot know the width); the others' width is used.
    """
    world = _world()
    if world == 1:
        return x
    shape = torch.tensor(list(x.shape), device=x.device, dtype=torch.long)
    shapes = [torch.zeros_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    shapes = torch.stack(shapes)
    sizes = shapes[:, 0].tolist()
    trailing = shapes[:, 1:].max(dim=0).values.tolist()
    padded = x.new_zeros((max(sizes), *trailing))
    padded[: x.shape[0]] = x
    pieces = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(pieces, padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(pieces, sizes)], dim=0)


def world_size() -> int:
    """Number of processes in the default group; 1 without torch.distributed."""
    return _world()


def global_rank() -> int:
    """This process's rank in the default group; 0 without torch.distributed."""
    return dist.get_rank() if _world() > 1 else 0


def shard_bounds(num: int, rank: int, world: int) -> tuple[int, int]:
    """``(start, stop)`` of rank's contiguous share of ``num`` rows; shares differ by at most one row and
    follow rank order, so concatenating them by rank gives rows 0..num-1 back."""
    if world < 1 or not 0 <= rank < world or num < 0:
        raise ValueError(f"need 0 <= rank < world and num >= 0, got rank {rank}, world {world}, num {num}")
    base, extra = divmod(num, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def gather_padded_any(x: torch.Tensor) -> torch.Tensor:
    """:func:`gather_padded` for bool tensors too (sent as uint8, which every backend supports)."""
    if x.dtype == torch.bool:
        return gather_padded(x.to(torch.uint8)).bool()
    return gather_padded(x)


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
