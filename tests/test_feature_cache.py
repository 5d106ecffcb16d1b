"""Feature cache: same training with and without it, load/resume/key rules, augmentation bank, fast batches."""
from __future__ import annotations

import copy
import json
import os
import threading

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

import lightning_modules.base as module_base
from callbacks.feature_cache import FeatureCache
from hashcore.feature_store import (CachedFeatureDataset, FeatureCacheBuilder, RandomTransformError,
                                     cache_features, cache_key, encoder_fields)
from callbacks.retrieval import RetrievalEvaluation
from datamodules.cifar import CIFAR10
from lightning_modules import BiHalfNet, CIBHash, GreedyHash
from lightning_modules.backbones import Backbone, build_backbone
from tests.data_fixtures import write_cifar
from tests.toy import ToyImages

pytestmark = pytest.mark.filterwarnings("ignore:.*(miniature|md5|checksum|split file|deterministic).*")


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(str(root), train_per_class=5, test_per_class=2)  # 50 train + 20 test images
    return str(root)


SMALL = dict(protocol="bihalf_ii", query_size=1, train_size=2)  # 10 query, 20 train, 60 database images


def cifar(root, **kw):
    args = dict(root=root, protocol="greedyhash", image_size=32, batch_size=8, num_workers=0,
                verify_checksums=False)
    args.update(kw)
    return CIFAR10(**args)


@pytest.fixture(scope="module")
def vgg_template():
    """One randomly initialised frozen VGG16 (building one costs seconds); every model gets a copy."""
    torch.manual_seed(0)
    return build_backbone("vgg16", pretrained=False, freeze=True)


@pytest.fixture()
def vgg_models(vgg_template, monkeypatch):
    def copy_of_template(name, pretrained, weights_path, freeze, freeze_mode):  # HashModule's call
        t = copy.deepcopy(vgg_template)
        return Backbone(t.name, t.prefix, t.suffix, t.out_dim, freeze=freeze, freeze_mode=freeze_mode)
    monkeypatch.setattr(module_base, "build_backbone", copy_of_template)

    def make(cls, **kw):
        torch.manual_seed(1)  # same head initialisation in both runs
        return cls(bits=16, backbone="vgg16", pretrained=False, lr=1e-2, **kw)
    return make


class Counting(nn.Module):
    """A tiny deterministic encoder that counts its forward calls and rows; can fail after k calls."""

    def __init__(self, fail_after: int | None = None, scale: float = 1.0):
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Flatten(1), nn.Linear(3 * 8 * 8, 12))
        self.calls, self.rows, self.fail_after, self.scale = 0, 0, fail_after, scale

    def forward(self, x):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.rows += len(x)
        return self.net(x) * self.scale


def toy(n=37, seed=1):
    ds = ToyImages(n, seed=seed)
    ds.transform, ds.split = None, "toy"
    return ds


class LossLog(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def run_losses(model, dm, steps=4, callbacks=()):
    L.seed_everything(7, verbose=False)
    log = LossLog()
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[log, *callbacks])
    trainer.fit(model, dm)
    return torch.tensor(log.losses)


