"""The shared core of the event-camera DataModules: binning, frame dataset, cache, base DataModule.

One module per dataset (:mod:`.nmnist`, :mod:`.cifar10dvs`, :mod:`.dvs_gesture`, :mod:`.ncaltech101`,
:mod:`.asl_dvs`) holds that dataset's file reader, validation and DataModule, a subclass of
:class:`EventDataModule`. Each DataModule reads the dataset's **original files** (with tonic's readers,
``tonic.io``, where tonic has a correct one), bins the events of a sample into ``T`` frames with
``tonic.transforms.ToFrame`` (one channel per polarity), optionally resizes the frames, caches the result
on disk and feeds batches ``x: float32 [B, T, C, H, W]``, ``y: int64 [B]``. ``num_classes``,
``input_shape`` (C, H, W of one frame) and ``T`` are set in ``__init__`` so that the CLI can link them into
the model (the model's ``T`` must equal the data's).

Binning. ``split_by="time"`` is ``ToFrame(n_time_bins=T)``: T windows of equal duration
``(t_last - t_first) // T``; ``split_by="number"`` is ``ToFrame(n_event_bins=T)``: T windows of
``N // T`` events each, which is SpikingJelly's ``split_by='number'`` used by the TET, Rate-BP and
RevSNN frames. Frame values are per-pixel, per-polarity event **counts** (not binarised). Both tonic
modes drop the few events past the last whole window (fewer than T events, or the last few
microseconds), where SpikingJelly adds them to the last frame. ``polarity=False`` merges both
polarities into one channel (``tonic.transforms.MergePolarities``); ``denoise_filter_time`` runs
``tonic.transforms.Denoise`` first. ``size`` resizes every frame with bilinear interpolation
(antialiased, as PIL's resize in the Rate-BP pipeline), which keeps the mean, not the sum, of the counts.

Cache. With ``cache: true`` (default) the frames of every sample are binned once (with a progress bar,
in ``prepare_data`` / ``setup``) and stored under ``cache_dir`` (default ``root/.lightning_snn_cache``)
in a directory keyed by every frame-changing parameter (the dataset's display name, the binning and the
dataset's :meth:`EventDataModule.extra_cache_params`; no module or class path, so moving code between
modules keeps the cache); epochs then read only the cache. Entries are verified on every read and a stale
or corrupt one is rebuilt from its event file with a warning, see :mod:`lightning_snn.data.event_cache`.
Augmentations run after the cache, on the training split only.

Errors. A missing root, dataset folder, class folder, listed recording or label file raises
``FileNotFoundError`` naming the path and saying how to get the data; a truncated or unreadable event
file, an unreadable label file and events with coordinates outside the sensor raise
:class:`~lightning_snn.data.base.DatasetError` naming the file. What is present but not read (a folder
that is not a class, stray files) is named in a warning. A cache that cannot be written mid-run falls
back to binning on the fly with one warning (see :class:`EventFrameDataset`).
"""

from __future__ import annotations

import copy
import os
import re
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, Optional, Union

import numpy as np
import tonic
import tonic.io
import tonic.transforms
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..fileio import WriteError
from .base import DatasetError, SpikingDataModule
from .event_cache import CacheEntryInvalid, FrameCache
from .event_transforms import build_event_train_transform

__all__ = [
    "EVENT_DTYPE",
    "ClassFolderEventDataModule",
    "EventBinning",
    "EventDataModule",
    "EventFrameDataset",
    "EventSample",
    "aedat_header",
    "check_split_args",
    "class_folder_samples",
    "class_folders",
    "collate_event_frames",
    "file_size",
    "split_class_files",
    "stable_hash",
    "warn_skipped",
]

#: structured dtype of the events every reader returns (tonic's ``events_struct``)
EVENT_DTYPE = tonic.io.events_struct

SplitBy = Literal["time", "number"]
Size = Optional[Union[int, tuple[int, int]]]



