"""Transform registry: names, sizes, determinism of eval transforms, seeded torch-only randomness."""

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.transforms import (EVAL_TRANSFORMS, IMAGENET_MEAN, TRAIN_TRANSFORMS, MultiView,
                                    build_transform, is_random)


def photo(w=40, h=28, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("name", sorted(TRAIN_TRANSFORMS))
@pytest.mark.parametrize("size", [32, 64])
def test_every_train_transform_gives_square_tensors(name, size):
    t = build_transform(name, train=True, image_size=size)
    for img in (photo(), photo(28, 40), photo(32, 32)):
        out = t(img)
        assert out.shape == (3, size, size) and out.dtype == torch.float32


@pytest.mark.parametrize("name", sorted(EVAL_TRANSFORMS))
def test_eval_transforms_are_deterministic(name):
    t = build_transform(name, train=False, image_size=32)
    torch.manual_seed(0)
    a = t(photo())
    torch.manual_seed(1)
    assert torch.equal(a, t(photo())) and a.shape == (3, 32, 32)
    assert not is_random(name)


def test_eval_registry_refuses_random_transforms_and_unknown_names():
    with pytest.raises(ValueError, match=r"unknown eval \(deterministic\) transform 'cibhash'"):
        build_transform("cibhash", train=False)
    with pytest.raises(ValueError, match="available: cibhash, resize, resize_center_crop, resize_crop_flip"):
        build_transform("simclr", train=True)
    with pytest.raises(ValueError, match="normalize"):
        build_transform("resize", train=True, normalize="cifar")


def test_resize_is_vgg_resize_and_center_crop_scales_256_over_224():
    img = photo(32, 32)
    out = build_transform("resize", train=False, image_size=224, normalize="none")(img)
    ref = torch.from_numpy(np.array(img.resize((224, 224), Image.BILINEAR))).permute(2, 0, 1).float() / 255
    assert out.shape == (3, 224, 224) and (out - ref).abs().mean() < 0.02
    steps = build_transform("resize_center_crop", train=False, image_size=64).transforms
    assert steps[0].size == 73 and steps[1].size == (64, 64)  # 64 * 256 / 224 = 73.1
    steps = build_transform("resize_crop_flip", train=True, image_size=224).transforms
    assert steps[0].size == 256 and steps[1].size == (224, 224)


def test_normalization_options():
    img = Image.new("RGB", (8, 8), (255, 0, 128))
    raw = build_transform("resize", train=False, image_size=8, normalize="none")(img)
    assert raw.min() >= 0 and raw.max() <= 1 and abs(raw[0].mean().item() - 1.0) < 1e-6
    norm = build_transform("resize", train=False, image_size=8, normalize="imagenet")(img)
    assert abs(norm[0, 0, 0].item() - (1.0 - IMAGENET_MEAN[0]) / 0.229) < 1e-4


def test_cibhash_augmentation_matches_the_paper_recipe():
    steps = build_transform("cibhash", train=True, image_size=224).transforms
    names = [type(s).__name__ for s in steps]
    assert names[:5] == ["RandomResizedCrop", "RandomHorizontalFlip", "RandomApply", "RandomGrayscale", "RandomApply"]
    assert steps[0].scale == (0.5, 1.0) and steps[0].size == (224, 224)
    jitter = steps[2].transforms[0]
    assert steps[2].p == 0.7 and jitter.brightness == (0.6, 1.4) and jitter.hue == (-0.1, 0.1)
    assert steps[3].p == 0.2
    blur = steps[4].transforms[0]
    assert steps[4].p == 0.5 and blur.kernel_size == (3, 3) and blur.sigma == (0.1, 2.0)


def test_cibhash_randomness_is_torch_seeded_and_leaves_numpy_alone():
    t = build_transform("cibhash", train=True, image_size=32)
    img = photo()
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    torch.manual_seed(42)
    a = [t(img) for _ in range(4)]
    torch.manual_seed(42)
    b = [t(img) for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])
    assert np.array_equal(np.random.get_state()[1], state)  # no numpy global RNG (unlike OpenCV blur)


def test_multiview_returns_independent_views():
    t = MultiView(build_transform("cibhash", train=True, image_size=16), 2)
    v = t(photo())
    assert isinstance(v, list) and len(v) == 2 and not torch.equal(v[0], v[1])
    with pytest.raises(ValueError):
        MultiView(t, 1)
