"""LightningDataModules for static-image datasets, and their transforms.

Every DataModule subclasses :class:`SpikingDataModule`, downloads nothing unless ``download: true``,
validates its files in ``setup`` and exposes ``num_classes`` / ``input_shape`` right after
construction so that ``LightningCLI`` can link them into the model.
"""

from .base import DatasetError, SpikingDataModule
from .digits import DigitsDataModule
from .neuromorphic import CIFAR10DVSDataModule, DVSGestureDataModule, NMNISTDataModule
from .shd import SHDDataModule
from .transforms import Cutout
from .vision import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    FashionMNISTDataModule,
    ImageNetDataModule,
    MNISTDataModule,
)

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "CIFAR10DVSDataModule",
    "DVSGestureDataModule",
    "Cutout",
    "DatasetError",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageNetDataModule",
    "MNISTDataModule",
    "NMNISTDataModule",
    "SHDDataModule",
    "SpikingDataModule",
]
