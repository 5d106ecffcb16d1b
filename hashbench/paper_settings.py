"""The papers' settings: each method's official schedule (declared by the method class itself, ``paper_settings``)
and the per-dataset protocols and settings of the papers (``DATASETS``). ``experiments/make_configs.py`` writes every
config from them and ``hashbench compare`` builds its per-method configs from them.

One source of truth: a model's hyperparameter defaults (lr, optimiser, γ, …) live in its class signature and are
read from there; the class attribute ``paper_settings = MethodSettings(...)`` (``hashcore/method_settings.py``) holds
what the signature cannot (epochs, batch size, validation schedule, checkpoint selection); this module holds which
protocol a paper used on which dataset and the few per-dataset hyperparameters the official scripts change.
The method registry is the only list of methods: a method without ``paper_settings`` still trains with
``lightning fit --model <Class>``, but its paper configs and ``hashbench compare`` refuse it with one clear message.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Optional

from hashcore.method_settings import MethodSettings
from lightning_modules import get_method

from .errors import ConfigError


class MissingSettingsError(ConfigError):
    """A registered method whose class declares no ``paper_settings`` of its own."""


def settings_of(name: str) -> MethodSettings:
    """The official schedule the class registered as ``name`` declares; :class:`MissingSettingsError` without one.

    Only the class's own attribute counts: a subclass registered as another method does not silently train with its
    parent's schedule (it writes ``paper_settings = Parent.paper_settings`` when it means to)."""
    cls = get_method(name)
    settings = vars(cls).get("paper_settings")
    if not isinstance(settings, MethodSettings):
        where = cls.__module__.replace(".", "/") + ".py"
        raise MissingSettingsError(
            f"method {cls.method_name!r} ({cls.__name__} in {where}) declares no paper settings: add the class "
            "attribute `paper_settings = MethodSettings(source=..., epochs=..., batch_size=..., val_every=...)` "
            "(from hashcore.method_settings; docs/ADDING.md, \"A new method\", step 3). `lightning fit --model "
            f"{cls.__name__}` trains it without them; its experiment configs and `hashbench compare` need them")
    return settings


def declared_settings(name: str) -> Optional[MethodSettings]:
    """:func:`settings_of` or None (an unregistered model, a method without settings): for notes, never errors."""
    try:
        return settings_of(name)
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True)
class DatasetSettings:
    """A dataset's paper configs: its data file and, per method, the protocol/transforms/hyperparameters used."""

    data_file: str  # experiments/data/<file>.yaml, a hand-written data block
    #: method -> {"data": {...}, "model": {...}, "epochs": n, "own_validation": bool}
    per_method: dict = field(default_factory=dict)
    #: validation queries drawn from the train split, for protocols without a validation split of their own
    val_queries: int = 1000


DATASETS: dict[str, DatasetSettings] = {
    "cifar": DatasetSettings("cifar", per_method={
        # the CIBHash code's protocol has 5,000 validation queries of its own (the official code selects on them)
        "cib": {"data": {"protocol": "cibhash"}, "own_validation": True},
        "greedy": {"data": {"protocol": "greedyhash"}},
        "dch": {"data": {"protocol": "dch", "train_transform": "resize", "eval_transform": "resize"}},
        "lsh": {"data": {"protocol": "bihalf_i"}}, "itq": {"data": {"protocol": "bihalf_i"}},
        "orthohash": {"model": {"margin": 0.3}},  # kamwoh/orthohash README: --ds cifar10 --margin 0.3
        "pcah": {"data": {"protocol": "bihalf_i"}}, "sh": {"data": {"protocol": "bihalf_i"}},
        # hashing-baseline image/get_data.py: query = the 10,000 test images, train = database = the 50,000 train
        # images, Resize 256 (bicubic) → CenterCrop 224, mAP@1000 (image/retrieval.py)
        "pcarr": {"data": {"protocol": "greedyhash", "train_transform": "resize_center_crop",
                           "eval_transform": "resize_center_crop"}},
    }),
    "nuswide": DatasetSettings("nuswide"),
    "flickr": DatasetSettings("flickr", per_method={"bihalf": {"epochs": 100, "model": {"lr_step": 60}}}),
    "coco": DatasetSettings("coco", per_method={
        "bihalf": {"epochs": 150, "model": {"lr_step": 60, "lr": 0.001}, "data": {"train_transform": "resize_crop_flip"}},
    }),
    # the autoencoder study reads MNIST as flattened binary vectors (experiments/data/mnist_binary.yaml)
    "mnist": DatasetSettings("mnist", per_method={
        # validation (mAP of the drawn queries against the 59,750 other train images) is costly next to these
        # few-ms steps: 250 queries, every 25 epochs
        name: {"data_file": "mnist_binary", "data": {"protocol": "bihalf_ae", "val_queries": 250}}
        for name in ("ae_sign", "ae_signreg", "ae_bihalf")}),
}
# DTSH's official triplet sampling is single-label: on the multi-label datasets its configs use the
# swuxyj/DeepHash-pytorch port (every triplet of the batch, shared-label similarity) with the port's optimiser.
for _multi_label in ("nuswide", "flickr", "coco"):
    DATASETS[_multi_label].per_method["dtsh"] = {
        "model": {"variant": "port", "optimizer": "rmsprop", "lr": 1e-5, "weight_decay": 1e-5, "lr_step": None},
        "epochs": 150}

