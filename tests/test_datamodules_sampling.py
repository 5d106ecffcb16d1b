"""Resume-safe shuffling: the train order and the loader's worker seeds are functions of (seed, epoch) only."""

import lightning as L
import pytest
import torch
from torch.utils.data import DistributedSampler, get_worker_info

from datamodules import CIFAR10
from datamodules.sampling import EpochShuffleSampler, epoch_seed
from tests.data_fixtures import write_cifar

SMALL = dict(image_size=32, num_workers=0, batch_size=16, normalize="none", verify_checksums=False,
             protocol="greedyhash")


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(str(root))  # 150 train images (greedyhash: train = the official train set)
    return str(root)


def fresh(root, **kw):
    dm = CIFAR10(root=root, **{**SMALL, **kw})
    dm.setup("fit")
    return dm


def order(loader):
    return torch.cat([b[2] for b in loader]).tolist()


def test_sampler_order_depends_only_on_seed_and_epoch():
    data = list(range(50))
    a = EpochShuffleSampler(data, seed=3)
    for _ in range(4):  # iterating, re-iterating and other epochs leave no trace
        list(a)
        a.set_epoch(7)
    a.set_epoch(2)
    b = EpochShuffleSampler(data, seed=3, epoch=2)
    assert list(a) == list(b) and sorted(list(a)) == data
    b.set_epoch(3)
    assert list(b) != list(a)
    assert list(EpochShuffleSampler(data, seed=4, epoch=2)) != list(a)
    g1, g2 = torch.Generator(), torch.Generator()
    EpochShuffleSampler(data, seed=3, epoch=2, generator=g1)
    s2 = EpochShuffleSampler(data, seed=3, generator=g2)
    s2.set_epoch(2)
    assert g1.initial_seed() == g2.initial_seed() == epoch_seed(3, 2, "workers")
    s2.set_epoch(5)
    assert g2.initial_seed() != g1.initial_seed()


def test_ranks_share_one_permutation_and_lightning_keeps_the_sampler():
    data = list(range(10))
    shards = [list(EpochShuffleSampler(data, seed=0, epoch=1, num_replicas=3, rank=r, batch_size=1)) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]  # 3 global batches of 3; the 10th index fills none (dropped)
    whole = list(EpochShuffleSampler(data, seed=0, epoch=1))
    assert [i for step in zip(*shards) for i in step] == whole[:9]  # one permutation, cut into global batches
    assert isinstance(EpochShuffleSampler(data, seed=0), DistributedSampler)  # Lightning keeps it under DDP


def test_loader_order_at_an_epoch_does_not_depend_on_loaders_built_before(cifar_root):
    used = fresh(cifar_root)
    for _ in range(3):  # an uninterrupted run may build loaders several times (sanity checks, reloads)
        loader = used.train_dataloader()
        order(loader)
    loader.sampler.set_epoch(2)
    resumed = fresh(cifar_root).train_dataloader()
    resumed.sampler.set_epoch(2)
    assert order(loader) == order(resumed)
    resumed.sampler.set_epoch(1)
    assert order(resumed) != order(loader)
    assert order(fresh(cifar_root, seed=1).train_dataloader()) != order(fresh(cifar_root).train_dataloader())


class WorkerSeeds(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor(get_worker_info().seed), torch.zeros(10), i


def test_worker_seeds_follow_the_epoch(cifar_root):
    def seeds(dm, epoch, built_before=0):
        dm.replace_dataset("train", WorkerSeeds(len(dm.train_set)))
        for _ in range(built_before):
            next(iter(dm.train_dataloader()))
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return torch.cat([b[0] for b in loader]).unique().tolist()

    a = seeds(fresh(cifar_root, num_workers=1), 2, built_before=2)
    assert a == seeds(fresh(cifar_root, num_workers=1), 2)
    assert a != seeds(fresh(cifar_root, num_workers=1), 3)


class Recorder(L.LightningModule):
    """Records, per epoch, the item order and a checksum of the (augmented) pixels it trains on."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = {}

    def training_step(self, batch, batch_idx):
        x, _, idx = batch
        entry = self.seen.setdefault(self.current_epoch, {"order": [], "pixels": []})
        entry["order"] += idx.tolist()
        entry["pixels"].append(round(float(x.double().sum()), 6))
        return (self.w * x.mean()).sum() ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_resumed_run_replays_the_uninterrupted_runs_epoch(cifar_root, tmp_path):
    """Fit 3 epochs with a checkpoint per epoch; resume from the end of epoch 1: epoch 2 must see the same
    order and the same random augmentations (worker seeds) as the uninterrupted run. With a loader worker,
    Lightning creates the first iterator (and the worker prefetches indices) before it calls set_epoch."""
    def trainer(**kw):
        return L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, **kw)

    data = dict(num_workers=1, train_transform="resize_crop_flip")
    full = Recorder()
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=str(tmp_path), filename="{epoch}", save_top_k=-1)
    trainer(callbacks=[ckpt]).fit(full, fresh(cifar_root, **data))
    assert len({tuple(full.seen[e]["order"]) for e in range(3)}) == 3
    resumed = Recorder()
    trainer(enable_checkpointing=False).fit(resumed, fresh(cifar_root, **data),
                                            ckpt_path=str(tmp_path / "epoch=1.ckpt"))
    assert list(resumed.seen) == [2]
    assert resumed.seen[2]["order"] == full.seen[2]["order"]
    assert resumed.seen[2]["pixels"] == full.seen[2]["pixels"]
