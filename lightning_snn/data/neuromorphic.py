"""Neuromorphic (event-camera) DataModules: N-MNIST, CIFAR10-DVS and DVS128 Gesture.

Each DataModule reads the dataset's **original files** with tonic's readers (``tonic.io``), bins the
events of a sample into ``T`` frames with ``tonic.transforms.ToFrame`` (one channel per polarity),
optionally resizes the frames, caches the result on disk and feeds batches ``x: float32 [B, T, C, H, W]``,
``y: int64 [B]``. ``num_classes``, ``input_shape`` (C, H, W of one frame) and ``T`` are set in
``__init__`` so that the CLI can link them into the model (the model's ``T`` must equal the data's).

On-disk layouts (the names tonic and the original archives use; ``root`` is the ``root`` argument):

=================  ==========================================================================================
N-MNIST            ``root/NMNIST/Train/<digit>/*.bin`` and ``root/NMNIST/Test/<digit>/*.bin`` (the extracted
                   ``Train.zip`` / ``Test.zip`` of Orchard et al.; tonic's layout). 40-bit events, 34x34.
CIFAR10-DVS        ``root/CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat`` (the extracted per-class zips of the
                   original figshare release, AEDAT 2.0 from a DVS128; tonic's folder name).
DVS128 Gesture     ``root/DvsGesture/`` as extracted from IBM's ``DvsGesture.tar.gz``: ``userNN_<light>.aedat``
                   (AEDAT 3.1), ``userNN_<light>_labels.csv`` (``class,startTime_usec,endTime_usec``) and
                   ``trials_to_train.txt`` / ``trials_to_test.txt``. Each labelled window is one sample.
=================  ==========================================================================================

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
in a directory keyed by every frame-changing parameter; epochs then read only the cache. Entries are
verified on every read and a stale or corrupt one is rebuilt from its event file with a warning, see
:mod:`lightning_snn.data.event_cache`. Augmentations run after the cache, on the training split only.

Errors. A missing root, dataset folder, class folder, listed recording or label file raises
``FileNotFoundError`` naming the path and saying how to get the data; a truncated or unreadable event
file, an unreadable label file, events with coordinates outside the sensor and (N-MNIST) a zero-filled
file or block or decreasing timestamps raise :class:`~lightning_snn.data.base.DatasetError` naming the
file. What is present but not read (a folder that is not a class, stray files, a DVS128 Gesture
recording in neither trial list) is named in a warning. A cache that cannot be written mid-run falls back
to binning on the fly with one warning (see :class:`EventFrameDataset`).
"""

from __future__ import annotations

import copy
import io
import os
import re
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
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
    "CIFAR10DVSDataModule",
    "DVSGestureDataModule",
    "EventBinning",
    "EventFrameDataset",
    "EventSample",
    "NMNISTDataModule",
    "collate_event_frames",
    "read_cifar10dvs_file",
    "read_dvs_gesture_file",
    "read_nmnist_file",
]

#: structured dtype of the events every reader returns (tonic's ``events_struct``)
EVENT_DTYPE = tonic.io.events_struct

SplitBy = Literal["time", "number"]
Size = Optional[Union[int, tuple[int, int]]]


# ====================================================================== readers
def read_nmnist_file(path: Union[str, os.PathLike], first_saccade_only: bool = False) -> np.ndarray:
    """Events of one N-MNIST ``.bin`` file (``tonic.io.read_mnist_file``), x/y in 0..33, t in us.

    Each event is 40 bits: x (8), y (8), polarity (1), timestamp (23); ``y == 240`` marks a timestamp
    overflow (+2^13 us), as in Orchard's reader. ``first_saccade_only`` keeps ``t < 100 ms``, as tonic.

    The file is rejected (:class:`DatasetError` naming it) when its size is not a positive multiple of 5
    bytes (truncated), when it holds a run of :data:`NMNIST_ZERO_RUN` or more all-zero events (a zero-filled
    file or block, as a failed copy or a disk error leaves: no real recording has one, see
    ``tests/data/test_neuromorphic.py::test_real_recordings``), or when its timestamps decrease (the sensor
    writes them in order; a zeroed or damaged block breaks the order). Coordinates outside the 34x34
    sensor are rejected when the events are binned (:meth:`EventBinning.check`).
    """
    path = os.fspath(path)
    size = _file_size(path, "N-MNIST")
    if size == 0 or size % 5:
        raise DatasetError(
            f"N-MNIST file {path} is truncated or not an N-MNIST recording: {size} bytes is not a positive "
            f"multiple of 5 (one event = 40 bits). Replace it from the N-MNIST archive "
            f"({NMNISTDataModule.url})"
        )
    try:
        with open(path, "rb") as f:
            raw = f.read()
        events = tonic.io.read_mnist_file(io.BytesIO(raw), dtype=EVENT_DTYPE, is_stream=True)
    except Exception as err:
        raise DatasetError(f"N-MNIST file {path} cannot be read ({type(err).__name__}: {err})") from err
    _check_nmnist_events(path, np.frombuffer(raw, dtype=np.uint8).reshape(-1, 5), events)
    if first_saccade_only:
        events = events[events["t"] < 100_000]
    return events


