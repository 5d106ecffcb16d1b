"""FeatureCache's one state: which inputs the backbone reads (cached rows or images) in each phase. The transitions
are tested on the state object, then through a real Trainer (fit -> validate -> test -> predict, a random train
transform left on images, a resumed fit) by recording what the backbone reads at every batch."""
import lightning as L
import pytest
import torch

from callbacks.cached_inputs import CachedInputs, Phase
from callbacks.feature_cache import FeatureCache
from datamodules.cifar import CIFAR10
from lightning_modules import BiHalfNet, CIBHash
from tests.data_fixtures import write_cifar

pytestmark = pytest.mark.filterwarnings("ignore:.*(miniature|md5|checksum|split file|deterministic|num_workers).*")


# ---------------------------------------------------------------------------------------------- the state object
def test_nothing_is_cached_before_the_cache_is_built_and_after_teardown():
    s = CachedInputs()
    for step in (s.start_training, s.start_evaluation):
        step()
        assert s.inputs_cached is False
    s.cached(train=True, evaluation=True)
    assert s.phase is Phase.IDLE and s.inputs_cached is False  # built, but no stage running yet
    s.start_training()
    s.reset()
    assert (s.phase, s.train, s.evaluation, s.inputs_cached) == (Phase.IDLE, False, False, False)


def test_fit_validate_test_predict_transitions():
    s = CachedInputs()
    s.cached(train=True, evaluation=True)
    seen = []
    # fit: sanity validation, epoch 0 with a validation, epoch 1, the end of fit
    for step in (s.start_evaluation, lambda: s.end_evaluation(fitting=True), s.start_training,
                 s.start_evaluation, lambda: s.end_evaluation(fitting=True), s.start_training, s.end_stage):
        step()
        seen.append((s.phase, s.inputs_cached))
    assert seen == [(Phase.EVALUATING, True), (Phase.TRAINING, True), (Phase.TRAINING, True),
                    (Phase.EVALUATING, True), (Phase.TRAINING, True), (Phase.TRAINING, True), (Phase.IDLE, False)]
    s.start_evaluation()  # trainer.validate: validation ends outside fit -> images
    s.end_evaluation(fitting=False)
    assert (s.phase, s.inputs_cached) == (Phase.IDLE, False)
    for start in (s.start_evaluation, s.start_evaluation):  # test, then predict
        start()
        assert s.inputs_cached is True
        s.end_stage()
        assert s.inputs_cached is False


def test_a_train_split_left_on_images_is_never_read_as_features():
    """random_train_transform=images: only the evaluation splits are cached."""
    s = CachedInputs()
    s.cached(train=False, evaluation=True)
    s.start_training()
    assert s.inputs_cached is False
    s.start_evaluation()
    assert s.inputs_cached is True
    s.end_evaluation(fitting=True)
    assert (s.phase, s.inputs_cached) == (Phase.TRAINING, False)


# ---------------------------------------------------------------------------------------------- through a Trainer
class ReadsLog(L.Callback):
    """What the backbone reads at every batch of every stage, and after each stage (placed after FeatureCache)."""

    def __init__(self):
        self.entries = []

    def _note(self, what, pl_module):
        self.entries.append((what, pl_module.backbone.inputs_cached))

    def on_train_batch_start(self, trainer, pl_module, *a):
        self._note("train", pl_module)

    def on_validation_batch_start(self, trainer, pl_module, *a):
        self._note("validate", pl_module)

    def on_test_batch_start(self, trainer, pl_module, *a):
        self._note("test", pl_module)

    def on_predict_batch_start(self, trainer, pl_module, *a):
        self._note("predict", pl_module)

    def teardown(self, trainer, pl_module, stage):
        self._note(f"after {getattr(stage, 'value', stage)}", pl_module)

    def reads(self):
        return {what: {cached for w, cached in self.entries if w == what} for what, _ in self.entries}


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(str(root), train_per_class=5, test_per_class=2)
    return str(root)


def cifar(root, **kw):
    return CIFAR10(root=root, protocol="bihalf_ii", query_size=1, train_size=2, image_size=32, batch_size=8,
                   num_workers=0, verify_checksums=False, val_queries=4, **kw)


def trainer(callbacks, tmp_path, **kw):
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, limit_train_batches=2, val_check_interval=1,  # validation mid-epoch
                     callbacks=callbacks, default_root_dir=tmp_path,
                     **kw)


def test_every_stage_reads_cached_rows_and_images_after_it(cifar_root, tmp_path):
    torch.manual_seed(0)
    model = BiHalfNet(bits=8, backbone="tiny_cnn", pretrained=False)
    dm = cifar(cifar_root)
    log = ReadsLog()
    t = trainer([FeatureCache(cache_dir=str(tmp_path / "cache"), progress=False), log], tmp_path, max_epochs=2,
                enable_checkpointing=False)
    t.fit(model, dm)
    t.validate(model, dm)
    t.test(model, dm)
    t.predict(model, dm)
    assert log.reads() == {"train": {True}, "validate": {True}, "test": {True}, "predict": {True},
                           "after fit": {False}, "after validate": {False}, "after test": {False},
                           "after predict": {False}}


def test_a_random_train_transform_left_on_images_trains_on_images_and_evaluates_on_rows(cifar_root, tmp_path):
    torch.manual_seed(0)
    model = CIBHash(bits=8, backbone="tiny_cnn", pretrained=False, freeze=True)
    dm = cifar(cifar_root, train_transform="cibhash", views=2)
    log = ReadsLog()
    cache = FeatureCache(cache_dir=str(tmp_path / "cache"), random_train_transform="images", progress=False)
    trainer([cache, log], tmp_path, max_epochs=2, enable_checkpointing=False).fit(model, dm)
    assert log.reads() == {"train": {False}, "validate": {True}, "after fit": {False}}


def test_a_resumed_fit_trains_on_cached_rows_again(cifar_root, tmp_path):
    torch.manual_seed(0)
    cache_dir = str(tmp_path / "cache")
    trainer([FeatureCache(cache_dir=cache_dir, progress=False)], tmp_path, max_epochs=1).fit(
        BiHalfNet(bits=8, backbone="tiny_cnn", pretrained=False), cifar(cifar_root))
    ckpt = next((tmp_path / "checkpoints").glob("*.ckpt"))
    torch.manual_seed(0)
    log = ReadsLog()
    cache = FeatureCache(cache_dir=cache_dir, progress=False)
    trainer([cache, log], tmp_path, max_epochs=2, enable_checkpointing=False).fit(
        BiHalfNet(bits=8, backbone="tiny_cnn", pretrained=False), cifar(cifar_root), ckpt_path=str(ckpt))
    assert {v["status"] for v in cache.info.values()} == {"loaded"}
    assert log.reads() == {"train": {True}, "validate": {True}, "after fit": {False}}