# ====================================================================== files
def file_size(path: str, dataset: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError as err:
        raise FileNotFoundError(f"{dataset} event file {path} cannot be opened ({err.strerror or err})") from err


def aedat_header(path: str, dataset: str) -> tuple[float, int]:
    """``(version, offset of the first data byte)`` via ``tonic.io.read_aedat_header_from_file``."""
    file_size(path, dataset)
    try:
        version, start, _ = tonic.io.read_aedat_header_from_file(path)
    except Exception as err:  # no '#' header -> UnboundLocalError, garbage version -> ValueError, ...
        raise DatasetError(
            f"{dataset} file {path} is not an AEDAT recording: no readable '#!AER-DAT<version>' header "
            f"({type(err).__name__}: {err})"
        ) from err
    return float(version), int(start)


# ====================================================================== binning
def as_size(size: Size) -> Optional[tuple[int, int]]:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        pair = (int(size), int(size))
    else:
        pair = tuple(int(s) for s in size)  # type: ignore[assignment]
        if len(pair) != 2:
            raise ValueError(f"size must be an int or (height, width), got {size!r}")
    if min(pair) < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class EventBinning:
    """Events -> ``[T, C, H, W]`` frames: checks, optional denoising, ``tonic.transforms.ToFrame``, resize.

    Args:
        sensor_size: ``(width, height)`` of the sensor.
        T: number of frames.
        split_by: ``"time"`` (``ToFrame(n_time_bins=T)``) or ``"number"`` (``ToFrame(n_event_bins=T)``).
        size: ``(height, width)`` of the output frames; None keeps the sensor size.
        polarity: one channel per polarity (C=2); False merges them (C=1).
        denoise_filter_time: if set, ``tonic.transforms.Denoise(filter_time)`` (same unit as t, us) first.
            tonic's filter is a Python loop over events (about a second per 100k events): with the
            cache it runs once per recording, without it on every access.

    Frames are int16 event counts without resize, float32 after it (what the cache stores).
    """

    sensor_size: tuple[int, int]
    T: int
    split_by: SplitBy = "time"
    size: Optional[tuple[int, int]] = None
    polarity: bool = True
    denoise_filter_time: Optional[float] = None

    def __post_init__(self) -> None:
        if self.T < 1:
            raise ValueError(f"T (number of frames) must be >= 1, got {self.T}")
        if self.split_by not in ("time", "number"):
            raise ValueError(f"split_by must be 'time' or 'number', got {self.split_by!r}")
        if self.denoise_filter_time is not None and self.denoise_filter_time <= 0:
            raise ValueError(f"denoise_filter_time must be > 0 (or null), got {self.denoise_filter_time}")

    @property
    def channels(self) -> int:
        return 2 if self.polarity else 1

    @property
    def out_size(self) -> tuple[int, int]:
        """``(height, width)`` of the output frames."""
        return self.size if self.size is not None else (self.sensor_size[1], self.sensor_size[0])

    @property
    def resizes(self) -> bool:
        return self.out_size != (self.sensor_size[1], self.sensor_size[0])

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        return (self.T, self.channels, *self.out_size)

    @property
    def stored_dtype(self) -> torch.dtype:
        return torch.float32 if self.resizes else torch.int16

    def params(self) -> dict[str, Any]:
        """Every binning parameter (for the cache key)."""
        return {
            "sensor_size": list(self.sensor_size),
            "T": self.T,
            "split_by": self.split_by,
            "size": list(self.out_size),
            "resize": "bilinear-antialias" if self.resizes else "none",
            "polarity": self.polarity,
            "denoise_filter_time": self.denoise_filter_time,
            "binning": "tonic.transforms.ToFrame",
            "tonic": tonic.__version__,
        }

    def check(self, events: np.ndarray, source: str = "<events>", dataset: str = "event") -> None:
        """Raise :class:`DatasetError` naming ``source`` if events fall outside the sensor."""
        if len(events) == 0:
            return
        width, height = self.sensor_size
        x, y = events["x"], events["y"]
        bad = (x < 0) | (x >= width) | (y < 0) | (y >= height)
        if bad.any():
            raise DatasetError(
                f"{dataset} file {source} has {int(bad.sum())} of {len(events)} events outside the "
                f"{width}x{height} sensor (x in [{int(x.min())}, {int(x.max())}], y in [{int(y.min())}, "
                f"{int(y.max())}]); the file is corrupt or not from this dataset"
            )

    def __call__(self, events: np.ndarray, source: str = "<events>", dataset: str = "event") -> torch.Tensor:
        self.check(events, source, dataset)
        if len(events) > 1 and bool((np.diff(events["t"]) < 0).any()):
            events = events[np.argsort(events["t"], kind="stable")]
        if self.denoise_filter_time is not None and len(events):
            events = tonic.transforms.Denoise(filter_time=self.denoise_filter_time)(events)
        if not self.polarity and len(events):
            events = tonic.transforms.MergePolarities()(events)
        width, height = self.sensor_size
        if len(events) == 0:
            frames = np.zeros((self.T, self.channels, height, width), dtype=np.int16)
        else:
            bins = {"n_time_bins": self.T} if self.split_by == "time" else {"n_event_bins": self.T}
            frames = tonic.transforms.ToFrame(sensor_size=(width, height, self.channels), **bins)(events)
        out = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.int16))
        if self.resizes:
            out = F.interpolate(out.float(), size=self.out_size, mode="bilinear", align_corners=False, antialias=True)
        return out