# ---------------------------------------------------------------------------------------------- (1) same training
@pytest.mark.parametrize("cls", [BiHalfNet, GreedyHash])
def test_same_loss_trajectory_with_and_without_the_cache(cls, cifar_root, vgg_models, tmp_path):
    """VGG16 keeps dropout live in the suffix: caching relu(fc6) and re-applying the suffix each step gives
    the same losses (same seed) as running the backbone; caching after the dropout does not."""
    plain = run_losses(vgg_models(cls), cifar(cifar_root, **SMALL))
    cache = FeatureCache(cache_dir=str(tmp_path), dtype="float32", progress=False)
    dm = cifar(cifar_root, **SMALL)
    cached = run_losses(vgg_models(cls), dm, callbacks=[cache])
    assert isinstance(dm.train_set, CachedFeatureDataset) and cache.info["train"]["status"] == "built"
    assert len(plain) == len(cached) == 4
    torch.testing.assert_close(cached, plain, rtol=1e-4, atol=1e-6)
    assert plain.std() > 0  # the trajectory actually moves
    if cls is not BiHalfNet:
        return

    # negative control: cache the whole backbone (one dropout mask frozen into the features)
    model = vgg_models(cls)
    dm = cifar(cifar_root, **SMALL)
    dm.setup("fit")
    full = nn.Sequential(model.backbone.prefix, model.backbone.suffix).train()
    frozen_mask = cache_features(dm.train_set, full, {"encoder": "vgg16+suffix"}, split="train",
                                 cache_dir=str(tmp_path / "after_dropout"), dtype="float32", progress=False)
    model.backbone.suffix = nn.Identity()
    model.use_cached_inputs(True)  # the rows already went through the (dropout-frozen) suffix
    dm.setup = lambda stage=None: None  # keep the sets built above
    dm.train_set = frozen_mask
    wrong = run_losses(model, dm)
    assert (wrong - plain).abs().max() > 1e-3


def test_eval_mode_caches_the_whole_backbone_and_trains_the_same(cifar_root, vgg_models, tmp_path):
    """freeze_mode=eval: VGG16 is deterministic end to end, so the cache holds relu(fc7) (no per-step fc7)
    and the losses equal the uncached run's."""
    def eval_model():
        return vgg_models(BiHalfNet, freeze_mode="eval")

    plain = run_losses(eval_model(), cifar(cifar_root, **SMALL))
    cache = FeatureCache(cache_dir=str(tmp_path), dtype="float32", progress=False)
    dm = cifar(cifar_root, **SMALL)
    model = eval_model()
    cached = run_losses(model, dm, callbacks=[cache])
    torch.testing.assert_close(cached, plain, rtol=1e-4, atol=1e-6)
    assert plain.std() > 0

    rows = dm.train_set.get_batch([0, 1])[0]
    images = torch.stack([dm.train_set.source[i][0] for i in (0, 1)])
    bb = model.backbone.eval()
    with torch.no_grad():
        whole, prefix_only = bb(images), bb.prefix(images)
    torch.testing.assert_close(rows, whole, rtol=1e-4, atol=1e-5)  # relu(fc7), not relu(fc6)
    assert (rows - prefix_only).abs().max() > 1e-3
    assert isinstance(model.cacheable_encoder(), nn.Sequential)  # prefix and (deterministic) suffix
    assert dm.train_set.meta["fields"]["encoder"] == "vgg16:whole"


# ---------------------------------------------------------------------------------------------- (2) second run loads
def test_second_run_loads_instead_of_recomputing(tmp_path):
    ds, enc = toy(), Counting()
    first = cache_features(ds, enc, {"encoder": "counting"}, cache_dir=str(tmp_path), batch_size=8, progress=False)
    assert first.cache_status == "built" and enc.calls > 0
    enc2 = copy.deepcopy(enc)
    enc2.calls = enc2.rows = 0
    second = cache_features(ds, enc2, {"encoder": "counting"}, cache_dir=str(tmp_path), batch_size=8, progress=False)
    assert second.cache_status == "loaded" and enc2.calls == 0
    assert second.path == first.path and np.array_equal(second.features, first.features)


def test_callback_second_fit_does_not_run_the_backbone(cifar_root, tmp_path):
    def fit():
        cache = FeatureCache(cache_dir=str(tmp_path), progress=False)
        torch.manual_seed(0)  # same backbone weights, hence the same cache key, in both runs
        model = BiHalfNet(bits=8, backbone="tiny_cnn", pretrained=False)
        trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                            callbacks=[cache])
        calls = []
        model.backbone.prefix.register_forward_hook(lambda *a: calls.append(1))
        trainer.fit(model, cifar(cifar_root))
        return cache, len(calls)
    cache, calls = fit()
    assert {v["status"] for v in cache.info.values()} == {"built"} and calls > 0
    assert "train" in cache.info
    cache, calls = fit()
    assert {v["status"] for v in cache.info.values()} == {"loaded"} and calls == 0