#: this many consecutive all-zero 5-byte events mark a zero-filled block (disk blocks are 512+ bytes)
NMNIST_ZERO_RUN = 8


def _check_nmnist_events(path: str, rows: np.ndarray, events: np.ndarray) -> None:
    """Reject zero-filled files or blocks and decreasing timestamps (see :func:`read_nmnist_file`)."""
    replace = f"Replace it from the N-MNIST archive ({NMNISTDataModule.url})"
    zero = ~rows.any(axis=1)
    if zero.all():
        raise DatasetError(f"N-MNIST file {path} is all zero bytes ({rows.size} bytes): a failed copy or a disk error. {replace}")
    if zero.sum() >= NMNIST_ZERO_RUN:
        edges = np.diff(np.concatenate([[0], zero.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        longest = int(np.argmax(ends - starts))
        if ends[longest] - starts[longest] >= NMNIST_ZERO_RUN:
            raise DatasetError(
                f"N-MNIST file {path} holds a zero-filled block: {ends[longest] - starts[longest]} all-zero events "
                f"from byte {5 * starts[longest]} (a failed copy or a disk error). {replace}"
            )
    if len(events) > 1:
        back = np.flatnonzero(np.diff(events["t"]) < 0)
        if len(back):
            i = int(back[0])
            raise DatasetError(
                f"N-MNIST file {path} is corrupt: its timestamps go back from {int(events['t'][i])} us to "
                f"{int(events['t'][i + 1])} us at event {i + 1} of {len(events)} ({len(back)} such steps; "
                f"a recording's timestamps never decrease). {replace}"
            )


def _file_size(path: str, dataset: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError as err:
        raise FileNotFoundError(f"{dataset} event file {path} cannot be opened ({err.strerror or err})") from err


def _aedat_header(path: str, dataset: str) -> tuple[float, int]:
    """``(version, offset of the first data byte)`` via ``tonic.io.read_aedat_header_from_file``."""
    _file_size(path, dataset)
    try:
        version, start, _ = tonic.io.read_aedat_header_from_file(path)
    except Exception as err:  # no '#' header -> UnboundLocalError, garbage version -> ValueError, ...
        raise DatasetError(
            f"{dataset} file {path} is not an AEDAT recording: no readable '#!AER-DAT<version>' header "
            f"({type(err).__name__}: {err})"
        ) from err
    return float(version), int(start)


def read_cifar10dvs_file(path: Union[str, os.PathLike]) -> np.ndarray:
    """Events of one original CIFAR10-DVS ``.aedat`` file (AEDAT 2.0, DVS128, 128x128).

    The header and the big-endian ``(address, timestamp)`` pairs are read with tonic's
    ``read_aedat_header_from_file`` / ``get_aer_events_from_file`` (tonic's own ``read_dvs_128``
    cannot be used: in tonic 1.7 it unpacks the header reader's three return values into two). The
    address is decoded as SpikingJelly's ``CIFAR10DVS`` does, i.e. as the frames of the TET, Rate-BP
    and RevSNN recipes were made: ``x = 127 - ((a >> 8) & 0x7F)``, ``y = 127 - ((a >> 1) & 0x7F)``,
    ``p = 1 - (a & 1)`` (which shows the objects upright).
    """
    path = os.fspath(path)
    version, start = _aedat_header(path, "CIFAR10-DVS")
    if not 2.0 <= version < 3.0:
        raise DatasetError(f"CIFAR10-DVS file {path} is AEDAT {version}; the original release is AEDAT 2.0")
    size = _file_size(path, "CIFAR10-DVS")
    if (size - start) % 8:
        raise DatasetError(
            f"CIFAR10-DVS file {path} is truncated: {size - start} bytes of events is not a multiple of 8 "
            f"(one event = 32-bit address + 32-bit timestamp). Replace it from {CIFAR10DVSDataModule.url}"
        )
    if size == start:
        raise DatasetError(f"CIFAR10-DVS file {path} holds no events (truncated?). Replace it from {CIFAR10DVSDataModule.url}")
    try:
        raw = tonic.io.get_aer_events_from_file(path, version, start)
    except Exception as err:
        raise DatasetError(f"CIFAR10-DVS file {path} cannot be read ({type(err).__name__}: {err})") from err
    addr = raw["address"].astype(np.int64)
    events = np.empty(len(raw), dtype=EVENT_DTYPE)
    events["x"] = 127 - ((addr >> 8) & 0x7F)
    events["y"] = 127 - ((addr >> 1) & 0x7F)
    events["p"] = (addr & 1) == 0
    events["t"] = raw["timeStamp"].astype(np.int64)
    return events


_AEDAT3_HEADER = np.dtype(
    [("type", "<u2"), ("source", "<u2"), ("size", "<u4"), ("ts_offset", "<u4"), ("ts_overflow", "<u4"),
     ("capacity", "<u4"), ("number", "<u4"), ("valid", "<u4")]
)
_AEDAT3_POLARITY = np.dtype([("data", "<u4"), ("timestamp", "<u4")])


def read_dvs_gesture_file(path: Union[str, os.PathLike]) -> np.ndarray:
    """All polarity events of one DVS128 Gesture ``.aedat`` file (AEDAT 3.1, 128x128).

    The text header is parsed by tonic's ``read_aedat_header_from_file``. The packets are then walked
    here rather than with ``tonic.io.get_aer_events_from_file``, which treats every packet as 8-byte
    polarity events and ignores truncation: packets of other event types (e.g. special events) are
    skipped by their ``eventSize * eventCapacity`` as in SpikingJelly's ``load_aedat_v3``, and a packet
    running past the end of the file is reported. Polarity events decode as tonic's ``read_dvs_ibm``:
    ``x = (d >> 17) & 0x7FFF``, ``y = (d >> 2) & 0x7FFF``, ``p = (d >> 1) & 1``, ``t = ts | overflow << 31``.
    """
    path = os.fspath(path)
    version, start = _aedat_header(path, "DVS128 Gesture")
    if version < 3.0:
        raise DatasetError(f"DVS128 Gesture file {path} is AEDAT {version}; the original release is AEDAT 3.1")
    try:
        buffer = np.fromfile(path, dtype=np.uint8, offset=start)
    except Exception as err:
        raise DatasetError(f"DVS128 Gesture file {path} cannot be read ({type(err).__name__}: {err})") from err
    chunks: list[np.ndarray] = []
    pos, n = 0, len(buffer)
    while pos < n:
        if pos + _AEDAT3_HEADER.itemsize > n:
            raise DatasetError(
                f"DVS128 Gesture file {path} is truncated: an incomplete packet header at byte {start + pos} "
                f"(file size {start + n})"
            )
        header = np.frombuffer(buffer, dtype=_AEDAT3_HEADER, count=1, offset=pos)[0]
        size, capacity = int(header["size"]), int(header["capacity"])
        end = pos + _AEDAT3_HEADER.itemsize + size * capacity
        if end > n:
            raise DatasetError(
                f"DVS128 Gesture file {path} is truncated: the packet at byte {start + pos} announces "
                f"{capacity} events of {size} bytes but the file ends at byte {start + n}"
            )
        if int(header["type"]) == 1:  # POLARITY_EVENT
            if size != _AEDAT3_POLARITY.itemsize:
                raise DatasetError(
                    f"DVS128 Gesture file {path}: polarity packet at byte {start + pos} has {size}-byte events, expected 8"
                )
            packet = np.frombuffer(buffer, dtype=_AEDAT3_POLARITY, count=capacity, offset=pos + _AEDAT3_HEADER.itemsize)
            t = packet["timestamp"].astype(np.int64) | (int(header["ts_overflow"]) << 31)
            chunks.append(np.rec.fromarrays([packet["data"], t], names="data,t"))
        elif size == 0 and capacity != 0:
            raise DatasetError(f"DVS128 Gesture file {path} is corrupt: packet at byte {start + pos} has 0-byte events")
        pos = end
    if not chunks:
        raise DatasetError(f"DVS128 Gesture file {path} holds no polarity events (truncated?)")
    data = np.concatenate([c["data"] for c in chunks]).astype(np.int64)
    events = np.empty(len(data), dtype=EVENT_DTYPE)
    events["x"] = (data >> 17) & 0x7FFF
    events["y"] = (data >> 2) & 0x7FFF
    events["p"] = ((data >> 1) & 1).astype(bool)
    events["t"] = np.concatenate([c["t"] for c in chunks])
    return events


# ====================================================================== binning
def _as_size(size: Size) -> Optional[tuple[int, int]]:
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
class _EventDataModule(SpikingDataModule):
    """Shared logic: validation, binning, cache, augmentation, eval view (see the module docstring)."""

    dataset_name: ClassVar[str]
    folder_name: ClassVar[str]
    sensor_size: ClassVar[tuple[int, int]]  # (width, height)
    n_classes: ClassVar[int]
    url: ClassVar[str]

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
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, val_split=val_split, seed=seed, pin_memory=pin_memory
        )
        self.root = str(root)
        self.T = int(T)
        self.binning = EventBinning(
            sensor_size=self.sensor_size,
            T=self.T,
            split_by=split_by,
            size=_as_size(size),
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


def _class_folders(
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
            _warn_skipped(dataset, f"{len(others)} file(s) in {folder} that are not {pattern} recordings ({', '.join(others[:3])})")
    known = set(classes) | set(not_classes)
    for entry in sorted(split_dir.iterdir()):
        if entry.name in known or entry.name.startswith("."):
            continue
        if entry.is_dir():
            n = sum(1 for p in entry.rglob(f"*{pattern}"))
            _warn_skipped(dataset, f"folder {entry} ({n} {pattern} files), which is not one of its classes "
                                   f"({', '.join(classes)})")
        elif entry.name.endswith(pattern):
            _warn_skipped(dataset, f"{entry}, which lies outside the class folders")
    return out


def _warn_skipped(dataset: str, what: str) -> None:
    warnings.warn(f"{dataset}: ignoring {what}; only the class folders are read", UserWarning, stacklevel=3)


class NMNISTDataModule(_EventDataModule):
    """N-MNIST (Orchard et al., Front. Neurosci. 2015): 60k/10k recordings, 2x34x34, 10 classes.

    MNIST digits recorded by an ATIS sensor making three saccades (~300 ms). Official Train/Test
    split; no augmentation by default (digits must not be flipped). Events are binned into ``T`` frames
    by time (``split_by="time"``), as STBP-style N-MNIST pipelines do.

    Args:
        root: directory containing ``NMNIST/Train/<digit>/*.bin`` and ``NMNIST/Test/<digit>/*.bin``.
        T: number of frames per sample (the model's ``T`` must be the same).
        split_by: ``"time"`` (equal-duration bins) or ``"number"`` (equal event counts).
        size: output ``(height, width)`` or one int; None keeps 34x34.
        polarity: one channel per polarity (2) or merged (1).
        denoise_filter_time: tonic ``Denoise`` filter time in us; None disables.
        first_saccade_only: keep the events of the first saccade only (``t < 100 ms``), as tonic's option.
        flip: probability of a horizontal flip of the training frames (0: off).
        roll: maximum random roll of the training frames in pixels (0: off).
        snn_augment: RevSNN's SNNAugmentWide on the training frames.
        cache: bin once into a disk cache (recommended); False bins on every access.
        cache_dir: cache root; default ``<root>/.lightning_snn_cache``.
        download: download with tonic into ``root/NMNIST`` if missing (never otherwise).
        batch_size: samples per batch.
        num_workers: DataLoader workers (also used to build the cache).
        val_split: fraction of train held out for validation; 0.0 validates on the test split.
        seed: seed of the hold-out split.
        pin_memory: pin host memory; None pins when CUDA is available.
    """

    dataset_name = "N-MNIST"
    folder_name = "NMNIST"
    sensor_size = (34, 34)
    n_classes = 10
    url = "https://www.garrickorchard.com/datasets/n-mnist"
    classes: ClassVar[tuple[str, ...]] = tuple(str(d) for d in range(10))

    def __init__(
        self,
        root: str = "data",
        T: int = 10,
        split_by: SplitBy = "time",
        size: Size = None,
        polarity: bool = True,
        denoise_filter_time: Optional[float] = None,
        first_saccade_only: bool = False,
        flip: float = 0.0,
        roll: int = 0,
        snn_augment: bool = False,
        cache: bool = True,
        cache_dir: Optional[str] = None,
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 0,
        val_split: float = 0.0,
        seed: int = 0,
        pin_memory: Optional[bool] = None,
    ) -> None:
        super().__init__(root, T, split_by, size, polarity, denoise_filter_time, flip, roll, snn_augment, cache,
                         cache_dir, download, batch_size, num_workers, val_split, seed, pin_memory)
        self.first_saccade_only = bool(first_saccade_only)
        self.save_hyperparameters()

    def layout_hint(self) -> str:
        return "NMNIST/Train/<digit>/*.bin and NMNIST/Test/<digit>/*.bin"

    def can_download(self) -> bool:
        return True

    def list_samples(self, train: bool) -> list[EventSample]:
        split_dir = self.data_dir / ("Train" if train else "Test")
        samples = []
        for label, files in _class_folders(self.data_dir, split_dir, self.classes, ".bin", self.dataset_name, self.url):
            samples += [EventSample(str(f), label, f.relative_to(self.data_dir).as_posix()) for f in files]
        return samples

    def reader(self) -> Callable[[str], np.ndarray]:
        return partial(read_nmnist_file, first_saccade_only=self.first_saccade_only)

    def extra_cache_params(self) -> dict[str, Any]:
        return {"first_saccade_only": self.first_saccade_only}

    def download_data(self) -> None:
        """Download and extract Train/Test with ``tonic.datasets.NMNIST`` (only if ``download: true``)."""
        if (self.data_dir / "Train").is_dir() and (self.data_dir / "Test").is_dir():
            return
        import tonic.datasets

        Path(self.root).mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            tonic.datasets.NMNIST(save_to=self.root, train=train)


class CIFAR10DVSDataModule(_EventDataModule):
    """CIFAR10-DVS (Li et al., Front. Neurosci. 2017): 10,000 recordings, 2x128x128, 10 classes.

    Defaults follow the CIFAR10-DVS recipe of TET (Deng et al., ICLR 2022) reused by Rate-BP
    (Yu et al., NeurIPS 2024): T = 10 frames with equal event counts (SpikingJelly ``split_by='number'``),
    resized to 48x48, training frames flipped horizontally (p 0.5) and rolled by up to +-5 px. RevSNN
    (Zhang & Zhang, AAAI 2024) keeps 128x128 (``size: null``) and uses ``flip: 0.5, roll: 0,
    snn_augment: true``.

    The dataset has no official split. ``split`` chooses how each class (1000 recordings) is divided
    ``train_ratio`` : 1 - ``train_ratio`` (9:1 by default, ``round(n * train_ratio)`` training recordings
    per class, at least one on each side):

    * ``"random"`` (default): a random permutation per class drawn from ``split_seed`` (fixed, so the
      split is the same on every run and machine);
    * ``"first"``: the first recordings per class in file-name order (``cifar10_airplane_0``, ``_1``,
      ``_10``, ``_100``, ...), SpikingJelly's ``split_to_train_test_set(random_split=False)`` as RevSNN uses;
    * ``"tebn"``: recordings 0-99 of each class are the test set, 100-999 the training set (TEBN,
      Duan et al., NeurIPS 2022), which SpikingJelly notes gives higher accuracy than a random split.

    Args:
        root: directory containing ``CIFAR10DVS/<class>/*.aedat``.
        T: number of frames per sample (the model's ``T`` must be the same).
        split_by: ``"number"`` (equal event counts, the recipes') or ``"time"``.
        size: output ``(height, width)`` or one int (48 as TET / Rate-BP); None keeps 128x128.
        polarity: one channel per polarity (2) or merged (1).
        denoise_filter_time: tonic ``Denoise`` filter time in us; None disables.
        split: ``"random"``, ``"first"`` or ``"tebn"`` (see above).
        train_ratio: fraction of each class in the training split (``random`` / ``first``).
        split_seed: seed of the ``random`` split.
        flip: probability of a horizontal flip of the training frames.
        roll: maximum random roll of the training frames in pixels (0: off).
        snn_augment: RevSNN's SNNAugmentWide on the training frames.
        cache: bin once into a disk cache (recommended); False bins on every access.
        cache_dir: cache root; default ``<root>/.lightning_snn_cache``.
        download: download the original per-class zips from figshare into ``root/CIFAR10DVS``
            (never otherwise).
        batch_size: samples per batch.
        num_workers: DataLoader workers (also used to build the cache).
        val_split: fraction of the training split held out for validation; 0.0 validates on the test split.
        seed: seed of the hold-out split.
        pin_memory: pin host memory; None pins when CUDA is available.
    """

    dataset_name = "CIFAR10-DVS"
    folder_name = "CIFAR10DVS"
    sensor_size = (128, 128)
    n_classes = 10
    url = "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671"
    classes: ClassVar[tuple[str, ...]] = (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    )

    def __init__(
        self,
        root: str = "data",
        T: int = 10,
        split_by: SplitBy = "number",
        size: Size = 48,
        polarity: bool = True,
        denoise_filter_time: Optional[float] = None,
        split: Literal["random", "first", "tebn"] = "random",
        train_ratio: float = 0.9,
        split_seed: int = 0,
        flip: float = 0.5,
        roll: int = 5,
        snn_augment: bool = False,
        cache: bool = True,
        cache_dir: Optional[str] = None,
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 0,
        val_split: float = 0.0,
        seed: int = 0,
        pin_memory: Optional[bool] = None,
    ) -> None:
        super().__init__(root, T, split_by, size, polarity, denoise_filter_time, flip, roll, snn_augment, cache,
                         cache_dir, download, batch_size, num_workers, val_split, seed, pin_memory)
        if split not in ("random", "first", "tebn"):
            raise ValueError(f"split must be 'random', 'first' or 'tebn', got {split!r}")
        if not 0.0 < train_ratio < 1.0:
            raise ValueError(f"train_ratio must be in (0, 1), got {train_ratio}")
        self.split = split
        self.train_ratio = float(train_ratio)
        self.split_seed = int(split_seed)
        self.save_hyperparameters()

    def layout_hint(self) -> str:
        return "CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat, one folder per class"

    def can_download(self) -> bool:
        return True

    @staticmethod
    def _index_of(path: Path) -> int:
        match = re.search(r"(\d+)\.aedat$", path.name)
        if match is None:
            raise DatasetError(f"CIFAR10-DVS file {path} is not named cifar10_<class>_<i>.aedat, needed by split: tebn")
        return int(match.group(1))

    def split_files(self, files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
        """``(train, test)`` files of one class (``files`` sorted by name) for the chosen ``split``."""
        files = list(files)
        if self.split == "tebn":
            train = [f for f in files if self._index_of(f) >= 100]
            test = [f for f in files if self._index_of(f) < 100]
            return train, test
        n = len(files)
        n_train = min(max(int(round(n * self.train_ratio)), 1), n - 1) if n > 1 else n
        if self.split == "first":
            return files[:n_train], files[n_train:]
        rng = np.random.default_rng([self.split_seed, _stable_hash(files[0].parent.name)])
        perm = rng.permutation(n)
        return [files[i] for i in sorted(perm[:n_train])], [files[i] for i in sorted(perm[n_train:])]

    def list_samples(self, train: bool) -> list[EventSample]:
        samples = []
        for label, files in _class_folders(self.data_dir, self.data_dir, self.classes, ".aedat", self.dataset_name,
                                           self.url, not_classes=("download",)):
            part = self.split_files(files)[0 if train else 1]
            samples += [EventSample(str(f), label, f.relative_to(self.data_dir).as_posix()) for f in part]
        return samples

    def reader(self) -> Callable[[str], np.ndarray]:
        return read_cifar10dvs_file

    def extra_cache_params(self) -> dict[str, Any]:
        return {"decode": "spikingjelly: x=127-((a>>8)&127), y=127-((a>>1)&127), p=1-(a&1)"}

    def download_data(self) -> None:
        """Download the original per-class zips (URLs and md5 from SpikingJelly) and extract them."""
        missing = [c for c in self.classes if not (self.data_dir / c).is_dir()]
        if not missing:
            return
        from torchvision.datasets.utils import download_and_extract_archive

        for cls in missing:
            file_id, md5 = _CIFAR10DVS_FILES[cls]
            url = f"https://ndownloader.figshare.com/files/{file_id}"
            download_and_extract_archive(url, download_root=str(self.data_dir / "download"),
                                         extract_root=str(self.data_dir), filename=f"{cls}.zip", md5=md5)


#: figshare file id and md5 of each per-class zip of the original release (the list SpikingJelly uses)
_CIFAR10DVS_FILES: dict[str, tuple[int, str]] = {
    "airplane": (7712788, "0afd5c4bf9ae06af762a77b180354fdd"),
    "automobile": (7712791, "8438dfeba3bc970c94962d995b1b9bdd"),
    "bird": (7712794, "a9c207c91c55b9dc2002dc21c684d785"),
    "cat": (7712812, "52c63c677c2b15fa5146a8daf4d56687"),
    "deer": (7712815, "b6bf21f6c04d21ba4e23fc3e36c8a4a3"),
    "dog": (7712818, "f379ebdf6703d16e0a690782e62639c3"),
    "frog": (7712842, "cad6ed91214b1c7388a5f6ee56d08803"),
    "horse": (7712851, "e7cbbf77bec584ffbf913f00e682782a"),
    "ship": (7712836, "41c7bd7d6b251be82557c6cce9a7d5c9"),
    "truck": (7712839, "89f3922fd147d9aeff89e76a2b0b70a7"),
}


def _stable_hash(text: str) -> int:
    """A stable (not salted like ``hash``) 32-bit number of ``text``, used to seed per-class splits."""
    return zlib.crc32(text.encode()) & 0xFFFFFFFF


class DVSGestureDataModule(_EventDataModule):
    """DVS128 Gesture (Amir et al., CVPR 2017): 1342 gestures of 29 subjects, 2x128x128, 11 classes.

    Every row of a recording's ``_labels.csv`` is one sample: the events with
    ``startTime_usec <= t < endTime_usec`` (as SpikingJelly cuts them), label ``class - 1``. The split is
    the official one (``trials_to_train.txt``: subjects 1-23, ``trials_to_test.txt``: 24-29). Defaults
    follow RevSNN's DVS128 pipeline (T frames with equal event counts at 128x128, SNNAugmentWide)
    **without** its horizontal flip: flipping a recording turns "left hand wave" into "right hand wave"
    (and the left / right arm rotations into each other) without changing the label, so ``flip``
    stays 0 unless you want to reproduce RevSNN exactly (``flip: 0.5``).

    DVS128 Gesture cannot be downloaded automatically (IBM distributes it after a licence click-through):
    ``download: true`` is refused with instructions.

    Args:
        root: directory containing ``DvsGesture/`` (the extracted ``DvsGesture.tar.gz``).
        T: number of frames per sample (the model's ``T`` must be the same).
        split_by: ``"number"`` (equal event counts, the recipes') or ``"time"``.
        size: output ``(height, width)`` or one int; None keeps 128x128.
        polarity: one channel per polarity (2) or merged (1).
        denoise_filter_time: tonic ``Denoise`` filter time in us; None disables.
        flip: probability of a horizontal flip of the training frames (see above).
        roll: maximum random roll of the training frames in pixels (0: off).
        snn_augment: RevSNN's SNNAugmentWide on the training frames.
        cache: bin once into a disk cache (recommended: a recording is read once for all its gestures).
        cache_dir: cache root; default ``<root>/.lightning_snn_cache``.
        download: must stay false.
        batch_size: samples per batch.
        num_workers: DataLoader workers (also used to build the cache).
        val_split: fraction of the training split held out for validation; 0.0 validates on the test split.
        seed: seed of the hold-out split.
        pin_memory: pin host memory; None pins when CUDA is available.
    """

    dataset_name = "DVS128 Gesture"
    folder_name = "DvsGesture"
    sensor_size = (128, 128)
    n_classes = 11
    url = "https://research.ibm.com/interactive/dvsgesture/"
    classes: ClassVar[tuple[str, ...]] = (
        "hand clapping", "right hand wave", "left hand wave", "right arm clockwise",
        "right arm counter-clockwise", "left arm clockwise", "left arm counter-clockwise", "arm roll",
        "air drums", "air guitar", "other gestures",
    )

    def __init__(
        self,
        root: str = "data",
        T: int = 10,
        split_by: SplitBy = "number",
        size: Size = None,
        polarity: bool = True,
        denoise_filter_time: Optional[float] = None,
        flip: float = 0.0,
        roll: int = 0,
        snn_augment: bool = True,
        cache: bool = True,
        cache_dir: Optional[str] = None,
        download: bool = False,
        batch_size: int = 16,
        num_workers: int = 0,
        val_split: float = 0.0,
        seed: int = 0,
        pin_memory: Optional[bool] = None,
    ) -> None:
        if download:
            raise ValueError(
                "DVS128 Gesture cannot be downloaded automatically (IBM requires accepting its licence). "
                f"Download DvsGesture.tar.gz from {self.url}, extract it under {root} (giving {root}/DvsGesture/"
                "trials_to_train.txt, user01_fluorescent.aedat, ...) and set download: false"
            )
        super().__init__(root, T, split_by, size, polarity, denoise_filter_time, flip, roll, snn_augment, cache,
                         cache_dir, download, batch_size, num_workers, val_split, seed, pin_memory)
        self.save_hyperparameters()

    def layout_hint(self) -> str:
        return "DvsGesture/{trials_to_train.txt, trials_to_test.txt, userNN_<lighting>.aedat, userNN_<lighting>_labels.csv}"

    def _trials(self, train: bool) -> list[str]:
        listing = self.data_dir / ("trials_to_train.txt" if train else "trials_to_test.txt")
        if not listing.is_file():
            raise FileNotFoundError(
                f"DVS128 Gesture trial list {listing} not found; extract DvsGesture.tar.gz from {self.url} under {self.root}"
            )
        names = [line.strip() for line in listing.read_text().splitlines()]
        names = [n for n in names if n]
        missing = [n for n in names if not (self.data_dir / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"DVS128 Gesture recording {self.data_dir / missing[0]} listed in {listing} is missing"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + f"; re-extract DvsGesture.tar.gz from {self.url}"
            )
        return names

    def _labels(self, csv: Path) -> np.ndarray:
        if not csv.is_file():
            raise FileNotFoundError(f"DVS128 Gesture label file {csv} is missing; re-extract DvsGesture.tar.gz from {self.url}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an empty file warns before we raise
                rows = np.loadtxt(csv, dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
        except Exception as err:
            raise DatasetError(f"DVS128 Gesture label file {csv} cannot be read ({type(err).__name__}: {err})") from err
        if rows.size == 0 or rows.shape[1] != 3:
            raise DatasetError(
                f"DVS128 Gesture label file {csv} has shape {rows.shape}; expected rows 'class,startTime_usec,endTime_usec'"
            )
        if rows[:, 0].min() < 1 or rows[:, 0].max() > self.n_classes:
            raise DatasetError(f"DVS128 Gesture label file {csv} has classes outside 1..{self.n_classes}")
        return rows

    def _warn_unlisted(self) -> None:
        """Name the recordings that neither trial list mentions (they would be skipped without a word)."""
        listed: set[str] = set()
        for listing in ("trials_to_train.txt", "trials_to_test.txt"):
            if (self.data_dir / listing).is_file():
                listed |= {line.strip() for line in (self.data_dir / listing).read_text().splitlines()}
        unlisted = sorted(p.name for p in self.data_dir.glob("*.aedat") if p.name not in listed)
        if unlisted:
            _warn_skipped(self.dataset_name, f"{len(unlisted)} recording(s) in {self.data_dir} listed in neither "
                                             f"trials_to_train.txt nor trials_to_test.txt ({', '.join(unlisted[:3])})")

    def list_samples(self, train: bool) -> list[EventSample]:
        self._warn_unlisted()
        samples = []
        for name in self._trials(train):
            stem = name[: -len(".aedat")] if name.endswith(".aedat") else name
            rows = self._labels(self.data_dir / f"{stem}_labels.csv")
            path = str(self.data_dir / name)
            for row, (cls, start, end) in enumerate(rows.tolist()):
                samples.append(EventSample(path, int(cls) - 1, f"{name}/{row}", (int(start), int(end))))
        return samples

    def reader(self) -> Callable[[str], np.ndarray]:
        return read_dvs_gesture_file

    def extra_cache_params(self) -> dict[str, Any]:
        return {"decode": "aedat3.1 polarity packets, x=(d>>17)&0x7FFF, y=(d>>2)&0x7FFF, p=(d>>1)&1",
                "window": "start <= t < end"}
