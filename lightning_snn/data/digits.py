"""scikit-learn's bundled 8x8 handwritten digits: a real dataset that needs no download.

``sklearn.datasets.load_digits`` ships 1797 greyscale 8x8 images (pixel values 0..16, 10 classes)
inside scikit-learn itself, which makes it the dataset of the CPU quick-start and of the tests.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from .base import SpikingDataModule

__all__ = ["DigitsDataModule"]


class DigitsDataModule(SpikingDataModule):
    """scikit-learn digits (1797 samples, 1x8x8, 10 classes), kept in memory as tensors.

    Pixels are scaled from 0..16 to [0, 1] and then normalised with the mean and standard deviation
    of the training split (one scalar each, stored as ``self.mean`` / ``self.std`` after ``setup``).
    The split is stratified and deterministic for a given ``seed``: ``test_split`` of all samples
    (20% -> 360) is the test set, ``val_split`` of the rest (10% -> 144) the validation set and the
    remaining 1293 the training set. ``val_split: 0.0`` validates on the test set instead. No
    augmentation. Indices of each split into ``load_digits()`` are in ``self.split_indices``.

    Args:
        batch_size: samples per batch.
        num_workers: DataLoader workers (0: the data is tiny and already in memory).
        val_split: fraction of the non-test samples held out for validation.
        test_split: fraction of all samples used as the test set.
        seed: seed of the stratified split.
        download: accepted for a uniform interface; the data ships with scikit-learn, so nothing
            is ever downloaded.
        pin_memory: pin host memory; ``None`` pins when CUDA is available.
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        val_split: float = 0.1,
        test_split: float = 0.2,
        seed: int = 0,
        download: bool = False,
        pin_memory: Optional[bool] = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, val_split=val_split, seed=seed, pin_memory=pin_memory
        )
        if not 0.0 < test_split < 1.0:
            raise ValueError(f"test_split must be in (0, 1), got {test_split}")
        self.test_split = float(test_split)
        self.download = bool(download)
        self.num_classes = 10
        self.input_shape = (1, 8, 8)
        self.mean: Optional[float] = None
        self.std: Optional[float] = None
        self.split_indices: dict[str, np.ndarray] = {}
        self.save_hyperparameters()

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = digits.images.astype(np.float32) / 16.0  # [N, 8, 8] in [0, 1]
        labels = digits.target.astype(np.int64)
        idx = np.arange(len(labels))

        rest_idx, test_idx = train_test_split(
            idx, test_size=self.test_split, stratify=labels, random_state=self.seed
        )
        if self.val_split > 0.0:
            train_idx, val_idx = train_test_split(
                rest_idx, test_size=self.val_split, stratify=labels[rest_idx], random_state=self.seed
            )
        else:
            train_idx, val_idx = rest_idx, test_idx
        self.split_indices = {"train": np.sort(train_idx), "val": np.sort(val_idx), "test": np.sort(test_idx)}

        train_pixels = images[self.split_indices["train"]]
        self.mean = float(train_pixels.mean())
        self.std = float(train_pixels.std())

        def make(split: str) -> Dataset:
            sel = self.split_indices[split]
            x = torch.from_numpy((images[sel] - self.mean) / self.std).unsqueeze(1)  # [n, 1, 8, 8]
            y = torch.from_numpy(labels[sel])
            return TensorDataset(x, y)

        self.train_set = make("train")
        self.test_set = make("test")
        self.val_set = make("val") if self.val_split > 0.0 else self.test_set
