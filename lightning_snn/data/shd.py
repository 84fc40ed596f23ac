"""Spiking Heidelberg Digits (SHD; Cramer et al., "The Heidelberg Spiking Data Sets for the Systematic
Evaluation of Spiking Neural Networks", IEEE TNNLS 2020).

Spoken digits 0-9 in English and German (20 classes) converted by a cochlea model into spikes of 700
auditory channels. Each split is one HDF5 file, ``<root>/shd_train.h5`` and ``<root>/shd_test.h5``
(8,156 / 2,264 recordings), holding

* ``spikes/times``: one variable-length float array per recording, spike times in seconds, ascending;
* ``spikes/units``: one variable-length integer array per recording, the channel (0..699) of each spike;
* ``labels``: the class (0..19) of each recording.

The events of a split are read and validated once, in ``setup``, and kept in memory as three flat arrays
(times, channels, offsets). A sample is binned on access into ``T`` frames of 700 channels (a ``[T, 700]``
count takes microseconds, so the event frame cache of :mod:`lightning_snn.data.event_cache`, which stores
one file per recording, would cost more than it saves; the camera-event core of
:mod:`lightning_snn.data.event_base`, tonic's ``ToFrame`` over ``(t, x, y, p)`` files, does not apply either:
only its batch collation is shared). Two time binnings are offered:

* ``binning: sparch`` (default) mirrors ``sparch/dataloaders/spiking_datasets.py`` of Bittar & Garner's
  repository (``idiap/sparch``): the bin of a spike at time ``t`` is ``np.digitize(t, linspace(0, max_time,
  T))``, i.e. the number of the ``T`` edges ``k·max_time/(T-1)`` that are ``<= t``. A spike at ``t >= 0``
  therefore never lands in frame 0 (it stays empty), and frames ``1..T-1`` have width ``max_time/(T-1)``
  (14.1 ms for ``T = 100``, ``max_time = 1.4 s``).
* ``binning: uniform``: ``T`` bins of width ``max_time / T``, the bin of ``t`` being ``floor(t·T/max_time)``.

``frames: count`` sums the spikes of a channel within a bin (as sparch, whose sparse tensor sums duplicate
indices); ``frames: binary`` records whether the channel spiked. A spike at or after ``max_time`` has no
bin: ``setup`` raises a :class:`DatasetError` naming the file, the recording and the time (nothing is
dropped).

A batch is ``x: [B, T, 700, 1, 1]``, ``y: [B]``: the event-frame layout ``[B, T, C, H, W]`` with
``input_shape = (700, 1, 1)`` (tonic's ``sensor_size`` of SHD), which every method transposes to
``[T, B, 700, 1, 1]``; the recurrent backbone :mod:`lightning_snn.backbones.rlif` flattens the channels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import h5py  # a dependency of tonic, which the event DataModules need anyway
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .base import DatasetError, SpikingDataModule
from .event_base import collate_event_frames

__all__ = ["SHDDataModule", "SHDFrames", "SHDSplit", "read_shd_file"]

#: auditory channels of the cochlea model (Cramer et al. 2020)
SHD_CHANNELS = 700
SHD_CLASSES = 20
SHD_URL = "https://zenkelab.org/datasets/ (shd_train.h5.zip, shd_test.h5.zip)"

Binning = Literal["sparch", "uniform"]
FrameMode = Literal["count", "binary"]


class SHDSplit:
    """The validated events of one SHD file: flat ``times`` (float64, s), ``units`` (int16), per-recording
    ``offsets`` (``[N + 1]``, recording ``i`` owns ``offsets[i]:offsets[i+1]``) and ``labels`` (int64)."""

    def __init__(self, path: Path, times: np.ndarray, units: np.ndarray, offsets: np.ndarray, labels: np.ndarray) -> None:
        self.path = path
        self.times = times
        self.units = units
        self.offsets = offsets
        self.labels = labels

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def events(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.times[lo:hi], self.units[lo:hi]


def _fail(path: Path, field: str, what: str) -> DatasetError:
    return DatasetError(
        f"SHD file {path}, field {field!r}: {what}. The file is corrupt or not an SHD file; download it again "
        f"from {SHD_URL} and unzip it"
    )


def _ragged(path: Path, f: h5py.File, field: str, n: int) -> list[np.ndarray]:
    try:
        data = f[field]
    except KeyError:
        raise _fail(path, field, "missing (an SHD file has spikes/times, spikes/units and labels)") from None
    if not isinstance(data, h5py.Dataset) or len(data.shape) != 1 or h5py.check_vlen_dtype(data.dtype) is None:
        raise _fail(path, field, f"expected one variable-length array per recording, got {data!r}")
    if data.shape[0] != n:
        raise _fail(path, field, f"{data.shape[0]} recordings, but 'labels' has {n}")
    try:
        rows = data[()]
    except Exception as err:  # truncated chunk, bad filter, ...
        raise _fail(path, field, f"unreadable ({type(err).__name__}: {err})") from err
    return [np.asarray(r) for r in rows]


def read_shd_file(path: str | Path, num_classes: int = SHD_CLASSES, channels: int = SHD_CHANNELS) -> SHDSplit:
    """Read and validate one SHD HDF5 file (module docstring).

    Raises ``FileNotFoundError`` for a missing file and :class:`DatasetError` naming the file and the field
    for a truncated or corrupt file, a missing dataset key, labels outside ``[0, num_classes)``, units
    outside ``[0, channels)``, times that are negative, not finite or not ascending within a recording,
    and times/units of different lengths.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SHD file {path} not found; get shd_train.h5 / shd_test.h5 from {SHD_URL}")
    try:
        f = h5py.File(path, "r")
    except Exception as err:  # OSError from the HDF5 library for a truncated or non-HDF5 file
        raise DatasetError(
            f"SHD file {path} cannot be opened as HDF5 ({type(err).__name__}: {err}); it is truncated or corrupt: "
            f"download it again from {SHD_URL} and unzip it"
        ) from err
    with f:
        try:
            labels_ds = f["labels"]
        except KeyError:
            raise _fail(path, "labels", "missing (an SHD file has spikes/times, spikes/units and labels)") from None
        try:
            labels = np.asarray(labels_ds[()])
        except Exception as err:
            raise _fail(path, "labels", f"unreadable ({type(err).__name__}: {err})") from err
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise _fail(path, "labels", f"expected a 1-D integer array, got shape {labels.shape} {labels.dtype}")
        if labels.size == 0:
            raise _fail(path, "labels", "no recordings")
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if bad.size:
            raise _fail(path, "labels", f"recording {bad[0]} has label {labels[bad[0]]}, outside [0, {num_classes})")
        n = labels.shape[0]
        times = _ragged(path, f, "spikes/times", n)
        units = _ragged(path, f, "spikes/units", n)
    counts = np.fromiter((t.shape[0] for t in times), dtype=np.int64, count=n)
    for i, (t, u) in enumerate(zip(times, units)):
        if t.shape != u.shape or t.ndim != 1:
            raise _fail(path, "spikes/units", f"recording {i} has {u.shape} units for {t.shape} times")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat_t, flat_u = np.concatenate(times), np.concatenate(units)
    if not np.issubdtype(flat_t.dtype, np.floating):
        raise _fail(path, "spikes/times", f"expected spike times in seconds (floating point), got {flat_t.dtype}")
    if not np.issubdtype(flat_u.dtype, np.integer):
        raise _fail(path, "spikes/units", f"expected integer channel numbers, got {flat_u.dtype}")
    flat_t = flat_t.astype(np.float64)
    owner = np.repeat(np.arange(n), counts)  # recording of each spike, for the error messages
    bad = np.flatnonzero(~np.isfinite(flat_t) | (flat_t < 0))
    if bad.size:
        raise _fail(path, "spikes/times", f"recording {owner[bad[0]]} has spike time {flat_t[bad[0]]!r} (not a finite time >= 0)")
    bad = np.flatnonzero((flat_u < 0) | (flat_u >= channels))
    if bad.size:
        raise _fail(path, "spikes/units", f"recording {owner[bad[0]]} has channel {flat_u[bad[0]]}, outside [0, {channels})")
    # ascending within each recording: a decrease is allowed only where a new recording starts
    drops = np.flatnonzero(np.diff(flat_t) < 0) + 1
    drops = drops[~np.isin(drops, offsets[1:-1])]
    if drops.size:
        i = int(owner[drops[0]])
        raise _fail(
            path, "spikes/times",
            f"recording {i} is not in time order (spike {drops[0] - offsets[i]} at {flat_t[drops[0]]:.6g} s follows one at "
            f"{flat_t[drops[0] - 1]:.6g} s)",
        )
    return SHDSplit(path, flat_t, flat_u.astype(np.int16), offsets, labels.astype(np.int64))


