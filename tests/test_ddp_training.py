"""Multi-GPU training is the paper's single-GPU recipe: under DDP every batch-level operation (bi-half split, batch-half
pairs, pairwise and triplet losses, NT-Xent negatives, DPSH's training-set state) sees the global batch, so one step on
2 ranks × B/2 images moves the parameters and buffers exactly as one step on the same B images in one process (2 CPU
processes, gloo). Every registered learned method is checked; a new method is included with no edit here."""
import os
import socket

import lightning as L
import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, Dataset

from lightning_modules import GreedyHash
from lightning_modules import get_method, method_names
from lightning_modules.train_rows import TrainRows

B = 8


class Batch(Dataset):
    """One fixed batch of B items (images, or a list of two views), split by rank in order."""

    def __init__(self, views: int, lo: int = 0, hi: int = B):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(views, B, 3, 8, 8, generator=g)[:, lo:hi]
        self.labels = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0, 1, 3, 3, 2])[lo:hi], 4).float()
        self.views = views

    def __len__(self):
        return self.images.shape[1]

    def __getitem__(self, i):
        x = [v[i] for v in self.images] if self.views > 1 else self.images[0, i]
        return x, self.labels[i], i


class RankShard(L.LightningDataModule):
    """Rank r trains on rows [r·B/W, (r+1)·B/W) of the batch: the global batch is the single-process batch. Each
    rank's loader reads its rows of the whole set, so items carry their index in the train split, as a
    DistributedSampler's do (DPSH and DTSH write their training-set state by that index).

    With ``steps`` > 1 each rank's rows are split into that many batches, and the single process reads the same
    global batches in the same order (step s = every rank's s-th batch, in rank order)."""

    def __init__(self, views: int, steps: int = 1, ranks: int = 2):
        super().__init__()
        self.views, self.steps, self.ranks = views, steps, ranks

    def train_dataloader(self):
        world, rank = self.trainer.world_size, self.trainer.global_rank
        per = B // (self.ranks * self.steps)  # rows per rank and step
        rows = [r * B // self.ranks + s * per + i for s in range(self.steps)
                for r in (range(self.ranks) if world == 1 else [rank]) for i in range(per)]
        return DataLoader(Batch(self.views), batch_size=per * (self.ranks if world == 1 else 1), sampler=rows,
                          shuffle=False)


# SGD: the step is the gradient itself (Adam's and RMSprop's first step divide it by its own magnitude, so an
# entry of 1e-12 vs -1e-12 from float reordering would move by ±lr and hide what is compared).
SGD = dict(backbone="tiny_cnn", pretrained=False, freeze=False, optimizer="sgd", lr=0.05)


# official DTSH sums its loss over thousands of sampled triplets (its own lr is 5e-4): at 0.05 two steps blow the
# weights up to ~50, where float reordering alone exceeds the tolerance
LR = {"dtsh": 5e-4}


def _registered(name: str):
    def make():
        model = get_method(name)(bits=8, **{**SGD, "lr": LR.get(name, SGD["lr"])})
        model.set_num_classes(4)  # the CLI's hand-over (CSQ builds its centres from it)
        return model
    return make


def _on_images(name: str) -> bool:
    """The autoencoder study's methods reconstruct flat pixel vectors, not images of this toy: their DDP step is not
    covered here yet (open work of the reproduction issue)."""
    return not hasattr(get_method(name), "input_dim")


METHODS = {name: _registered(name) for name in method_names() if not get_method(name).baseline and _on_images(name)}
METHODS["greedy-supervised"] = lambda: GreedyHash(bits=8, supervised=True, num_classes=4, **SGD)
METHODS["dtsh-port"] = lambda: get_method("dtsh")(bits=8, variant="port", **SGD)  # all triplets of the batch
METHODS["dfh-relaxed"] = lambda: get_method("dfh")(bits=8, center_update="relaxed", **SGD)  # 200 V steps per batch
# ADSH with one epoch per outer iteration: the step is followed by the closed-form update of its database codes V
METHODS["adsh-v-update"] = lambda: get_method("adsh")(bits=8, iteration_epochs=1, **SGD)


def _one_step(make, devices: int) -> dict:
    torch.manual_seed(0)
    model = make()
    # training-set state (DPSH's and DTSH's rows): a second step reads the rows the other rank wrote in the first
    steps = 2 if isinstance(model, TrainRows) else 1
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                        max_steps=steps, use_distributed_sampler=False, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, RankShard(model.train_views, steps))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    """One process of the 2-process run: Lightning's DDP strategy joins this process group (it launches nothing
    when LOCAL_RANK is set), so every method runs in the same two processes (one start instead of one per method)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    results = {name: _one_step(make, world) for name, make in METHODS.items()}
    if rank == 0:
        torch.save(results, out)


@pytest.fixture(scope="module")
def two_process_steps(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path_factory.mktemp("ddp") / "steps.pt")
    mp.spawn(_rank_main, args=(2, port, out), nprocs=2, join=True)
    return torch.load(out)


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_one_ddp_step_equals_one_single_process_step_on_the_same_batch(name, two_process_steps):
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in METHODS[name]().state_dict().items()}
    single, ddp = _one_step(METHODS[name], 1), two_process_steps[name]
    moved = [k for k in before if not torch.equal(before[k], single[k])]
    assert moved, "the step did not change any parameter"
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-5, atol=1e-6, msg=f"{name}: {k}")
