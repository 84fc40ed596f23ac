"""Base class shared by every lightning-snn DataModule.

A :class:`SpikingDataModule` is an ordinary :class:`lightning.LightningDataModule` that additionally

* exposes ``num_classes`` and ``input_shape`` right after ``__init__`` (before ``setup``), so that
  ``LightningCLI`` can link them into the model at instantiation
  (``parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")``);
* builds its datasets in ``setup`` and validates the files it reads there, raising
  :class:`FileNotFoundError` for a missing root or file and :class:`DatasetError` for a corrupt one,
  both naming the path at fault;
* implements the common hold-out logic: ``val_split == 0`` validates on the test split (as the papers
  report), ``val_split > 0`` holds out that fraction of the training split with a fixed ``seed``
  (the held-out part uses the evaluation transform, not the training augmentation).

Subclasses implement :meth:`build_train_dataset` and :meth:`build_test_dataset`, and optionally
:meth:`eval_view` and :meth:`prepare_data`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset

__all__ = ["DatasetError", "EpochSeededSampler", "SpikingDataModule"]


class EpochSeededSampler(RandomSampler):
    """A random permutation that depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every training epoch, so a run resumed from a checkpoint
    sees exactly the batches an uninterrupted run would have seen. Under DDP Lightning replaces it by a
    ``DistributedSampler``, which is epoch-seeded in the same way.
    """

    def __init__(self, data_source: Dataset, seed: int = 0) -> None:
        super().__init__(data_source)  # type: ignore[arg-type]
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=g).tolist()  # type: ignore[arg-type]


class DatasetError(RuntimeError):
    """A dataset file exists but cannot be read (truncated, corrupt, wrong shape).

    The message always names the file at fault and says how to obtain a good copy.
    """


class SpikingDataModule(L.LightningDataModule):
    """Common base of the lightning-snn DataModules.

    Args:
        batch_size: samples per batch (same for train / val / test).
        num_workers: DataLoader worker processes; ``persistent_workers`` is used only when > 0.
        val_split: fraction of the training split held out for validation. ``0.0`` validates on the
            test split, as the papers do.
        seed: seed of the train/val hold-out permutation (independent of the global seed).
        pin_memory: pin host memory in the loaders; ``None`` pins when CUDA is available.

    Subclasses must set ``self.num_classes`` and ``self.input_shape`` in ``__init__``.
    """

    #: number of target classes; set by every subclass in ``__init__``.
    num_classes: int
    #: shape of one input sample, ``(C, H, W)``; set by every subclass in ``__init__``.
    input_shape: tuple[int, int, int]

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        val_split: float = 0.0,
        seed: int = 0,
        pin_memory: Optional[bool] = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if not 0.0 <= val_split < 1.0:
            raise ValueError(f"val_split must be in [0, 1), got {val_split}")
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.val_split = float(val_split)
        self.seed = int(seed)
        self.pin_memory = pin_memory
        self.train_set: Optional[Dataset] = None
        self.val_set: Optional[Dataset] = None
        self.test_set: Optional[Dataset] = None

    # ------------------------------------------------------------------ hooks for subclasses
    def build_train_dataset(self) -> Dataset:
        """Return the full training split with the training transform (validating its files)."""
        raise NotImplementedError

    def build_test_dataset(self) -> Dataset:
        """Return the test split with the evaluation transform (validating its files)."""
        raise NotImplementedError

    def eval_view(self, train_dataset: Dataset) -> Dataset:
        """Return ``train_dataset`` with the evaluation transform instead of the training one.

        Used for the held-out validation part when ``val_split > 0``. The default makes a shallow
        copy of a torchvision dataset (sharing its data in memory) and swaps its ``transform``.
        """
        test_transform = getattr(self, "test_transform", None)
        if test_transform is None or not hasattr(train_dataset, "transform"):
            return train_dataset
        view = copy.copy(train_dataset)
        view.transform = test_transform  # type: ignore[attr-defined]
        if hasattr(view, "transforms") and hasattr(view.transforms, "transform"):
            view.transforms = copy.copy(view.transforms)
            view.transforms.transform = test_transform
        return view

    # ------------------------------------------------------------------ Lightning API
    def setup(self, stage: Optional[str] = None) -> None:
        """Build the datasets needed by ``stage`` (``fit``, ``validate``, ``test``, ``predict``)."""
        need_fit = stage in (None, "fit")
        need_val = stage in (None, "fit", "validate")
        need_test = stage in (None, "test", "predict") or (need_val and self.val_split == 0.0)
        need_train = need_fit or (need_val and self.val_split > 0.0)

        if need_train and self.train_set is None:
            full = self.build_train_dataset()
            if self.val_split > 0.0:
                self.train_set, self.val_set = self.split_train(full)
            else:
                self.train_set = full
        if need_test and self.test_set is None:
            self.test_set = self.build_test_dataset()
        if need_val and self.val_set is None and self.val_split == 0.0:
            self.val_set = self.test_set

    def split_train(self, full: Dataset) -> tuple[Dataset, Dataset]:
        """Split ``full`` into (train, val) with a permutation seeded by ``self.seed``."""
        n = len(full)  # type: ignore[arg-type]
        n_val = int(round(n * self.val_split))
        if n_val < 1 or n_val >= n:
            raise ValueError(
                f"val_split={self.val_split} of a training split of {n} samples leaves "
                f"{n_val} for validation and {n - n_val} for training; both must be >= 1"
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        return Subset(full, perm[n_val:]), Subset(self.eval_view(full), perm[:n_val])

    def _loader(self, dataset: Optional[Dataset], stage: str, shuffle: bool) -> DataLoader:
        if dataset is None:
            self.setup(stage)
            dataset = {"fit": self.train_set, "validate": self.val_set, "test": self.test_set}[stage]
        assert dataset is not None
        pin = torch.cuda.is_available() if self.pin_memory is None else self.pin_memory
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochSeededSampler(dataset, self.seed) if shuffle else None,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=pin,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, "fit", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, "validate", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test", shuffle=False)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_classes={self.num_classes}, "
            f"input_shape={self.input_shape}, batch_size={self.batch_size})"
        )