# ---------------------------------------------------------------------------------------------- (3) interruption
def test_interrupted_build_is_never_complete_and_is_resumed(tmp_path):
    ds = toy(n=40)
    builder = FeatureCacheBuilder(str(tmp_path), batch_size=4, progress=False, checkpoint_seconds=0)
    with pytest.raises(KeyboardInterrupt):
        builder.get(ds, Counting(fail_after=4), {"encoder": "counting"}, split="toy")  # probe + 3 batches
    entries = os.listdir(tmp_path)
    assert len(entries) == 1 and entries[0].endswith(".partial")
    partial = tmp_path / entries[0]
    assert not (partial / "meta.json").exists()
    assert json.loads((partial / "progress-rank0.json").read_text())["done"] == 12

    enc = Counting()
    resumed = FeatureCacheBuilder(str(tmp_path), batch_size=4, progress=False).get(
        ds, enc, {"encoder": "counting"}, split="toy")
    assert resumed.cache_status == "resumed" and enc.rows == 40 - 12  # only the missing rows
    assert not partial.exists() and json.loads((tmp_path / resumed.path / "meta.json").read_text())["complete"]
    fresh = cache_features(ds, Counting(), {"encoder": "counting"}, split="toy", cache_dir=str(tmp_path / "fresh"),
                           batch_size=4, dtype="float16", progress=False)
    np.testing.assert_array_equal(resumed.features, fresh.features)


def test_partial_from_another_world_size_is_rebuilt_and_broken_entries_are_not_read(tmp_path):
    ds = toy(n=20)
    with pytest.raises(KeyboardInterrupt):
        FeatureCacheBuilder(str(tmp_path), batch_size=4, progress=False, checkpoint_seconds=0).get(
            ds, Counting(fail_after=2), {"encoder": "counting"}, split="toy")
    partial = tmp_path / os.listdir(tmp_path)[0]
    plan = json.loads((partial / "plan.json").read_text())
    plan["world"] = 4
    (partial / "plan.json").write_text(json.dumps(plan))
    enc = Counting()
    with pytest.warns(UserWarning, match="another world size"):
        out = FeatureCacheBuilder(str(tmp_path), batch_size=4, progress=False).get(ds, enc, {"encoder": "counting"}, "toy")
    assert out.cache_status == "built" and enc.rows == 20 + 1  # all rows + the dimension probe

    # a final entry whose meta says incomplete (or is missing) is rebuilt, never read
    meta_path = os.path.join(out.path, "meta.json")
    meta = json.load(open(meta_path))
    meta["complete"] = False
    json.dump(meta, open(meta_path, "w"))
    with pytest.warns(UserWarning, match="incomplete"):
        again = cache_features(ds, Counting(), {"encoder": "counting"}, split="toy", cache_dir=str(tmp_path),
                               batch_size=4, progress=False)
    assert again.cache_status == "built"


def test_ranks_write_their_shards_and_the_result_equals_one_process(tmp_path):
    ds = toy(n=23)
    single = cache_features(ds, Counting(), {"encoder": "counting"}, split="toy", cache_dir=str(tmp_path / "one"),
                            batch_size=4, progress=False)
    world, barrier, box = 2, threading.Barrier(2), {}

    def broadcast(obj):
        if obj is not None:
            box["plan"] = obj
        barrier.wait()
        return copy.deepcopy(box["plan"])

    encoders, results = [Counting(), Counting()], [None, None]

    def rank_main(r):
        b = FeatureCacheBuilder(str(tmp_path / "ddp"), batch_size=4, progress=False, rank=r, world=world,
                                barrier=barrier.wait, broadcast=broadcast)
        results[r] = b.get(ds, encoders[r], {"encoder": "counting"}, split="toy")

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r is not None for r in results)
    assert [e.rows for e in encoders] == [11 + 1, 12]  # rank 0 also probes the feature width
    np.testing.assert_array_equal(results[0].features, single.features)
    np.testing.assert_array_equal(results[1].features, single.features)


