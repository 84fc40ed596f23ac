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
from collections.abc import Iterator, Mapping
from typing import Any, Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

__all__ = ["DatasetError", "EpochSeededSampler", "ResumableDataLoader", "SpikingDataModule"]


class EpochSeededSampler(DistributedSampler):
    """A random permutation that depends only on ``(seed, epoch)``, sharded over the DDP processes, and
    resumable in the middle of an epoch.

    The permutation of epoch ``e`` is ``randperm(N)`` from a generator seeded with
    ``seed * 1_000_003 + e``, the same for every number of processes. With ``num_replicas = W`` it is padded
    to a multiple of ``W`` by repeating its first ``ceil(N / W) * W - N`` entries (as torch's
    ``DistributedSampler`` pads) and process ``rank`` takes every ``W``-th entry from position ``rank``. So one
    step of W processes with batch ``b`` each draws exactly the samples of one step of a single process with
    batch ``W * b``, and the epoch covers every sample once (plus the padding).

    Lightning calls :meth:`set_epoch` before every training epoch. :meth:`state_dict` records the epoch and
    ``position``, the number of indices of this process's shard handed out in that epoch;
    :meth:`load_state_dict` makes the next pass over the same epoch start at that position, so a run resumed
    from a mid-epoch checkpoint sees exactly the batches an uninterrupted run would have seen. (Under
    ``DataLoader`` workers the indices are fetched ahead of the training step, so
    :class:`ResumableDataLoader` replaces ``position`` by the count of batches it has delivered.) The state of
    ``W`` processes loads into ``W'`` processes when the samples consumed, ``position * W``, are a multiple of
    ``W'``: the new shards then continue the same permutation from the same place.
    """

    def __init__(self, data_source: Dataset, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(data_source, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed))
        self.data_source = data_source
        self.position = 0
        self._resume_at = 0

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) != self.epoch:
            self._resume_at = 0  # a stored position belongs to the epoch it was saved in
        self.epoch = int(epoch)

    def permutation(self) -> list[int]:
        """This process's indices of the current epoch, in order (the whole shard, ignoring any resume)."""
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.dataset), generator=g).tolist()  # type: ignore[arg-type]
        if self.num_replicas == 1:
            return order
        order += order[: self.total_size - len(order)]
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        start, self._resume_at = self._resume_at, 0
        self.position = start
        for index in self.permutation()[start:]:
            self.position += 1
            yield index

    def state_dict(self) -> dict[str, int]:
        """``seed``, ``epoch``, ``num_replicas`` and ``position`` (indices of this shard handed out)."""
        return {"seed": self.seed, "epoch": self.epoch, "num_replicas": self.num_replicas, "position": self.position}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue epoch ``state["epoch"]`` after the samples recorded in ``state``.

        Raises ``ValueError`` when the state cannot be continued exactly: another seed, or a mid-epoch
        position of ``W`` processes that does not split evenly over this run's processes.
        """
        missing = {"seed", "epoch", "num_replicas", "position"} - set(state)
        if missing:
            raise ValueError(f"EpochSeededSampler state {dict(state)} lacks {sorted(missing)}")
        if int(state["seed"]) != self.seed:
            raise ValueError(
                f"the checkpoint's training order was drawn with data seed {state['seed']}, this run's DataModule has "
                f"seed {self.seed}: resume with data.init_args.seed {state['seed']} to continue the same order"
            )
        old_w, position = int(state["num_replicas"]), int(state["position"])
        old_len = -(-len(self.dataset) // old_w)  # type: ignore[arg-type]
        if not 0 <= position <= old_len:
            raise ValueError(f"sampler position {position} is outside epoch of {old_len} samples per process")
        consumed = position * old_w
        if position == old_len:  # the epoch was finished: nothing to skip
            start = self.num_samples
        elif consumed % self.num_replicas:
            raise ValueError(
                f"the checkpoint was saved in the middle of epoch {state['epoch']} by {old_w} process(es) after "
                f"{consumed} samples, which do not split over {self.num_replicas} process(es); resume with "
                f"{old_w} process(es), or from an end-of-epoch checkpoint"
            )
        else:
            start = consumed // self.num_replicas
        self.epoch = int(state["epoch"])
        self._resume_at = self.position = start


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` whose position in the epoch is saved in Lightning checkpoints.

    Lightning's fit loop stores ``state_dict()`` of every training loader that has ``state_dict`` and
    ``load_state_dict`` (``lightning.fabric.utilities.types._Stateful``) under
    ``loops.fit_loop.state_dict.combined_loader`` and hands it back through :meth:`load_state_dict` before
    it iterates again after a resume. The state is the sampler's (:class:`EpochSeededSampler`) with
    ``position`` set from the batches this loader has delivered in the current epoch: worker processes
    prefetch indices, so only the delivered batches count as consumed.
    """

    _delivered = 0
    _start = 0

    def __iter__(self) -> Iterator:  # type: ignore[override]
        # read before the sampler's iterator starts (it consumes the resume position)
        self._start = int(getattr(self.sampler, "_resume_at", 0))
        self._delivered = 0
        return self._count(super().__iter__())

    def _count(self, iterator: Iterator) -> Iterator:
        for batch in iterator:
            self._delivered += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        if not hasattr(self.sampler, "state_dict"):
            return {}
        state = dict(self.sampler.state_dict())  # type: ignore[union-attr]
        if "position" in state:
            state["position"] = min(self._start + self._delivered * int(self.batch_size or 1), len(self.sampler))  # type: ignore[arg-type]
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state and hasattr(self.sampler, "load_state_dict"):
            self.sampler.load_state_dict(state)  # type: ignore[union-attr]


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
        return (ResumableDataLoader if shuffle else DataLoader)(
            dataset,
            batch_size=self.batch_size,
            sampler=self._train_sampler(dataset) if shuffle else None,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=pin,
            persistent_workers=self.num_workers > 0,
        )

    def _train_sampler(self, dataset: Dataset) -> EpochSeededSampler:
        """The training sampler, sharded over the processes of a distributed trainer.

        Lightning leaves a ``DistributedSampler`` in place, so under DDP every process draws its shard of the
        one ``(seed, epoch)`` permutation a single process would draw (unless ``use_distributed_sampler`` is
        off, which asks for the loaders to be left alone).
        """
        trainer = self.trainer
        connector = getattr(trainer, "_accelerator_connector", None)
        if trainer is None or trainer.world_size == 1 or not getattr(connector, "use_distributed_sampler", True):
            return EpochSeededSampler(dataset, self.seed)
        return EpochSeededSampler(dataset, self.seed, num_replicas=trainer.world_size, rank=trainer.global_rank)

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
