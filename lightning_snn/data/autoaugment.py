"""AutoAugment's CIFAR-10 policy as the PIL implementation that many SNN repositories copy.

AutoAugment (Cubuk et al., "AutoAugment: learning augmentation policies from data", CVPR 2019) found 25
sub-policies for CIFAR-10 (its Appendix, Table 7): each names two image operations, each with a
probability and a magnitude index in 0..9. One sub-policy is drawn per image.

torchvision's ``AutoAugment(AutoAugmentPolicy.CIFAR10)`` implements the same table but not the same
operations as the widely copied PIL implementation (``CIFAR10Policy``, used by the Rate-BP repository,
``Tab-ct/rate-based-backpropagation`` ``util/image_augment.py``): there geometric operations fill with grey
128 instead of black, shears resample bicubically, rotation always turns counter-clockwise and composites
onto grey, and solarize thresholds lie on ``linspace(256, 0, 10)``. :class:`CIFAR10Policy` computes those
operations, so a config that mirrors such a repository augments as it did (``autoaugment: cifar10_policy``).

Random draws use Python's ``random`` module, as that implementation does (Lightning seeds it per
DataLoader worker with ``seed_everything(workers=True)``).
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

__all__ = ["CIFAR10Policy", "CIFAR10_SUBPOLICIES", "MAGNITUDES"]

# (probability, operation, magnitude index) pairs of the 25 CIFAR-10 sub-policies (AutoAugment, Table 7)
CIFAR10_SUBPOLICIES: tuple[tuple[tuple[float, str, int], tuple[float, str, int]], ...] = (
    ((0.1, "invert", 7), (0.2, "contrast", 6)),
    ((0.7, "rotate", 2), (0.3, "translateX", 9)),
    ((0.8, "sharpness", 1), (0.9, "sharpness", 3)),
    ((0.5, "shearY", 8), (0.7, "translateY", 9)),
    ((0.5, "autocontrast", 8), (0.9, "equalize", 2)),
    ((0.2, "shearY", 7), (0.3, "posterize", 7)),
    ((0.4, "color", 3), (0.6, "brightness", 7)),
    ((0.3, "sharpness", 9), (0.7, "brightness", 9)),
    ((0.6, "equalize", 5), (0.5, "equalize", 1)),
    ((0.6, "contrast", 7), (0.6, "sharpness", 5)),
    ((0.7, "color", 7), (0.5, "translateX", 8)),
    ((0.3, "equalize", 7), (0.4, "autocontrast", 8)),
    ((0.4, "translateY", 3), (0.2, "sharpness", 6)),
    ((0.9, "brightness", 6), (0.2, "color", 8)),
    ((0.5, "solarize", 2), (0.0, "invert", 3)),
    ((0.2, "equalize", 0), (0.6, "autocontrast", 0)),
    ((0.2, "equalize", 8), (0.8, "equalize", 4)),
    ((0.9, "color", 9), (0.6, "equalize", 6)),
    ((0.8, "autocontrast", 4), (0.2, "solarize", 8)),
    ((0.1, "brightness", 3), (0.7, "color", 0)),
    ((0.4, "solarize", 5), (0.9, "autocontrast", 3)),
    ((0.9, "translateY", 9), (0.7, "translateY", 9)),
    ((0.9, "autocontrast", 2), (0.8, "solarize", 3)),
    ((0.8, "equalize", 8), (0.1, "invert", 3)),
    ((0.7, "translateY", 9), (0.9, "autocontrast", 1)),
)

#: the magnitude of each operation at index 0..9
MAGNITUDES: dict[str, Sequence[float]] = {
    "shearX": np.linspace(0, 0.3, 10),
    "shearY": np.linspace(0, 0.3, 10),
    "translateX": np.linspace(0, 150 / 331, 10),
    "translateY": np.linspace(0, 150 / 331, 10),
    "rotate": np.linspace(0, 30, 10),
    "color": np.linspace(0.0, 0.9, 10),
    "posterize": np.round(np.linspace(8, 4, 10), 0).astype(np.int32),
    "solarize": np.linspace(256, 0, 10),
    "contrast": np.linspace(0.0, 0.9, 10),
    "sharpness": np.linspace(0.0, 0.9, 10),
    "brightness": np.linspace(0.0, 0.9, 10),
    "autocontrast": [0] * 10,
    "equalize": [0] * 10,
    "invert": [0] * 10,
}


def _sign() -> int:
    return random.choice([-1, 1])


def _operations(fill: tuple[int, int, int]) -> dict[str, Callable[[Image.Image, float], Image.Image]]:
    def affine(img: Image.Image, coeffs: tuple[float, ...], resample: int = Image.NEAREST) -> Image.Image:
        return img.transform(img.size, Image.AFFINE, coeffs, resample, fillcolor=fill)

    def rotate(img: Image.Image, degrees: float) -> Image.Image:
        turned = img.convert("RGBA").rotate(degrees)
        return Image.composite(turned, Image.new("RGBA", turned.size, (128,) * 4), turned).convert(img.mode)

    def enhance(kind: type) -> Callable[[Image.Image, float], Image.Image]:
        return lambda img, m: kind(img).enhance(1 + m * _sign())

    return {
        "shearX": lambda img, m: affine(img, (1, m * _sign(), 0, 0, 1, 0), Image.BICUBIC),
        "shearY": lambda img, m: affine(img, (1, 0, 0, m * _sign(), 1, 0), Image.BICUBIC),
        "translateX": lambda img, m: affine(img, (1, 0, m * img.size[0] * _sign(), 0, 1, 0)),
        "translateY": lambda img, m: affine(img, (1, 0, 0, 0, 1, m * img.size[1] * _sign())),
        "rotate": rotate,
        "color": enhance(ImageEnhance.Color),
        "contrast": enhance(ImageEnhance.Contrast),
        "sharpness": enhance(ImageEnhance.Sharpness),
        "brightness": enhance(ImageEnhance.Brightness),
        "posterize": lambda img, m: ImageOps.posterize(img, int(m)),
        "solarize": lambda img, m: ImageOps.solarize(img, m),
        "autocontrast": lambda img, m: ImageOps.autocontrast(img),
        "equalize": lambda img, m: ImageOps.equalize(img),
        "invert": lambda img, m: ImageOps.invert(img),
    }


class CIFAR10Policy:
    """Draw one of the 25 CIFAR-10 sub-policies per image and apply its two operations, each with its
    probability (PIL image in, PIL image out; put it before ``ToTensor``).

    Args:
        fill: colour of the area that shears and translations uncover (grey 128 as in the PIL
            implementation; rotation composites onto grey 128 whatever ``fill`` is, as there).
    """

    def __init__(self, fill: Sequence[int] = (128, 128, 128)) -> None:
        self.fill = tuple(int(c) for c in fill)
        if len(self.fill) != 3:
            raise ValueError(f"CIFAR10Policy: fill needs 3 values (RGB), got {fill}")
        self.ops = _operations(self.fill)  # type: ignore[arg-type]

    def apply(self, img: Image.Image, op: str, index: int) -> Image.Image:
        """One operation at one magnitude index (0..9)."""
        return self.ops[op](img, MAGNITUDES[op][index])

    def __call__(self, img: Image.Image) -> Image.Image:
        first, second = CIFAR10_SUBPOLICIES[random.randint(0, len(CIFAR10_SUBPOLICIES) - 1)]
        for prob, op, index in (first, second):
            if random.random() < prob:
                img = self.apply(img, op, index)
        return img

    def __repr__(self) -> str:
        return f"CIFAR10Policy(fill={self.fill})"