# ---------------------------------------------------------------------------------------------- (4) key
def test_key_changes_with_transform_weights_and_split(cifar_root):
    dm = cifar(cifar_root)
    dm.setup("fit")
    enc = build_backbone("tiny_cnn", pretrained=False).prefix
    b = FeatureCacheBuilder("unused")
    fields = encoder_fields(enc, "tiny_cnn")
    key = lambda ds, f=fields, split="query": cache_key(b.fields(ds, f, split))  # noqa: E731
    base = key(dm.query_set)
    assert key(dm.query_set) == base
    other_tf = cifar(cifar_root, eval_transform="resize_center_crop")
    other_tf.setup("fit")
    assert key(other_tf.query_set) != base                                  # transform
    assert key(dm.database_set, split="database") != base                   # split
    assert key(dm.query_set, split="database") != base                      # split name alone
    with torch.no_grad():
        enc[0].weight[0, 0, 0, 0] += 1e-3
    assert key(dm.query_set, encoder_fields(enc, "tiny_cnn")) != base       # weights
    assert cache_key(FeatureCacheBuilder("x", dtype="float32").fields(dm.query_set, fields, "query")) != base
    small = cifar(cifar_root, image_size=16)
    small.setup("fit")
    assert key(small.query_set) != base                                     # image size (transform repr)


# ---------------------------------------------------------------------------------------------- (5) random transforms
def test_random_train_transform_needs_the_explicit_bank(cifar_root, tmp_path):
    dm = cifar(cifar_root, train_transform="cibhash", views=2, **SMALL)
    dm.setup("fit")
    enc = build_backbone("tiny_cnn", pretrained=False).prefix.eval()
    with pytest.raises(RandomTransformError, match="bank_views"):
        cache_features(dm.train_set, enc, split="train", cache_dir=str(tmp_path), progress=False)
    assert not os.listdir(tmp_path)  # nothing was cached

    bank = cache_features(dm.train_set, enc, split="train", cache_dir=str(tmp_path), bank_views=3, bank_seed=5,
                          dtype="float32", progress=False)
    assert bank.features.shape == (3, len(dm.train_set), 64)
    for m in range(3):  # the views really are different augmentations
        assert not np.allclose(bank.features[m], bank.features[(m + 1) % 3])
    torch.manual_seed(0)
    (a, b), label, index = bank[4]
    rows = bank.features[:, 4]
    which = [int(np.argmin(np.abs(rows - v.numpy()).sum(1))) for v in (a, b)]
    assert which[0] != which[1] and np.allclose(rows[which[0]], a) and np.allclose(rows[which[1]], b)
    assert index == 4 and torch.equal(label, dm.train_set.labels[4])
    batch = bank.__getitems__(list(range(len(bank))))
    picks = [[int(np.argmin(np.abs(bank.features[:, i] - v.numpy()).sum(1))) for v in views]
             for i, (views, _, _) in enumerate(batch)]
    assert all(p != q for p, q in picks)
    torch.manual_seed(0)
    assert all(torch.equal(x, y) for x, y in zip(bank[4][0], (a, b)))     # reproducible under a seed
    # the bank itself is reproducible (per-view, per-item seeds), whatever the batching
    again = cache_features(dm.train_set, enc, split="train", cache_dir=str(tmp_path / "again"), bank_views=3,
                           bank_seed=5, dtype="float32", batch_size=7, progress=False)
    np.testing.assert_allclose(again.features, bank.features, rtol=1e-5, atol=1e-6)