# ====================================================================== dataset
@contextmanager
def _single_threaded() -> Iterator[None]:
    """Run small per-sample tensor ops on one intra-op thread.

    A resize or affine warp of one ``[T, C, H, W]`` sample is far too small to gain from intra-op
    parallelism, and with ``num_workers: 0`` it runs in the training process whose thread pool is
    sized for the model: on a busy CPU the pool's synchronisation made one 128->48 resize 20-30x
    slower than on a single thread. (DataLoader workers already use one thread; then this is a no-op.)
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class EventSample(NamedTuple):
    """One sample: its event file, label, cache id and (DVS128 Gesture) time window ``[start, end)``."""

    path: str
    label: int
    sample_id: str
    window: Optional[tuple[int, int]] = None


class EventFrameDataset(Dataset):
    """Samples of event files -> ``(frames float32 [T, C, H, W], label)``, through an optional cache.

    Args:
        samples: the samples of one split.
        reader: ``path -> events`` (one of the ``read_*_file`` functions, possibly a ``partial``).
        binning: the events -> frames conversion.
        dataset_name: used in messages.
        cache: a :class:`FrameCache`, or None to bin on every access.
        transform: applied to the float frames (training augmentation), or None.

    When an entry cannot be written (full disk, read-only or vanished folder: a
    :class:`~lightning_snn.fileio.WriteError`), the dataset warns once, naming the cache directory and the
    cause, and stops writing: samples without an entry are then binned from their events on every access
    (the same frames, only slower); entries already written are still read and verified.
    """

    def __init__(
        self,
        samples: Sequence[EventSample],
        reader: Callable[[str], np.ndarray],
        binning: EventBinning,
        dataset_name: str = "event",
        cache: Optional[FrameCache] = None,
        transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> None:
        self.samples = list(samples)
        self.reader = reader
        self.binning = binning
        self.dataset_name = dataset_name
        self.cache = cache
        self.transform = transform
        self.cache_writable = cache is not None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        return [s.label for s in self.samples]

    # ------------------------------------------------------------------ events -> frames
    def _select(self, events: np.ndarray, sample: EventSample) -> np.ndarray:
        if sample.window is None:
            return events
        start, end = sample.window
        return events[(events["t"] >= start) & (events["t"] < end)]

    def read_events(self, index: int) -> np.ndarray:
        """The raw events of sample ``index`` (reads its event file)."""
        sample = self.samples[index]
        return self._select(self.reader(sample.path), sample)

    def _bin(self, events: np.ndarray, sample: EventSample) -> torch.Tensor:
        return self.binning(self._select(events, sample), sample.path, self.dataset_name)

    def compute_frames(self, index: int) -> torch.Tensor:
        """Frames of sample ``index`` from its events, bypassing the cache (stored dtype)."""
        sample = self.samples[index]
        return self._bin(self.reader(sample.path), sample)

    def frames(self, index: int) -> torch.Tensor:
        """Frames of sample ``index`` (stored dtype): from the cache, rebuilt there if missing or invalid."""
        if self.cache is None:
            return self.compute_frames(index)
        sample = self.samples[index]
        try:
            return self.cache.load(sample.sample_id, sample.path, sample.label)
        except CacheEntryInvalid as err:
            if not err.missing:
                warnings.warn(f"{self.dataset_name}: {err}; rebuilding it from {sample.path}", RuntimeWarning, stacklevel=2)
        frames = self.compute_frames(index)
        if self.cache_writable:
            try:
                self.cache.store(sample.sample_id, sample.path, sample.label, frames)
            except WriteError as err:
                self.stop_writing(err.cause)
        return frames

    def stop_writing(self, cause: str) -> None:
        """Stop writing cache entries after a failed write, with one warning saying why and what follows."""
        if not self.cache_writable or self.cache is None:
            return
        self.cache_writable = False
        warnings.warn(
            f"{self.dataset_name}: cannot write to the frame cache {self.cache.directory}: {cause}. The cache stops "
            "writing: samples without an entry are binned from their event files on every access (same frames, "
            "slower); entries already written are still used. Free space or set cache_dir to a writable folder",
            RuntimeWarning,
            stacklevel=2,
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with _single_threaded():
            x = self.frames(index).float()
            if self.transform is not None:
                x = self.transform(x)
        return x, self.samples[index].label

    # ------------------------------------------------------------------ cache building
    def missing_cache_entries(self) -> list[int]:
        """Indices whose cache entry file does not exist (validity is checked when read)."""
        if self.cache is None:
            return []
        return [i for i, s in enumerate(self.samples) if not self.cache.has(s.sample_id)]

    def _build_group(self, indices: Sequence[int]) -> tuple[int, Optional[str]]:
        """Read one event file once and store the entries of its samples ``indices``.

        Returns how many were stored and, if a write failed, why (the build then stops).
        """
        assert self.cache is not None
        path = self.samples[indices[0]].path
        events = self.reader(path)
        with _single_threaded():
            for done, i in enumerate(indices):
                sample = self.samples[i]
                try:
                    self.cache.store(sample.sample_id, sample.path, sample.label, self._bin(events, sample))
                except WriteError as err:
                    return done, err.cause
        return len(indices), None

    def build_cache(self, num_workers: int = 0, desc: Optional[str] = None) -> int:
        """Bin and store every sample without a cache entry (progress bar); returns how many were built."""
        missing = self.missing_cache_entries() if self.cache_writable else []
        if not missing:
            return 0
        assert self.cache is not None
        self.cache.prepare()
        groups: dict[str, list[int]] = {}
        for i in missing:
            groups.setdefault(self.samples[i].path, []).append(i)
        task = _CacheBuildTask(self, list(groups.values()))
        loader = DataLoader(task, batch_size=None, shuffle=False, num_workers=num_workers)
        built = 0
        with tqdm(total=len(missing), desc=desc or f"Binning {self.dataset_name} into {self.cache.directory}",
                  unit="sample", dynamic_ncols=True) as bar:
            for n, failure in loader:
                bar.update(int(n))
                built += int(n)
                if failure is not None:
                    self.stop_writing(failure)
                    break
        return built


def collate_event_frames(batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[(frames [T, C, H, W], label)] -> (x [B, T, C, H, W], y [B])``, stacked on one thread.

    The default collate's ``torch.stack`` of a batch of frames (a few MB) runs on the training
    process's intra-op pool with ``num_workers: 0``; on a busy CPU that took longer than reading and
    augmenting the whole batch from the cache.
    """
    with _single_threaded():
        x = torch.stack([item[0] for item in batch])
    return x, torch.tensor([int(item[1]) for item in batch], dtype=torch.long)