class SHDFrames(Dataset):
    """Binned SHD recordings: item ``i`` is ``(frames [T, 700, 1, 1] float32, label)`` (module docstring)."""

    def __init__(self, split: SHDSplit, T: int, max_time: float, binning: Binning = "sparch", frames: FrameMode = "count") -> None:
        self.split = split
        self.T = int(T)
        self.max_time = float(max_time)
        self.binning = binning
        self.frames = frames
        if binning == "sparch":
            self.edges = np.linspace(0.0, self.max_time, self.T)
        late = np.flatnonzero(self.bin_index(split.times) >= self.T)
        if late.size:  # checked once for the whole file, so that no epoch stops half-way
            i = int(np.searchsorted(split.offsets, late[0], side="right") - 1)
            raise DatasetError(
                f"SHD file {split.path}, field 'spikes/times': recording {i} has a spike at {split.times[late[0]]:.6g} s, "
                f"beyond the {self.max_time:g} s that T={self.T} frames cover; raise max_time"
            )

    def __len__(self) -> int:
        return len(self.split)

    @property
    def targets(self) -> list[int]:
        return self.split.labels.tolist()

    def bin_index(self, times: np.ndarray) -> np.ndarray:
        """The frame of each spike time (module docstring)."""
        if self.binning == "sparch":
            return np.searchsorted(self.edges, times, side="right")  # = np.digitize(times, edges)
        return np.floor(times * (self.T / self.max_time)).astype(np.int64)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        times, units = self.split.events(index)
        bins = self.bin_index(times)  # all < T (checked in __init__)
        flat = np.bincount(bins * SHD_CHANNELS + units.astype(np.int64), minlength=self.T * SHD_CHANNELS)
        if self.frames == "binary":
            flat = flat > 0
        x = torch.from_numpy(flat.astype(np.float32)).view(self.T, SHD_CHANNELS, 1, 1)
        return x, int(self.split.labels[index])


