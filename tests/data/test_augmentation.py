"""Training augmentations of the recipes: the PIL CIFAR10Policy's operations, AutoAugment choices, timm's pipeline order."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_snn.data import CIFAR10DataModule, CIFAR100DataModule
from lightning_snn.data.autoaugment import CIFAR10_SUBPOLICIES, MAGNITUDES, CIFAR10Policy
from lightning_snn.data.transforms import build_train_transform
from lightning_snn.recipe import _flatten_transform

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _img(value: int = 200, size: int = 32) -> Image.Image:
    return Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8))


def test_policy_table_and_magnitudes():
    assert len(CIFAR10_SUBPOLICIES) == 25
    ops = {op for pair in CIFAR10_SUBPOLICIES for _, op, _ in pair}
    assert ops <= set(MAGNITUDES) and all(0 <= i <= 9 for pair in CIFAR10_SUBPOLICIES for _, _, i in pair)
    assert list(MAGNITUDES["posterize"]) == [8, 8, 7, 7, 6, 6, 5, 5, 4, 4]


def test_geometric_operations_fill_grey_and_rotation_turns_one_way():
    policy = CIFAR10Policy()
    random.seed(0)
    rotated = np.asarray(policy.apply(_img(255), "rotate", 9))  # 30 degrees
    assert (rotated[0, 0] == 128).all() and (rotated[16, 16] == 255).all()
    sheared = np.asarray(policy.apply(_img(200), "shearX", 9))  # |shear| 0.3: the right/left corner uncovered
    assert {int(sheared[31, 31, 0]), int(sheared[31, 0, 0])} >= {128} and (sheared[0, 16] == 200).all()
    moved = np.asarray(policy.apply(_img(200), "translateY", 9))  # 150/331 of the height
    assert (moved == 128).all(axis=2).sum() == 32 * round(32 * 150 / 331)
    # rotation is always counter-clockwise: an L-shaped mark lands in the same place whatever the seed
    mark = np.zeros((32, 32, 3), dtype=np.uint8)
    mark[2:6, 20:30] = 255
    outs = []
    for seed in range(4):
        random.seed(seed)
        outs.append(np.asarray(policy.apply(Image.fromarray(mark), "rotate", 5)))
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_colour_operations_use_the_published_thresholds():
    policy = CIFAR10Policy()
    ramp = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (4, 1))[..., None].repeat(3, 2))
    solarized = np.asarray(policy.apply(ramp, "solarize", 2))[0, :, 0].astype(int)
    threshold = 256 - 2 * 256 / 9  # linspace(256, 0, 10)[2]
    expected = np.where(np.arange(256) >= threshold, 255 - np.arange(256), np.arange(256))
    assert np.array_equal(solarized, expected)
    posterized = np.asarray(policy.apply(ramp, "posterize", 7))[0, :, 0].astype(int)  # 5 bits
    assert np.array_equal(posterized, np.arange(256) & 0b11111000)


def test_policy_draws_follow_pythons_random():
    policy = CIFAR10Policy()
    img = Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8))
    random.seed(3)
    a = np.asarray(policy(img))
    random.seed(3)
    b = np.asarray(policy(img))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("choice, name", [(True, "AutoAugment"), ("torchvision", "AutoAugment"), ("cifar10_policy", "CIFAR10Policy")])
def test_autoaugment_choices_sit_between_flip_and_to_tensor(choice, name):
    names = _flatten_transform(build_train_transform(MEAN, STD, crop_size=32, autoaugment=choice, cutout_length=16))
    assert names == ["RandomCrop", "RandomHorizontalFlip", name, "ToTensor", "Normalize", "Cutout"]
    with pytest.raises(ValueError, match="autoaugment: expected"):
        build_train_transform(MEAN, STD, autoaugment="rand")


REVSFORMER = {"scale": [1.0, 1.0], "ratio": [1.0, 1.0], "hflip": 0.5, "color_jitter": 0.0, "interpolation": "bicubic",
              "auto_augment": "rand-m9-n1-mstd0.4-inc1", "re_prob": 0.25, "re_mode": "const"}


def test_timm_pipeline_order_and_erasing_after_normalize():
    dm = CIFAR100DataModule(augment=False, timm_transform=REVSFORMER)
    names = _flatten_transform(dm.train_transform)
    assert names == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "RandAugment", "MaybeToTensor", "Normalize", "RandomErasing"]
    out = dm.train_transform(_img(128))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="set augment, autoaugment and cutout to false"):
        CIFAR10DataModule(timm_transform=REVSFORMER)
    with pytest.raises(ValueError, match="'mean' is set by the DataModule"):
        CIFAR10DataModule(augment=False, timm_transform={"mean": [0, 0, 0]})


def test_timm_rand_augment_restricted_to_spikformers_operations():
    spikformer_ops = ["Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel"]  # Spikformer's aa_snn.py
    dm = CIFAR10DataModule(augment=False, timm_transform={**REVSFORMER, "rand_augment_ops": spikformer_ops})
    ra = next(t for t in dm.train_transform.transforms if type(t).__name__ == "RandAugment")
    assert [op.name for op in ra.ops] == spikformer_ops and ra.num_layers == 1
    assert all(op.magnitude == 9 and op.prob == 0.5 for op in ra.ops)
    full = next(t for t in CIFAR10DataModule(augment=False, timm_transform=REVSFORMER).train_transform.transforms
                if type(t).__name__ == "RandAugment")
    assert len(full.ops) == 15  # timm's increasing list, unchanged without rand_augment_ops
    assert dm.train_transform(_img(32)).shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"\['Posterize'\] are not among"):
        CIFAR10DataModule(augment=False, timm_transform={**REVSFORMER, "rand_augment_ops": ["Posterize"]})
    with pytest.raises(ValueError, match="has no RandAugment"):
        CIFAR10DataModule(augment=False, timm_transform={"rand_augment_ops": ["Rotate"]})