# Frozen-backbone methods run the backbone's deterministic part once per split (callbacks/feature_cache.py). float32
# keeps training what it is without the cache (to float rounding); a random train augmentation (CIBHash's) stays on
# images (exact) and only the evaluation splits are cached.
FEATURE_CACHE = {"class_path": "FeatureCache",
                 "init_args": {"cache_dir": ".cache/features", "dtype": "float32", "random_train_transform": "images"}}
W_AND_B = {"class_path": "lightning.pytorch.loggers.WandbLogger",
           "init_args": {"project": "hashbench", "job_type": "train"}}


def model_defaults(name: str) -> dict:
    """``{"class_path", "init_args"}`` of a method with the defaults of its own ``__init__`` (the source of truth)."""
    cls = get_method(name)
    args = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
            if p.default is not p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {"class_path": cls.__name__, "init_args": args}


def epochs_for(name: str, bits: Optional[int], override: Optional[int] = None) -> int:
    m = settings_of(name)
    return override or m.epochs_at_bits.get(bits, m.epochs)


def trainer_block(name: str, *, select: bool, epochs: int) -> dict:
    """Trainer settings of one method: schedule, W&B logger, the retrieval evaluation and checkpoints."""
    m, cls = settings_of(name), get_method(name)
    callbacks = [copy.deepcopy(FEATURE_CACHE)] if model_defaults(name)["init_args"].get("freeze", True) else []
    callbacks.append({"class_path": "RetrievalEvaluation", "init_args": {"radius": 2, **m.retrieval}})
    if not cls.baseline:  # closed-form baselines have no optimiser, hence no learning rate to monitor
        callbacks.append({"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"})
    if select:  # the official code keeps its best epoch on validation queries, never on the test queries
        callbacks.append({"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                          "init_args": {"monitor": "val/mAP", "mode": "max", "filename": "best-{epoch}"}})
    block = {"max_epochs": epochs, "check_val_every_n_epoch": m.val_every, "num_sanity_val_steps": 0,
             "logger": copy.deepcopy(W_AND_B), "callbacks": callbacks}
    if m.max_steps is not None:
        block["max_steps"] = m.max_steps
    return block


def writes_config(name: str, dataset: str) -> bool:
    """Whether ``experiments/<dataset>_<name>.yaml`` exists: the method's paper configs cover that dataset."""
    datasets = settings_of(name).datasets
    return datasets is None or dataset in datasets


def data_file(name: str, dataset: str) -> str:
    """The data block (``experiments/data/<file>.yaml``) of ``name``'s config on ``dataset``."""
    return DATASETS[dataset].per_method.get(name, {}).get("data_file", DATASETS[dataset].data_file)


def method_config(name: str, dataset: Optional[str] = None, *, protocol_settings: bool = True,
                  select: Optional[bool] = None) -> dict:
    """Model + trainer config of one method (+ the data settings the paper used on ``dataset``).

    ``protocol_settings=False`` (``hashbench compare``) leaves the protocol and transforms to the user's data config,
    so every method of a comparison is trained and scored on the same splits.
    """
    m = settings_of(name)
    ds = DATASETS.get(dataset)
    over = ds.per_method.get(name, {}) if ds else {}
    own_validation = bool(over.get("own_validation")) and protocol_settings
    model = model_defaults(name)
    model["init_args"].update(over.get("model", {}))
    if select is None:  # select only on a validation split of the protocol's own, as the official code
        select = m.select_on_validation and own_validation
    cfg = {"model": model, "trainer": trainer_block(name, select=select, epochs=over.get("epochs", m.epochs))}
    data = {"batch_size": m.batch_size}
    if protocol_settings:
        data.update(over.get("data", {}))
        if ds and not own_validation:  # progress is watched on train-side queries, never on the test queries
            data.setdefault("val_queries", ds.val_queries)
    cfg["data"] = {"init_args": data}
    return cfg