def test_callback_refuses_random_train_transform_without_bank(cifar_root, tmp_path):
    model = CIBHash(bits=8, backbone="tiny_cnn", pretrained=False, freeze=True)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[FeatureCache(cache_dir=str(tmp_path), progress=False)])
    with pytest.raises(RandomTransformError, match="bank_views=M"):
        trainer.fit(model, cifar(cifar_root, train_transform="cibhash", views=2, **SMALL))

    cache = FeatureCache(cache_dir=str(tmp_path), bank_views=3, progress=False)
    model = CIBHash(bits=8, backbone="tiny_cnn", pretrained=False, freeze=True)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[cache])
    trainer.fit(model, cifar(cifar_root, train_transform="cibhash", views=2, batch_size=4, **SMALL))
    assert trainer.global_step == 2 and cache.info["train"]["shape"][0] == 3


def test_random_train_transform_can_stay_on_images_while_evaluation_is_cached(cifar_root, tmp_path):
    """random_train_transform=images: CIBHash trains on fresh augmentations exactly as without the cache
    (same losses), the deterministic query/database splits are cached, the loader workers are kept."""
    def run(callbacks):
        torch.manual_seed(0)
        model = CIBHash(bits=8, backbone="tiny_cnn", pretrained=False, freeze=True)
        dm = cifar(cifar_root, train_transform="cibhash", views=2, batch_size=4, num_workers=1, val_queries=4, **SMALL)
        return run_losses(model, dm, steps=3, callbacks=callbacks), dm

    plain, _ = run([])
    cache = FeatureCache(cache_dir=str(tmp_path), random_train_transform="images", progress=False)
    on_images, dm = run([cache])
    torch.testing.assert_close(on_images, plain)
    assert plain.std() > 0
    assert not isinstance(dm.dataset("train"), CachedFeatureDataset) and "train" not in cache.info
    assert {"val_query", "val_database"} <= set(cache.info)
    assert all(isinstance(dm.dataset(s), CachedFeatureDataset) for s in ("val_query", "val_database"))
    # images still need the workers; cached rows are served in-process; nothing outside the datamodule changed it
    assert dm.num_workers == 1 and dm.train_dataloader().num_workers == 1
    assert [loader.num_workers for loader in dm.val_dataloader()] == [0, 0]
    with pytest.raises(ValueError, match="random_train_transform"):
        FeatureCache(random_train_transform="skip")


def test_split_cached_by_another_encoder_is_recomputed(cifar_root, tmp_path):
    """A datamodule whose setup() keeps its sets can hand a new model features of the previous one (same
    width): the callback compares the encoder fingerprint and recomputes from the kept images."""
    def model(seed):
        torch.manual_seed(seed)
        return BiHalfNet(bits=8, backbone="tiny_cnn", pretrained=False)

    def fit(m, dm):
        trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                            callbacks=[FeatureCache(cache_dir=str(tmp_path), dtype="float32", progress=False)])
        trainer.fit(m, dm)

    dm = cifar(cifar_root, **SMALL)
    fit(model(0), dm)
    first = dm.train_set
    dm.setup = lambda stage=None: None  # keeps the cached set
    second = model(1)
    fit(second, dm)
    assert isinstance(dm.train_set, CachedFeatureDataset) and dm.train_set.path != first.path
    images = torch.stack([first.source[i][0] for i in (0, 1)])
    with torch.no_grad():
        expected = second.backbone.prefix(images)
    torch.testing.assert_close(dm.train_set.get_batch([0, 1])[0], expected, rtol=1e-5, atol=1e-6)


def test_trained_backbone_is_left_alone_with_a_warning(cifar_root, tmp_path):
    model = BiHalfNet(bits=8, backbone="tiny_cnn", pretrained=False, freeze=False)
    dm = cifar(cifar_root)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[FeatureCache(cache_dir=str(tmp_path), progress=False)])
    with pytest.warns(UserWarning, match="is trained"):
        trainer.fit(model, dm)
    assert not isinstance(dm.train_set, CachedFeatureDataset) and not os.listdir(tmp_path)


