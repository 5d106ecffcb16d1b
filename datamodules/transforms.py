"""Image transforms of the reproduced methods, selectable by name.

Every transform takes an RGB ``PIL.Image`` (datasets convert grey images to 3 channels) and returns a
float tensor ``3 x S x S`` where ``S = image_size`` (224 in the papers; e.g. 64 for a fast CPU demo).
All randomness comes from torch's RNG (torchvision transforms), so DataLoader workers, which torch
seeds individually, draw different augmentations, and a seeded run is reproducible.

Train transforms (``TRAIN_TRANSFORMS``):

* ``resize``: ``Resize((S, S))`` only; the VGG ``Scale(224)`` that Bi-half and GreedyHash apply to
  CIFAR (identical to ``Resize(224)`` for square images, and square for the others so they batch).
* ``resize_crop_flip``: ``Resize(S*256/224)`` (shorter side) -> ``RandomCrop(S)`` -> random
  horizontal flip (DeepHash-pytorch non-CIFAR, Bi-half MS-COCO, DCH-pytorch).
* ``cibhash``: ``RandomResizedCrop(S, scale=(0.5, 1))`` -> flip -> ``ColorJitter(.4,.4,.4,.1)`` with
  p = .7 -> grayscale p = .2 -> Gaussian blur (3x3, sigma ~ U[0.1, 2], p = .5, torch-based instead
  of CIBHash's OpenCV blur driven by numpy's global RNG) (CIBHash ``utils/data.py``).
* any eval transform below (deterministic training input).

Eval transforms (``EVAL_TRANSFORMS``, all deterministic):

* ``resize``: ``Resize((S, S))`` (CIBHash CIFAR test transform, Bi-half/GreedyHash).
* ``resize_center_crop``: ``Resize(S*256/224)`` -> ``CenterCrop(S)`` (DeepHash-pytorch, Bi-half COCO).

Then ``ToTensor`` and, with ``normalize="imagenet"``, ImageNet mean/std normalisation
(``"none"`` keeps values in [0, 1]).
"""

from __future__ import annotations

from typing import Callable, Dict, List

import torch
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("imagenet", "none")


def _resize_size(image_size: int) -> int:
    """The 256-for-224 resize size, scaled with ``image_size``."""
    return int(round(image_size * 256 / 224))


def _resize(s: int) -> List[Callable]:
    return [T.Resize((s, s))]


def _resize_center_crop(s: int) -> List[Callable]:
    return [T.Resize(_resize_size(s)), T.CenterCrop(s)]


def _resize_crop_flip(s: int) -> List[Callable]:
    return [T.Resize(_resize_size(s)), T.RandomCrop(s), T.RandomHorizontalFlip()]


def _cibhash(s: int) -> List[Callable]:
    return [
        T.RandomResizedCrop(s, scale=(0.5, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.7),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(kernel_size=3, sigma=(0.1, 2.0))], p=0.5),
    ]


EVAL_TRANSFORMS: Dict[str, Callable[[int], List[Callable]]] = {
    "resize": _resize,
    "resize_center_crop": _resize_center_crop,
}
TRAIN_TRANSFORMS: Dict[str, Callable[[int], List[Callable]]] = {
    **EVAL_TRANSFORMS,
    "resize_crop_flip": _resize_crop_flip,
    "cibhash": _cibhash,
}
RANDOM_TRANSFORMS = frozenset({"resize_crop_flip", "cibhash"})


def build_transform(name: str, train: bool, image_size: int = 224,
                    normalize: str = "imagenet") -> T.Compose:
    """The transform called ``name`` (train or eval registry) for ``image_size`` and ``normalize``."""
    table = TRAIN_TRANSFORMS if train else EVAL_TRANSFORMS
    key = str(name).strip().lower().replace("-", "_")
    if key not in table:
        kind = "train" if train else "eval (deterministic)"
        raise ValueError(f"unknown {kind} transform {name!r}; available: {', '.join(sorted(table))}")
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    steps = list(table[key](image_size)) + [T.ToTensor()]
    if normalize == "imagenet":
        steps.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return T.Compose(steps)


def is_random(name: str) -> bool:
    return str(name).strip().lower().replace("-", "_") in RANDOM_TRANSFORMS


class MultiView:
    """Apply ``transform`` ``views`` times independently; returns a list of ``views`` tensors."""

    def __init__(self, transform: Callable, views: int):
        if views < 2:
            raise ValueError("MultiView needs views >= 2")
        self.transform = transform
        self.views = int(views)

    def __call__(self, img) -> List[torch.Tensor]:
        return [self.transform(img) for _ in range(self.views)]

    def __repr__(self) -> str:
        return f"MultiView(views={self.views}, transform={self.transform!r})"
