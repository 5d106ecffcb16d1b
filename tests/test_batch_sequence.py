"""The global batch sequence does not depend on the number of processes: at every step the ranks' batches together
are the batch one process with ``batch_size × world size`` sees, so a run trains the same on 1, 2 or 8 GPUs (up to
float rounding) and a run resumed on another number of processes continues the same run."""
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from datamodules import CIFAR10
from datamodules.sampling import EpochShuffleSampler
from tests.data_fixtures import write_cifar

REPO = Path(__file__).resolve().parent.parent
LIGHTNING = Path(sys.executable).parent / "lightning"


def batches(sampler, batch_size):
    idx = list(sampler)
    return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]


@pytest.mark.parametrize("n, b, world", [(50, 4, 2), (50, 3, 4), (64, 8, 8), (17, 2, 3), (9, 4, 2)])
@pytest.mark.parametrize("epoch", [0, 3])
def test_the_ranks_batches_of_a_step_make_up_the_one_process_batch(n, b, world, epoch):
    data = list(range(n))
    single = batches(EpochShuffleSampler(data, seed=5, epoch=epoch, num_replicas=1, rank=0, batch_size=b * world),
                     b * world)
    single = [s for s in single if len(s) == b * world]  # the one-process train loader drops the last partial batch
    ranks = [batches(EpochShuffleSampler(data, seed=5, epoch=epoch, num_replicas=world, rank=r, batch_size=b), b)
             for r in range(world)]
    assert all(len(r) == len(single) for r in ranks), "every rank must take the same number of steps"
    assert len(single) == n // (b * world) and single
    for step, batch in enumerate(single):
        # rank order = the order of an all-gather, so batch-level losses see the one-process batch itself
        assert sum((r[step] for r in ranks), []) == batch, f"step {step}"


def test_a_sampler_yields_whole_batches_only_and_needs_a_valid_rank():
    s = EpochShuffleSampler(list(range(10)), seed=0, num_replicas=3, rank=2, batch_size=2)
    assert len(s) == len(list(s)) == 2  # one global batch of 6; the 4 left over are dropped, as one process does
    with pytest.raises(ValueError):
        EpochShuffleSampler(list(range(10)), seed=0, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="batch_size"):
        EpochShuffleSampler(list(range(10)), seed=0, batch_size=0)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(str(root), train_per_class=4, test_per_class=2)  # 40 train images (greedyhash: train = official train)
    return str(root)


def test_the_datamodule_hands_each_rank_its_slice(cifar_root):
    """``train_dataloader`` reads world size and rank from the trainer it is attached to."""
    def loader_order(batch_size, world, rank, epoch):
        dm = CIFAR10(root=cifar_root, protocol="greedyhash", image_size=8, num_workers=0, batch_size=batch_size,
                     normalize="none", verify_checksums=False)
        dm.setup("fit")
        dm.trainer = SimpleNamespace(world_size=world, global_rank=rank, current_epoch=0)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return [b[2].tolist() for b in loader]

    for epoch in (0, 1):
        one = loader_order(8, 1, 0, epoch)
        two = [loader_order(4, 2, r, epoch) for r in (0, 1)]
        assert len(one) == 5 and [len(t) for t in two] == [5, 5]
        assert [a + b for a, b in zip(*two)] == one
    with pytest.raises(ValueError, match=r"fewer than batch_size=32 × 2 processes = 64"):
        loader_order(32, 2, 0, 0)


def test_an_items_augmentation_does_not_depend_on_rank_or_workers(cifar_root):
    """Random crops/flips are seeded per (seed, epoch, item): the pixels of a step's global batch are the same with
    1 process and no worker as with 2 ranks reading through a worker each, at every epoch."""
    def pixels(batch_size, world, rank, workers, epoch):
        dm = CIFAR10(root=cifar_root, protocol="greedyhash", image_size=8, num_workers=workers, batch_size=batch_size,
                     normalize="none", verify_checksums=False, train_transform="resize_crop_flip")
        dm.setup("fit")
        dm.trainer = SimpleNamespace(world_size=world, global_rank=rank, current_epoch=0)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return [b[0] for b in loader]

    for epoch in (0, 1):
        one = pixels(8, 1, 0, 0, epoch)
        two = [pixels(4, 2, r, 1, epoch) for r in (0, 1)]
        assert all(torch.equal(torch.cat([a, b]), o) for a, b, o in zip(*two, one)), f"epoch {epoch}"
    assert not torch.equal(torch.cat(pixels(8, 1, 0, 0, 0)), torch.cat(pixels(8, 1, 0, 0, 1)))