# ---------------------------------------------------------------------------------------------- (6) items
def test_cached_items_equal_prefix_of_the_original_items(cifar_root, tmp_path):
    dm = cifar(cifar_root)
    dm.setup("fit")
    prefix = build_backbone("tiny_cnn", pretrained=False).prefix.eval()
    cached = cache_features(dm.query_set, prefix, split="query", cache_dir=str(tmp_path), dtype="float32",
                            batch_size=6, progress=False)
    assert len(cached) == len(dm.query_set) and np.array_equal(cached.pool_indices, dm.query_set.pool_indices)
    for i in (0, 7, len(cached) - 1):
        image, label, index = dm.query_set[i]
        feat, clabel, cindex = cached[i]
        with torch.no_grad():
            torch.testing.assert_close(feat, prefix(image[None])[0], rtol=1e-5, atol=1e-6)
        assert torch.equal(clabel, label) and cindex == index == i and feat.dtype == torch.float32
    # channels-last encoding (the GPU build's memory format) gives the same features
    cl = FeatureCacheBuilder(str(tmp_path / "cl"), dtype="float32", channels_last=True, progress=False).get(
        dm.query_set, prefix, {"encoder": "tiny"}, split="query")
    np.testing.assert_allclose(cl.features, cached.features, rtol=1e-5, atol=1e-6)
    assert next(prefix.parameters()).is_contiguous()  # the encoder's memory format is restored
    # the two batch paths (per item + collate, one __getitems__ read per batch) agree
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    per_item = list(torch.utils.data.DataLoader(list(cached), batch_size=4, shuffle=True, generator=gen()))
    batched = list(torch.utils.data.DataLoader(cached, batch_size=4, shuffle=True, generator=gen()))
    assert len(per_item) == len(batched) and cached.loads_in_process
    for p, b in zip(per_item, batched):
        for x, y in zip(p, b):
            assert torch.equal(x, y)


def test_fit_validate_test_give_the_same_metrics_with_the_cache(cifar_root, tmp_path):
    def evaluate(callbacks):
        torch.manual_seed(0)
        model = BiHalfNet(bits=8, backbone="tiny_cnn", pretrained=False)
        trainer = L.Trainer(max_epochs=1, limit_train_batches=2, accelerator="cpu", logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, callbacks=[RetrievalEvaluation(log_curves=False), *callbacks])
        dm = cifar(cifar_root, batch_size=10, val_queries=6)
        L.seed_everything(0, verbose=False)
        trainer.fit(model, dm)
        fit = dict(trainer.callback_metrics)
        val = trainer.validate(model, dm, verbose=False)[0]
        test = trainer.test(model, dm, verbose=False)[0]
        return fit, val, test, dm
    plain = evaluate([])
    cached = evaluate([FeatureCache(cache_dir=str(tmp_path), dtype="float32", progress=False)])
    assert isinstance(cached[3].database_set, CachedFeatureDataset)
    for a, b in zip(plain[1:3], cached[1:3]):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], abs=1e-5), k
    assert float(plain[0]["val/mAP@1000"]) == pytest.approx(float(cached[0]["val/mAP@1000"]), abs=1e-5)


# ---------------------------------------------------------------------------------------------- (7) fp16
def test_float16_storage_is_within_tolerance_and_overflow_is_an_error(tmp_path):
    ds = toy()
    f32 = cache_features(ds, Counting(), {"encoder": "c"}, cache_dir=str(tmp_path), dtype="float32", progress=False)
    f16 = cache_features(ds, Counting(), {"encoder": "c"}, cache_dir=str(tmp_path), dtype="float16", progress=False)
    assert f16.path != f32.path and f16.features.dtype == np.float16
    torch.testing.assert_close(f16[5][0], f32[5][0], rtol=1e-3, atol=1e-3)
    assert f16[5][0].dtype == torch.float32
    with pytest.raises(FloatingPointError, match="float32"):
        cache_features(ds, Counting(scale=1e6), {"encoder": "big"}, cache_dir=str(tmp_path), progress=False)