class _CacheBuildTask(Dataset):
    """One item per event file: builds the cache entries of that file's missing samples."""

    def __init__(self, dataset: EventFrameDataset, groups: list[list[int]]) -> None:
        self.dataset = dataset
        self.groups = groups

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> tuple[int, Optional[str]]:
        return self.dataset._build_group(self.groups[index])


# ====================================================================== DataModules
class EventDataModule(SpikingDataModule):
    """Shared logic: validation, binning, cache, augmentation, eval view (see the module docstring)."""

    dataset_name: ClassVar[str]
    folder_name: ClassVar[str]
    sensor_size: ClassVar[tuple[int, int]]  # (width, height)
    n_classes: ClassVar[int]
    url: ClassVar[str]
    #: for a dataset that cannot be downloaded automatically: why, and how to get it, with ``{root}`` and
    #: ``{url}`` placeholders; ``download: true`` is then refused with this text
    manual_download: ClassVar[Optional[str]] = None

    def __init__(
        self,
        root: str,
        T: int,
        split_by: SplitBy,
        size: Size,
        polarity: bool,
        denoise_filter_time: Optional[float],
        flip: float,
        roll: int,
        snn_augment: bool,
        cache: bool,
        cache_dir: Optional[str],
        download: bool,
        batch_size: int,
        num_workers: int,
        val_split: float,
        seed: int,
        pin_memory: Optional[bool],
    ) -> None:
        if download and self.manual_download is not None:
            raise ValueError(
                f"{self.dataset_name} cannot be downloaded automatically "
                f"{self.manual_download.format(root=root, url=self.url)} and set download: false"
            )
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, val_split=val_split, seed=seed, pin_memory=pin_memory
        )
        self.root = str(root)
        self.T = int(T)
        self.binning = EventBinning(
            sensor_size=self.sensor_size,
            T=self.T,
            split_by=split_by,
            size=as_size(size),
            polarity=bool(polarity),
            denoise_filter_time=None if denoise_filter_time is None else float(denoise_filter_time),
        )
        self.flip = float(flip)
        self.roll = int(roll)
        self.snn_augment = bool(snn_augment)
        self.train_transform = build_event_train_transform(self.flip, self.roll, self.snn_augment)
        self.test_transform = None
        self.cache = bool(cache)
        self.cache_dir = str(cache_dir) if cache_dir is not None else None
        self.download = bool(download)
        self.num_classes = self.n_classes
        _, c, h, w = self.binning.frame_shape
        self.input_shape = (c, h, w)

    # ------------------------------------------------------------------ paths and validation
    @property
    def data_dir(self) -> Path:
        return Path(self.root) / self.folder_name

    def _check_root(self) -> None:
        root = Path(self.root)
        if not root.is_dir():
            raise FileNotFoundError(
                f"{self.dataset_name} root directory {root} does not exist. Point root at the directory that "
                f"contains {self.folder_name}/ ({self.layout_hint()}); get the data from {self.url}"
                + (" or pass download: true" if self.can_download() else "")
            )
        if not self.data_dir.is_dir():
            hint = ""
            if root.name == self.folder_name:
                hint = f" (root should be the directory that contains {self.folder_name}/, not that folder itself)"
            raise FileNotFoundError(
                f"{self.dataset_name} folder {self.data_dir} not found{hint}. Expected {self.layout_hint()}; "
                f"get the data from {self.url}" + (" or pass download: true" if self.can_download() else "")
            )

    def layout_hint(self) -> str:
        return f"{self.folder_name}/..."

    def can_download(self) -> bool:
        return False

    # ------------------------------------------------------------------ subclass hooks
    def list_samples(self, train: bool) -> list[EventSample]:
        """The samples of the training (``train=True``) or test split, validating the folders."""
        raise NotImplementedError

    def reader(self) -> Callable[[str], np.ndarray]:
        """A picklable ``path -> events`` function."""
        raise NotImplementedError

    def extra_cache_params(self) -> dict[str, Any]:
        """Dataset-specific parameters that change the frames."""
        return {}

    def download_data(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ cache
    @property
    def cache_root(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir is not None else Path(self.root) / ".lightning_snn_cache"

    def frame_cache(self) -> Optional[FrameCache]:
        """The :class:`FrameCache` for the current parameters (None with ``cache: false``)."""
        if not self.cache:
            return None
        t, c, h, w = self.binning.frame_shape
        slug = re.sub(r"[^a-z0-9]+", "", self.dataset_name.lower())
        params = {"dataset": self.dataset_name, **self.binning.params(), **self.extra_cache_params()}
        return FrameCache(self.cache_root, f"{slug}-T{t}-{c}x{h}x{w}", params, self.binning.frame_shape,
                          self.binning.stored_dtype)

    # ------------------------------------------------------------------ datasets
    def make_dataset(self, train: bool, build_cache: bool = True) -> EventFrameDataset:
        """The dataset of one split (training transform on the training split), cache built if asked."""
        self._check_root()
        samples = self.list_samples(train)
        split = "train" if train else "test"
        if not samples:
            raise DatasetError(f"{self.dataset_name}: the {split} split under {self.data_dir} is empty")
        dataset = EventFrameDataset(
            samples,
            self.reader(),
            self.binning,
            self.dataset_name,
            cache=self.frame_cache(),
            transform=self.train_transform if train else None,
        )
        if build_cache and dataset.cache is not None:
            dataset.build_cache(self.num_workers, desc=f"{self.dataset_name} {split}: binning T={self.T} frames into the cache")
        return dataset

    def build_train_dataset(self) -> Dataset:
        return self.make_dataset(train=True)

    def build_test_dataset(self) -> Dataset:
        return self.make_dataset(train=False)

    def _loader(self, dataset: Optional[Dataset], stage: str, shuffle: bool) -> DataLoader:
        loader = super()._loader(dataset, stage, shuffle)
        loader.collate_fn = collate_event_frames
        return loader

    def eval_view(self, train_dataset: Dataset) -> Dataset:
        """The training split without augmentation (for the held-out part with ``val_split > 0``)."""
        view = copy.copy(train_dataset)
        view.transform = None  # type: ignore[attr-defined]
        return view

    def prepare_data(self) -> None:
        """Download if asked (one process), then bin both splits into the cache with a progress bar."""
        if self.download:
            self.download_data()
        if self.cache:
            for train in (True, False):
                self.make_dataset(train)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={self.root!r}, T={self.T}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, batch_size={self.batch_size})"
        )


