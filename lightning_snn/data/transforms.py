"""Image transforms used by the published recipes, and builders of the torchvision pipelines.

Where each piece comes from:

* **Normalisation only / flip + normalisation** (MNIST, Fashion-MNIST): the STBP reference code
  (Wu et al., "Spatio-temporal backpropagation for training high-performance spiking neural
  networks", Front. Neurosci. 2018) trains MNIST with ``RandomHorizontalFlip`` + ``Normalize``.
* **Random crop (padding 4) + horizontal flip + normalisation** (CIFAR-10/100): the STBP reference
  code's CIFAR recipe, the standard ResNet CIFAR augmentation (He et al., CVPR 2016); the IDE
  reference scripts (pkuxmq/IDE-FSNN, ``cifar_*.py``) use the same pipeline.
* **Cutout** (DeVries & Taylor, "Improved regularization of convolutional neural networks with
  cutout", arXiv:1708.04552): one square hole of side 16 (CIFAR-10) / 8 (CIFAR-100), applied after
  normalisation as in the authors' code (the hole takes the mean colour), or before it
  (``cutout_order: before_normalize``, the hole is black: the order of the Rate-BP repository's
  ``util/data.py``); opt-in (``cutout: true``) for recipes that use it.
* **AutoAugment** (Cubuk et al., "AutoAugment: learning augmentation policies from data",
  CVPR 2019), torchvision's CIFAR10 policy, applied to the PIL image after crop and flip; opt-in
  (``autoaugment: true``).
* **ImageNet**: the standard torchvision / ResNet recipe, ``RandomResizedCrop`` + flip for training,
  ``Resize(256)`` + ``CenterCrop(224)`` for evaluation (scaled with ``image_size``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torchvision import transforms as T

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CUTOUT_ORDERS",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "Cutout",
    "build_test_transform",
    "build_train_transform",
    "timm_train_transform",
    "imagenet_train_transform",
    "imagenet_val_transform",
]

MNIST_MEAN: tuple[float, ...] = (0.1307,)
MNIST_STD: tuple[float, ...] = (0.3081,)
FASHION_MNIST_MEAN: tuple[float, ...] = (0.2860,)
FASHION_MNIST_STD: tuple[float, ...] = (0.3530,)
CIFAR10_MEAN: tuple[float, ...] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, ...] = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN: tuple[float, ...] = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: tuple[float, ...] = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN: tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, ...] = (0.229, 0.224, 0.225)

#: Where Cutout sits in a training pipeline: after ``Normalize`` (DeVries & Taylor's code; the hole is 0 in
#: normalised units, i.e. the dataset's mean colour) or between ``ToTensor`` and ``Normalize`` (the Rate-BP
#: repository; the hole is 0 in pixel space, black, i.e. ``-mean/std`` after normalisation).
CUTOUT_ORDERS = ("after_normalize", "before_normalize")


class Cutout:
    """Zero ``n_holes`` square patches of side ``length`` of a ``[C, H, W]`` tensor.

    DeVries & Taylor, "Improved regularization of convolutional neural networks with cutout"
    (arXiv:1708.04552). As in the authors' code, each hole's centre is drawn uniformly over the
    image and the square is clipped at the borders, so a hole near an edge zeroes less than
    ``length * length`` pixels; a hole fully inside zeroes exactly ``length * length`` pixels in
    every channel. (For odd ``length`` the square spans ``centre - length // 2`` to
    ``centre - length // 2 + length``, so its side is exactly ``length``.) Apply it to a tensor,
    i.e. after ``ToTensor``/``Normalize``.

    Args:
        n_holes: number of patches to cut out of each image.
        length: side of each square patch, in pixels.
        generator: optional :class:`torch.Generator`; by default the global torch RNG is used, which
            Lightning seeds per DataLoader worker.
    """

    def __init__(self, n_holes: int = 1, length: int = 16, generator: Optional[torch.Generator] = None) -> None:
        if n_holes < 0:
            raise ValueError(f"n_holes must be >= 0, got {n_holes}")
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.n_holes = n_holes
        self.length = length
        self.generator = generator

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if not isinstance(img, torch.Tensor) or img.dim() < 2:
            raise TypeError("Cutout expects a tensor [..., H, W]; put it after ToTensor()")
        h, w = img.shape[-2], img.shape[-1]
        mask = torch.ones((h, w), dtype=img.dtype, device=img.device)
        for _ in range(self.n_holes):
            cy = int(torch.randint(h, (1,), generator=self.generator))
            cx = int(torch.randint(w, (1,), generator=self.generator))
            y1, x1 = cy - self.length // 2, cx - self.length // 2
            y2, x2 = y1 + self.length, x1 + self.length
            mask[max(y1, 0) : min(y2, h), max(x1, 0) : min(x2, w)] = 0
        return img * mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_holes={self.n_holes}, length={self.length})"


def build_train_transform(
    mean: Sequence[float],
    std: Sequence[float],
    *,
    crop_size: Optional[int] = None,
    padding: int = 4,
    flip: bool = True,
    autoaugment: bool | str = False,
    cutout_length: int = 0,
    cutout_holes: int = 1,
    cutout_order: str = "after_normalize",
) -> T.Compose:
    """Training pipeline for small images (PIL in, normalised float tensor out).

    Order: ``RandomCrop(crop_size, padding)`` (if ``crop_size``) -> ``RandomHorizontalFlip``
    (if ``flip``) -> AutoAugment's CIFAR-10 policy (if ``autoaugment``: ``true`` / ``"torchvision"`` for
    torchvision's ``AutoAugment``, ``"cifar10_policy"`` for the PIL implementation
    :class:`~lightning_snn.data.autoaugment.CIFAR10Policy`) -> ``ToTensor`` -> ``Normalize``
    -> ``Cutout`` (if ``cutout_length > 0``); with ``cutout_order="before_normalize"`` Cutout comes
    between ``ToTensor`` and ``Normalize`` (:data:`CUTOUT_ORDERS`).

    * MNIST (STBP repo): ``build_train_transform(MNIST_MEAN, MNIST_STD)`` -- flip + normalise.
    * CIFAR (STBP repo): ``build_train_transform(CIFAR10_MEAN, CIFAR10_STD, crop_size=32)`` --
      random crop with padding 4 + flip + normalise, optionally AutoAugment and Cutout.
    """
    if cutout_order not in CUTOUT_ORDERS:
        raise ValueError(f"cutout_order must be one of {CUTOUT_ORDERS}, got {cutout_order!r}")
    ops: list = []
    if crop_size is not None:
        ops.append(T.RandomCrop(crop_size, padding=padding))
    if flip:
        ops.append(T.RandomHorizontalFlip())
    if autoaugment == "cifar10_policy":
        from .autoaugment import CIFAR10Policy

        ops.append(CIFAR10Policy())
    elif autoaugment in (True, "torchvision"):
        ops.append(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10))
    elif autoaugment not in (False, None):
        raise ValueError(f"autoaugment: expected true/false, 'torchvision' or 'cifar10_policy', got {autoaugment!r}")
    ops += [T.ToTensor(), T.Normalize(tuple(mean), tuple(std))]
    if cutout_length > 0 and cutout_holes > 0:
        at = len(ops) if cutout_order == "after_normalize" else len(ops) - 1
        ops.insert(at, Cutout(n_holes=cutout_holes, length=cutout_length))
    return T.Compose(ops)


def timm_train_transform(norm_mean: Sequence[float], norm_std: Sequence[float], image_size: int, **kwargs: object) -> T.Compose:
    """timm's training pipeline, ``timm.data.create_transform(is_training=True, ...)``, as the recipes that
    train with timm's ``train.py`` build it (RevSFormer: ``scale: [1, 1], ratio: [1, 1], hflip: 0.5,
    auto_augment: rand-m9-n1-mstd0.4-inc1, interpolation: bicubic, re_prob: 0.25, re_mode: const``).

    Order (timm): ``RandomResizedCropAndInterpolation`` -> ``RandomHorizontalFlip`` -> ``RandAugment`` /
    ``AutoAugment`` (``auto_augment``) -> ``ToTensor`` -> ``Normalize`` -> ``RandomErasing`` (``re_prob``).
    ``norm_mean``/``norm_std`` (``mean``/``std``) and ``input_size`` come from the DataModule; ``kwargs`` are
    ``create_transform``'s other arguments, plus ``rand_augment_ops``: the names of the RandAugment operations
    to keep (Spikformer's ``aa_snn.py`` keeps ``[Equalize, Rotate, ShearX, TranslateXRel, TranslateYRel]`` of
    timm's list; the choice among the kept ones stays uniform, as there).
    """
    from timm.data import create_transform

    for key in ("is_training", "mean", "std", "input_size"):
        if key in kwargs:
            raise ValueError(f"timm_transform: {key!r} is set by the DataModule; remove it from timm_transform")
    keep = kwargs.pop("rand_augment_ops", None)
    try:
        transform = create_transform(input_size=image_size, is_training=True, mean=tuple(norm_mean), std=tuple(norm_std), **kwargs)
    except TypeError as err:
        raise ValueError(f"timm_transform: invalid arguments {dict(kwargs)}: {err}") from None
    transform = transform if isinstance(transform, T.Compose) else T.Compose([transform])
    if keep is not None:
        _keep_rand_augment_ops(transform, [str(name) for name in keep])  # type: ignore[union-attr]
    return transform


def _keep_rand_augment_ops(transform: T.Compose, keep: list[str]) -> None:
    """Restrict the RandAugment of a timm pipeline to the operations named in ``keep`` (in timm's order)."""
    from timm.data.auto_augment import RandAugment

    augment = [t for t in transform.transforms if isinstance(t, RandAugment)]
    if not augment:
        raise ValueError("timm_transform.rand_augment_ops: the pipeline has no RandAugment (set auto_augment: rand-...)")
    ra = augment[0]
    if ra.choice_weights is not None:
        raise ValueError("timm_transform.rand_augment_ops: not supported with weighted op choice (the 'w' option)")
    names = [op.name for op in ra.ops]
    unknown = sorted(set(keep) - set(names))
    if unknown:
        raise ValueError(f"timm_transform.rand_augment_ops: {unknown} are not among this RandAugment's operations {names}")
    ra.ops = [op for op in ra.ops if op.name in keep]


def build_test_transform(mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """Evaluation pipeline for small images: ``ToTensor`` -> ``Normalize``."""
    return T.Compose([T.ToTensor(), T.Normalize(tuple(mean), tuple(std))])


def imagenet_train_transform(
    image_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> T.Compose:
    """Standard ImageNet training pipeline: ``RandomResizedCrop`` + flip + normalise."""
    return T.Compose(
        [
            T.RandomResizedCrop(image_size),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(tuple(mean), tuple(std)),
        ]
    )


def imagenet_val_transform(
    image_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> T.Compose:
    """Standard ImageNet evaluation pipeline: ``Resize(256)`` + ``CenterCrop(224)`` + normalise.

    The resize side scales with ``image_size`` (``round(image_size * 256 / 224)``), so the
    crop keeps the usual 0.875 ratio at other resolutions.
    """
    resize = int(round(image_size * 256 / 224))
    return T.Compose(
        [
            T.Resize(resize),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(tuple(mean), tuple(std)),
        ]
    )