# ---------------------------------------------------------------------------------------------- (8) trust
def test_features_file_overwritten_in_place_is_rebuilt_with_one_warning(tmp_path):
    ds = toy()
    first = cache_features(ds, Counting(), {"encoder": "c"}, cache_dir=str(tmp_path), dtype="float32", progress=False)
    good = np.array(first.features)
    arr = np.load(os.path.join(first.path, "features.npy"), mmap_mode="r+")
    arr[3:9] = 0.0  # e.g. another job writing into the same file, or a disk error
    arr.flush()
    del arr
    enc = Counting()
    with pytest.warns(UserWarning, match="modified after it was written") as caught:
        again = cache_features(ds, enc, {"encoder": "c"}, cache_dir=str(tmp_path), dtype="float32", progress=False)
    assert len([w for w in caught if "feature cache" in str(w.message)]) == 1
    assert again.cache_status == "built" and enc.rows == len(ds) + 1 and again.path == first.path
    np.testing.assert_array_equal(np.asarray(again.features), good)


def _replace_test_pixels(root):
    """Rewrite test_batch with other pixels and the same labels (as replaced image files would be)."""
    import pickle
    path = root / "cifar-10-batches-py" / "test_batch"
    batch = pickle.loads(path.read_bytes())
    batch[b"data"] = (255 - np.asarray(batch[b"data"])).astype(np.uint8)
    path.write_bytes(pickle.dumps(batch))


def test_changed_images_rebuild_the_entry_with_one_warning(tmp_path):
    """Same split, same labels, other pixels (a re-extracted or edited dataset): the old features are never used."""
    root = tmp_path / "data"
    write_cifar(str(root), train_per_class=5, test_per_class=2)
    enc = build_backbone("tiny_cnn", pretrained=False).prefix.eval()

    def query_cache():
        dm = cifar(str(root), write_splits=False)
        dm.setup("test")
        return cache_features(dm.query_set, enc, {"encoder": "tiny"}, split="query", cache_dir=str(tmp_path / "c"),
                              dtype="float32", progress=False), dm

    first, _ = query_cache()
    again, _ = query_cache()
    assert again.cache_status == "loaded"
    _replace_test_pixels(root)
    with pytest.warns(UserWarning, match="inputs .* changed"):
        rebuilt, dm = query_cache()
    assert rebuilt.cache_status == "built" and rebuilt.path == first.path
    with torch.no_grad():
        expected = enc(torch.stack([dm.query_set[i][0] for i in range(3)]))
    torch.testing.assert_close(torch.as_tensor(np.asarray(rebuilt.features[:3])), expected, rtol=1e-5, atol=1e-6)


def test_a_dataset_in_two_roles_is_one_entry_shared_by_fit_and_test(cifar_root, tmp_path):
    """CIFAR-10 cibhash: the validation database is the database itself; it is cached once, under its first role."""
    torch.manual_seed(0)
    model = BiHalfNet(bits=8, backbone="tiny_cnn", pretrained=False)
    cache = FeatureCache(cache_dir=str(tmp_path), dtype="float32", progress=False)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[RetrievalEvaluation(log_curves=False, print_results=False), cache])
    dm = cifar(cifar_root, protocol="cibhash", train_size=2, val_query_size=4, batch_size=10)
    trainer.fit(model, dm)
    assert cache.info["database"]["status"] == "built" and "val_database" not in cache.info
    trainer.test(model, dm, verbose=False)
    assert cache.info["database"]["status"] == "loaded" and cache.info["query"]["status"] == "built"
    assert len(os.listdir(tmp_path)) == 4  # train, val_query, database, query
