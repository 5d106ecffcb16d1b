"""The paper-settings table: each method's training schedule as its official code runs it, and the per-dataset
protocols and settings of the papers. ``experiments/make_configs.py`` writes every config from it and
``hashbench compare`` builds its per-method configs from it.

One source of truth: a model's hyperparameter defaults (lr, optimiser, γ, …) live in its class signature and are
read from there; this table holds only what the class cannot know (epochs, batch size, validation schedule,
checkpoint selection, which protocol a paper used on which dataset) and the few per-dataset hyperparameters the
official scripts change. Adding a method = its file in ``lightning_modules/`` + one row in ``METHODS``.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Optional

from hashcore.registry import get_method


@dataclass(frozen=True)
class MethodSettings:
    """How the official code trains a method (sources in docs/methods.md)."""

    source: str
    epochs: int
    batch_size: int
    val_every: int = 5
    #: the official code keeps its best validation epoch (only where the protocol has a validation split)
    select_on_validation: bool = False
    #: epochs that depend on the code length (CIBHash: ≥ 80 at 16 bits; GreedyHash: 300 at 16 bits)
    epochs_at_bits: dict = field(default_factory=dict)
    #: an official schedule counted in iterations (HashNet: 10,000): training stops there; ``epochs=-1`` then means
    #: "as many epochs as that takes"
    max_steps: Optional[int] = None
    #: the only datasets the method's paper configs are written for (None = every dataset of ``DATASETS``)
    datasets: Optional[tuple] = None
    #: extra init args of the RetrievalEvaluation callback (e.g. the tie-averaged mAP next to the stable one)
    retrieval: dict = field(default_factory=dict)


_AE_SCHEDULE = dict(epochs=100, batch_size=128, val_every=25, datasets=("mnist",),
                    retrieval={"tie_averaged": True, "radius": None})

METHODS: dict[str, MethodSettings] = {
    "cib": MethodSettings(
        "zexuanqiu/CIBHash@4c896ee (model/CIBHash.py, main.py): Adam 1e-3, batch 64, τ 0.3, β 1e-3, 60 epochs (≥ 80 at "
        "16 bits), validation every 20 epochs, best validation epoch kept",
        epochs=60, batch_size=64, val_every=20, select_on_validation=True, epochs_at_bits={16: 80}),
    "bihalf": MethodSettings(
        "liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a (ImageHashing/Cifar10_I.py): SGD 1e-4, momentum 0.9, "
        "wd 5e-4, batch 32, γ 6, 300 epochs, lr ×0.1 every 120, evaluation every 10",
        epochs=300, batch_size=32, val_every=10),
    "greedy": MethodSettings(
        "ssppp/GreedyHash@e5089b2 (unsupervised_vgg.py): SGD 1e-4, momentum 0.9, wd 5e-4, batch 32, α 0.1, constant "
        "lr, 60 epochs (300 at 16 bits), evaluation every 5",
        epochs=60, batch_size=32, val_every=5, epochs_at_bits={16: 300}),
    "dch": MethodSettings(
        "swuxyj/DeepHash-pytorch@ab14068 (DCH.py, the paper's loss): AlexNet fully trained, RMSprop 1e-5, wd 1e-5, "
        "batch 128, γ 20, λ 0.1, 150 epochs, evaluation every 5",
        epochs=150, batch_size=128, val_every=5),
    # the Bi-half autoencoder study (AAAI 2021 §4.3): MNIST only; the official evaluation ranks a shuffled database
    # with an unstable sort, so the tie-averaged mAP is reported next to the suite's stable one; no radius metrics
    # (the paper reports none)
    "ae_sign": MethodSettings(
        "liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a (AutoEncoder/Sign.py): MLP autoencoder 784-256-K-256-784 on binarised MNIST, BCE, sign layer (straight-through + γ(U−B)/(N·K), γ 0.2), Adam 1e-3, wd 1e-5, batch 128, 100 epochs, lr ×0.1 at epochs 60 and 80", **_AE_SCHEDULE),
    "ae_signreg": MethodSettings(
        "liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a (AutoEncoder/SignReg.py): MLP autoencoder 784-256-K-256-784 on binarised MNIST, BCE, sign layer (γ 0.2) + bit balance α·mean((Bᵀ1/N)²)/2, α 1, Adam 1e-3, wd 1e-5, batch 128, 100 epochs, lr ×0.1 at epochs 60 and 80", **_AE_SCHEDULE),
    "ae_bihalf": MethodSettings(
        "liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a (AutoEncoder/BiHalf.py): MLP autoencoder 784-256-K-256-784 on binarised MNIST, BCE, Bi-half layer (γ 1), Adam 1e-3, wd 1e-5, batch 128, 100 epochs, lr ×0.1 at epochs 60 and 80", **_AE_SCHEDULE),
    "lsh": MethodSettings("random Gaussian projections of the centred features (Charikar, STOC 2002), fitted in one "
                          "pass over the train split", epochs=1, batch_size=256, val_every=1),
    "itq": MethodSettings("PCA + 50 iterations of orthogonal rotation (Gong & Lazebnik, CVPR 2011, ITQ.m), fitted in "
                          "one pass over the train split", epochs=1, batch_size=256, val_every=1),
    "hashnet": MethodSettings(
        "thuml/HashNet@85387b8 (pytorch/src/train.py, loss.py, network.py): AlexNet fully trained, SGD lr 3e-4 "
        "(README), momentum 0.9, Nesterov, wd 5e-4, hash layer ×10, lr ×0.5 every 2,000 iterations, batch 2×36 "
        "paired across halves, α 10/K, class_num 1, β = (1 + 0.005·t)^0.5 every 200 iterations, 10,000 iterations",
        epochs=-1, batch_size=72, val_every=5, max_steps=10000),
    "dpsh": MethodSettings(
        "jiangqy/DPSH-pytorch@0423181 (DPSH_CIFAR_10.py): AlexNet fully trained, SGD lr 0.05 (no momentum), wd 1e-5, "
        "batch 128, λ 10, U and B of the whole train set by index, 150 epochs, lr ×0.1 every 50",
        epochs=150, batch_size=128, val_every=5),
    "csq": MethodSettings(
        "yuanli2333/Hadamard-Matrix-for-hashing@55cab00 (train.py, network.py; README AlexNet commands): Adam, hash "
        "layers lr 1e-4, backbone ×0.01, lr ×0.7 every 10 epochs, batch 64, Hadamard/Bernoulli centres, λ 1e-4 "
        "(1e-3 at 16/32 bits), 90 epochs, evaluation every 5",
        epochs=90, batch_size=64, val_every=5),
    "dtsh": MethodSettings(
        "Minione/DTSH@4be0707 (MatConvNet: DTSH.m, train_triplet.m, update.m): AlexNet (VGG-F there) fully trained, "
        "SGD lr 5e-4, wd 5e-4, ×2/3 every 20 epochs, batch 128, U of the train set by index, 50×50 triplets per other "
        "class, margin K/2, η 100, 100 epochs; multi-label data: the swuxyj/DeepHash-pytorch@ab14068 DTSH.py port",
        epochs=100, batch_size=128, val_every=5),
    "orthohash": MethodSettings(
        "kamwoh/orthohash@94c4a03 (main.py, scripts/train_hashing.py, functions/loss/orthohash.py, models/alexnet.py): "
        "AlexNet fully trained, Adam 1e-4, wd 5e-4, backbone lr ×0.1, batch 256, Bernoulli codebook, s 8, m 0.2 "
        "(0.3 in the README's CIFAR-10 command), quantization 0, 100 epochs, lr ×0.1 at epoch 80",
        epochs=100, batch_size=256, val_every=5),
    "dpn": MethodSettings(
        "kamwoh/DPN@b4d721e (main.py, scripts/train_hashing.py, models/alexnet.py): AlexNet fully trained, SGD 1e-4, "
        "momentum 0.9, wd 5e-4, batch 256, Gaussian-sign centres (no centre update), margin 1, 200 epochs, lr ×0.1 "
        "at epoch 100",
        epochs=200, batch_size=256, val_every=5),
    "adsh": MethodSettings(
        "jiangqy/ADSH-AAAI2018@2e95574 (ADSH_pytorch/ADSH_CIFAR_10.py, utils/adsh_loss.py): network fully trained, "
        "SGD lr 1e-3 (no momentum), wd 5e-4, batch 64, γ 200, 2,000 sampled queries per outer iteration, 3 epochs "
        "per iteration, V updated bit by bit after each, 50 iterations, lr ÷10 every 10 iterations",
        epochs=150, batch_size=64, val_every=15),
    "dfh": MethodSettings(
        "liyunqianggyn/Push-for-Quantization-Deep-Fisher-Hashing@43c62aa (Main.py, models/DFH_loss.py, center.py): "
        "AlexNet fully trained, SGD lr 0.01, momentum 0.9, wd 5e-4, batch 128, U of the train set by index, class "
        "centres by discrete cyclic coordinate descent, margin 0, η 0.5, μ 1, ν 1, 150 epochs, lr ×0.1 every 50, "
        "evaluation every 10",
        epochs=150, batch_size=128, val_every=10),
    "pcah": MethodSettings("PCA + sign (PCAH, the PCA-Direct baseline of Gong & Lazebnik's ITQ code; "
                           "CISiPLab/cisip-FIRe@e8826c4 functions/loss/pca.py), fitted in one pass over the train split",
                           epochs=1, batch_size=256, val_every=1),
    "sh": MethodSettings("spectral hashing (Weiss, Torralba & Fergus, NIPS 2008), the authors' trainSH.m/compressSH.m: "
                         "PCA, bounding box, the K smallest analytical eigenfunctions; fitted in one pass over the train "
                         "split", epochs=1, batch_size=256, val_every=1),
    "pcarr": MethodSettings("Hashing-Baseline, ilyassmoummad/hashing-baseline@d894a14 (image/pca.py, get_model.py): "
                            "frozen backbone, PCA (torch.pca_lowrank, q = K, niter 2), random orthogonal rotation, "
                            "threshold at 0; batch 256; fitted in one pass over the train split",
                            epochs=1, batch_size=256, val_every=1),
}


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
    m = METHODS[name]
    return override or m.epochs_at_bits.get(bits, m.epochs)


def trainer_block(name: str, *, select: bool, epochs: int) -> dict:
    """Trainer settings of one method: schedule, W&B logger, the retrieval evaluation and checkpoints."""
    m, cls = METHODS[name], get_method(name)
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
    return METHODS[name].datasets is None or dataset in METHODS[name].datasets


def data_file(name: str, dataset: str) -> str:
    """The data block (``experiments/data/<file>.yaml``) of ``name``'s config on ``dataset``."""
    return DATASETS[dataset].per_method.get(name, {}).get("data_file", DATASETS[dataset].data_file)


def method_config(name: str, dataset: Optional[str] = None, *, protocol_settings: bool = True,
                  select: Optional[bool] = None) -> dict:
    """Model + trainer config of one method (+ the data settings the paper used on ``dataset``).

    ``protocol_settings=False`` (``hashbench compare``) leaves the protocol and transforms to the user's data config,
    so every method of a comparison is trained and scored on the same splits.
    """
    m = METHODS[name]
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
