"""The split protocols of MNIST and Fashion-MNIST (``cifar_like``, ``official``) and of the Bi-half autoencoder study
(``bihalf_ae``), registered when this module is imported."""

from __future__ import annotations

from .protocols import Protocol, register

for _ds in ("mnist", "fashion_mnist"):
    register(Protocol(
        "cifar_like", _ds, "pooled", 10, 1000,
        "CIFAR-style protocol on the 70,000 pooled images: 100 query per class; database = the "
        "rest; train = 500 per class drawn from the database.",
        "hashbench (the split of swuxyj/DeepHash-pytorch@ab14068:utils/tools.py cifar10-1, on MNIST-style data)",
        query=100, train=500, database=None,
        nominal={"query": 1000, "train": 5000, "database": 69000}))
    register(Protocol(
        "official", _ds, "official", 10, 1000,
        "Official split: query = the 10,000 test images; train = database = the 60,000 train images.",
        "hashbench (the official-split protocol of ssppp/GreedyHash@e5089b2:unsupervised_vgg.py)",
        query=None, train=None, database=None,
        nominal={"query": 10000, "train": 60000, "database": 60000}))
register(Protocol(
    "bihalf_ae", "mnist", "official", 10, None,
    "The Bi-half autoencoder study: query = the 10,000 test images; train = database = the 60,000 train images; "
    "mAP over the whole database.",
    "liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a:AutoEncoder/cal_map.py (compress, calculate_map)",
    query=None, train=None, database=None, nominal={"query": 10000, "train": 60000, "database": 60000}))