class ClassFolderEventDataModule(EventDataModule):
    """An event dataset stored as ``<folder_name>/<class>/*<suffix>`` without an official train/test split.

    Subclasses set ``classes`` (folder names, in label order), ``suffix`` and call :meth:`set_split` in
    ``__init__``. Each class is divided by :func:`split_class_files` (``split``: ``"random"`` from
    ``split_seed``, or ``"first"``), ``train_ratio`` of it for training: a stratified split, the same on
    every run. Class folders are validated by :func:`class_folders` (a missing one is an error, a stray one
    is named in a warning).
    """

    classes: ClassVar[tuple[str, ...]]
    suffix: ClassVar[str]
    #: the accepted values of ``split``
    splits: ClassVar[tuple[str, ...]] = ("random", "first")
    #: folders next to the class folders that are neither read nor named in a warning
    not_classes: ClassVar[tuple[str, ...]] = ()

    def set_split(self, split: str, train_ratio: float, split_seed: int) -> None:
        check_split_args(split, train_ratio, self.splits)
        self.split = split
        self.train_ratio = float(train_ratio)
        self.split_seed = int(split_seed)

    def layout_hint(self) -> str:
        return f"{self.folder_name}/<class>/*{self.suffix}, one folder per class"

    def split_files(self, files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
        """``(train, test)`` files of one class (``files`` sorted by name) for the chosen ``split``."""
        return split_class_files(files, self.train_ratio, self.split, self.split_seed)

    def list_samples(self, train: bool) -> list[EventSample]:
        samples = []
        for label, files in class_folders(self.data_dir, self.data_dir, self.classes, self.suffix, self.dataset_name,
                                          self.url, not_classes=self.not_classes):
            samples += class_folder_samples(self.data_dir, self.split_files(files)[0 if train else 1], label)
        return samples


def class_folders(
    data_dir: Path, split_dir: Path, classes: Sequence[str], pattern: str, dataset: str, url: str,
    not_classes: Sequence[str] = (),
) -> list[tuple[int, list[Path]]]:
    """``[(label, sorted files)]`` of every class folder, with errors naming a missing folder.

    What would be skipped is named in one warning: a folder of ``split_dir`` that is not a class (other
    than hidden ones and ``not_classes``, e.g. CIFAR10-DVS's ``download``), ``pattern`` files outside the
    class folders, and files of another type inside them.
    """
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{dataset} folder {split_dir} not found under {data_dir}; get the data from {url}")
    out = []
    for label, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{dataset} class folder {folder} is missing (expected one folder per class: "
                f"{', '.join(classes)}); re-extract the dataset from {url}"
            )
        entries = [p for p in folder.iterdir() if p.is_file()]
        files = sorted(p for p in entries if p.name.endswith(pattern))
        if not files:
            raise FileNotFoundError(f"{dataset} class folder {folder} holds no {pattern} files; re-extract it from {url}")
        out.append((label, files))
        others = sorted(p.name for p in entries if not p.name.endswith(pattern) and not p.name.startswith("."))
        if others:
            warn_skipped(dataset, f"{len(others)} file(s) in {folder} that are not {pattern} recordings ({', '.join(others[:3])})")
    known = set(classes) | set(not_classes)
    for entry in sorted(split_dir.iterdir()):
        if entry.name in known or entry.name.startswith("."):
            continue
        if entry.is_dir():
            n = sum(1 for p in entry.rglob(f"*{pattern}"))
            warn_skipped(dataset, f"folder {entry} ({n} {pattern} files), which is not one of its classes "
                                   f"({', '.join(classes)})")
        elif entry.name.endswith(pattern):
            warn_skipped(dataset, f"{entry}, which lies outside the class folders")
    return out


def warn_skipped(dataset: str, what: str) -> None:
    warnings.warn(f"{dataset}: ignoring {what}; only the class folders are read", UserWarning, stacklevel=3)


def stable_hash(text: str) -> int:
    """A stable (not salted like ``hash``) 32-bit number of ``text``, used to seed per-class splits."""
    return zlib.crc32(text.encode()) & 0xFFFFFFFF


def check_split_args(split: str, train_ratio: float, allowed: Sequence[str] = ("random", "first")) -> None:
    """Raise ``ValueError`` for a ``split`` not in ``allowed`` or a ``train_ratio`` outside (0, 1)."""
    if split not in allowed:
        raise ValueError(f"split must be one of {', '.join(repr(s) for s in allowed)}, got {split!r}")
    if not 0.0 < train_ratio < 1.0:
        raise ValueError(f"train_ratio must be in (0, 1), got {train_ratio}")


def split_class_files(
    files: Sequence[Path], train_ratio: float, split: str = "random", seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """``(train, test)`` files of one class (``files`` sorted by name), for datasets without an official split.

    ``round(n * train_ratio)`` files go to training, at least one on each side (when ``n > 1``), so that
    every class is in both splits (a stratified split). ``split="random"``: a random subset drawn from
    ``seed`` and the class folder's name (the same on every run and machine), each side kept in name
    order; ``"first"``: the first files in name order, SpikingJelly's
    ``split_to_train_test_set(random_split=False)``.
    """
    files = list(files)
    n = len(files)
    n_train = min(max(int(round(n * train_ratio)), 1), n - 1) if n > 1 else n
    if split == "first":
        return files[:n_train], files[n_train:]
    rng = np.random.default_rng([seed, stable_hash(files[0].parent.name)])
    perm = rng.permutation(n)
    return [files[i] for i in sorted(perm[:n_train])], [files[i] for i in sorted(perm[n_train:])]


def class_folder_samples(data_dir: Path, files: Sequence[Path], label: int) -> list[EventSample]:
    """One :class:`EventSample` per file, labelled ``label``, its cache id the path relative to ``data_dir``."""
    return [EventSample(str(f), label, f.relative_to(data_dir).as_posix()) for f in files]