class SHDDataModule(SpikingDataModule):
    """Spiking Heidelberg Digits as ``[B, T, 700, 1, 1]`` spike-count frames (module docstring).

    Args:
        root: directory holding ``shd_train.h5`` and ``shd_test.h5`` (unzipped).
        T: number of time frames.
        max_time: the time span in seconds the frames cover (sparch: 1.4 s; SHD recordings end before it).
        binning: ``sparch`` (``np.digitize`` on ``linspace(0, max_time, T)``, as Bittar & Garner) or
            ``uniform`` (``T`` equal bins of ``max_time / T``).
        frames: ``count`` (spikes per channel and bin) or ``binary`` (whether the channel spiked).
        batch_size, num_workers, val_split, seed, pin_memory: see :class:`SpikingDataModule`; with the
            default ``val_split: 0`` validation runs on the test file, as sparch does (SHD has no
            validation split).
    """

    train_file = "shd_train.h5"
    test_file = "shd_test.h5"

    def __init__(
        self,
        root: str = "data",
        T: int = 100,
        max_time: float = 1.4,
        binning: Binning = "sparch",
        frames: FrameMode = "count",
        batch_size: int = 128,
        num_workers: int = 0,
        val_split: float = 0.0,
        seed: int = 0,
        pin_memory: Optional[bool] = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, val_split=val_split, seed=seed, pin_memory=pin_memory)
        if int(T) < 1:
            raise ValueError(f"T (time frames) must be >= 1, got {T}")
        if binning == "sparch" and int(T) < 2:
            raise ValueError("binning 'sparch' needs T >= 2 (its T edges span [0, max_time])")
        if not float(max_time) > 0.0:
            raise ValueError(f"max_time must be > 0 seconds, got {max_time}")
        if binning not in ("sparch", "uniform"):
            raise ValueError(f"binning must be 'sparch' or 'uniform', got {binning!r}")
        if frames not in ("count", "binary"):
            raise ValueError(f"frames must be 'count' or 'binary', got {frames!r}")
        self.root = str(root)
        self.T = int(T)
        self.max_time = float(max_time)
        self.binning: Binning = binning
        self.frames: FrameMode = frames
        self.num_classes = SHD_CLASSES
        self.input_shape = (SHD_CHANNELS, 1, 1)

    def _check_root(self) -> None:
        if not Path(self.root).is_dir():
            raise FileNotFoundError(
                f"SHD root directory {self.root} does not exist; it should hold {self.train_file} and {self.test_file} "
                f"(from {SHD_URL})"
            )

    def _frames(self, name: str) -> SHDFrames:
        self._check_root()
        split = read_shd_file(Path(self.root) / name)
        return SHDFrames(split, self.T, self.max_time, self.binning, self.frames)

    def build_train_dataset(self) -> Dataset:
        return self._frames(self.train_file)

    def build_test_dataset(self) -> Dataset:
        return self._frames(self.test_file)

    def _loader(self, dataset: Optional[Dataset], stage: str, shuffle: bool) -> DataLoader:
        loader = super()._loader(dataset, stage, shuffle)
        loader.collate_fn = collate_event_frames  # the event DataModules' single-threaded stack of frames
        return loader

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={self.root!r}, T={self.T}, binning={self.binning!r}, frames={self.frames!r}, "
            f"batch_size={self.batch_size})"
        )
