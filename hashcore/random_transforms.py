"""Random-transform detection for the feature cache: a random train transform cannot be cached exactly (one draw
would freeze one augmentation per image), so it is refused unless the augmentation bank is asked for."""
from __future__ import annotations

BANK_OPTION = "bank_views"

# torchvision transform classes whose output is random (besides every ``Random*`` class)
_RANDOM_TRANSFORM_CLASSES = frozenset({
    "ColorJitter", "GaussianBlur", "AutoAugment", "RandAugment", "TrivialAugmentWide", "AugMix",
    "ElasticTransform", "GaussianNoise", "ScaleJitter"})


class RandomTransformError(ValueError):
    """A random transform was about to be cached without the explicit augmentation bank."""


def unwrap_multiview(transform) -> tuple:
    """``(base transform, views)``: ``MultiView(t, v)`` → ``(t, v)``; anything else → ``(transform, 1)``."""
    if transform is not None and type(transform).__name__ == "MultiView" and hasattr(transform, "transform"):
        return transform.transform, int(getattr(transform, "views", 1))
    return transform, 1


def transform_is_random(transform) -> bool:
    """True when a (torchvision-style) transform contains a random step (``Random*``, ColorJitter, ...)."""
    if transform is None:
        return False
    base, _ = unwrap_multiview(transform)
    if base is not transform:
        return transform_is_random(base)
    name = type(transform).__name__
    if name.startswith("Random") or name in _RANDOM_TRANSFORM_CLASSES:
        return True
    children = getattr(transform, "transforms", None)
    if isinstance(children, (list, tuple)):
        return any(transform_is_random(t) for t in children)
    return False


def random_transform_message(split: str, transform_name: str) -> str:
    return (
        f"feature cache: the {split} transform {transform_name} is random (a new augmentation of every "
        f"image at every epoch). Caching its output would freeze ONE augmentation per image and silently "
        f"change the method, so it is refused. Options: (1) set {BANK_OPTION}=M (e.g. 8) to precompute M "
        f"augmented views per image and draw distinct ones each epoch — an explicit, documented "
        f"approximation of fresh augmentation (M views per image instead of a new one every epoch); "
        f"(2) train without the feature cache; (3) use a deterministic train transform (e.g. 'resize').")

