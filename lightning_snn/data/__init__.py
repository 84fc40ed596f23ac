"""LightningDataModules for static-image and event-camera datasets, and their transforms.

Event datasets: one module per dataset (reader, validation, DataModule) on the shared core
:mod:`.event_base`; adding one is adding its module and its import here.

Every DataModule subclasses :class:`SpikingDataModule`, downloads nothing unless ``download: true``,
validates its files in ``setup`` and exposes ``num_classes`` / ``input_shape`` right after
construction so that ``LightningCLI`` can link them into the model.
"""

from .asl_dvs import ASLDVSDataModule
from .base import DatasetError, SpikingDataModule
from .cifar10dvs import CIFAR10DVSDataModule
from .digits import DigitsDataModule
from .dvs_gesture import DVSGestureDataModule
from .ncaltech101 import NCaltech101DataModule
from .nmnist import NMNISTDataModule
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
    "ASLDVSDataModule",
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
    "NCaltech101DataModule",
    "NMNISTDataModule",
    "SHDDataModule",
    "SpikingDataModule",
]