def test_resuming_with_another_global_batch_warns_with_the_batch_size_that_continues_the_run(cifar_root):
    from lightning.pytorch.trainer.states import TrainerFn

    def dm(batch_size, world, fn=TrainerFn.FITTING):
        d = CIFAR10(root=cifar_root, protocol="greedyhash", batch_size=batch_size, verify_checksums=False)
        d.trainer = SimpleNamespace(world_size=world, global_rank=0, current_epoch=0, state=SimpleNamespace(fn=fn))
        return d

    saved = dm(8, 1).state_dict()
    assert saved == {"global_batch_size": 8}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dm(4, 2).load_state_dict(saved)  # the same global batch: the same run
        dm(32, 2, TrainerFn.TESTING).load_state_dict(saved)  # nothing to continue
    with pytest.warns(UserWarning, match=r"global batch of 8 images .* has 16 .*set data.batch_size to 4"):
        dm(8, 2).load_state_dict(saved)
    with pytest.warns(UserWarning, match="cannot be split evenly over 3 processes"):
        dm(8, 3).load_state_dict(saved)


# ---------------------------------------------------------------- the console command, as users type it
# BiHalfNet: its bi-half split is over the global batch (gathered across ranks), so a step on 2 × 4 images equals one
# step on the 8 images in one process. SGD: the step is the gradient itself (see tests/test_ddp_training.py). Random
# crops and flips: an image's augmentation must not depend on which rank reads it.
CONFIG = """\
seed_everything: 0
model:
  class_path: BiHalfNet
  init_args: {{bits: 8, backbone: tiny_cnn, pretrained: false, freeze: false, optimizer: sgd, lr: 0.05,
              weight_decay: 0.0, lr_step: null}}
data:
  class_path: CIFAR10
  init_args: {{root: {root}, download: false, verify_checksums: false, protocol: greedyhash, image_size: 16,
              train_transform: resize_crop_flip, num_workers: 0, batch_size: 8}}
trainer:
  accelerator: cpu
  devices: 1
  max_epochs: 2
  num_sanity_val_steps: 0
  enable_progress_bar: false
  enable_model_summary: false
  logger: false
"""
TWO_PROCESSES = ["--trainer.devices", "2", "--trainer.accelerator", "cpu", "--data.batch_size", "4"]
STRATEGIES = ["ddp_spawn", "ddp"]  # ddp: what Lightning uses on a multi-GPU box, through the console launcher


def fit(folder: Path, run_name: str, *args: str) -> str:
    if not LIGHTNING.exists():
        pytest.skip("package not installed with `pip install -e .` (console scripts missing)")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    out = subprocess.run([str(LIGHTNING), "fit", "--config", str(folder / "tiny.yaml"), "--trainer.default_root_dir",
                          str(folder / "runs"), "--run_name", run_name, *args],
                         cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stderr


def weights(folder: Path, run_name: str) -> dict:
    ckpt = torch.load(folder / "runs" / run_name / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt["state_dict"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    # float rounding of the gathered batch's sums; another batch sequence moves the weights by 0.3-1.0 here
    assert diff < 1e-4, f"max abs weight difference {diff:.3g}"


@pytest.fixture(scope="module")
def runs(cifar_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    (folder / "tiny.yaml").write_text(CONFIG.format(root=cifar_root))
    fit(folder, "one")  # the reference: one process, batch 8, 2 epochs
    return folder


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_processes_with_half_the_batch_train_the_one_process_run(runs, strategy):
    fit(runs, f"two-{strategy}", *TWO_PROCESSES, "--trainer.strategy", strategy)
    assert_same_weights(weights(runs, f"two-{strategy}"), weights(runs, "one"))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_run_stopped_after_epoch_1_resumed_on_two_processes_ends_as_the_uninterrupted_run(runs, strategy):
    name = f"moved-{strategy}"
    fit(runs, name, "--trainer.max_epochs", "1")
    ckpt = torch.load(runs / "runs" / name / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["CIFAR10"] == {"global_batch_size": 8}  # what a resumed run is checked against
    stderr = fit(runs, name, *TWO_PROCESSES, "--trainer.strategy", strategy, "--ckpt_path", "last")
    assert_same_weights(weights(runs, name), weights(runs, "one"))
    assert "the checkpoint was trained with a global batch" not in stderr  # 4 × 2 = the checkpoint's 8: no warning
