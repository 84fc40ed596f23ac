"""DVS128 Gesture (Amir et al., CVPR 2017): the AEDAT 3.1 reader, the labelled windows and the DataModule.

On disk (``root`` is the ``root`` argument): ``root/DvsGesture/`` as extracted from IBM's
``DvsGesture.tar.gz``: ``userNN_<light>.aedat`` (AEDAT 3.1), ``userNN_<light>_labels.csv``
(``class,startTime_usec,endTime_usec``) and ``trials_to_train.txt`` / ``trials_to_test.txt``. Each labelled
window is one sample. A recording in neither trial list is named in a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

import numpy as np

from .base import DatasetError
from .event_base import EVENT_DTYPE, EventDataModule, EventSample, Size, SplitBy, aedat_header, warn_skipped

__all__ = ["DVSGestureDataModule", "read_dvs_gesture_file"]


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
    version, start = aedat_header(path, "DVS128 Gesture")
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


class DVSGestureDataModule(EventDataModule):
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
    manual_download = ("(IBM requires accepting its licence). Download DvsGesture.tar.gz from {url}, extract it under "
                       "{root} (giving {root}/DvsGesture/trials_to_train.txt, user01_fluorescent.aedat, ...)")
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
            warn_skipped(self.dataset_name, f"{len(unlisted)} recording(s) in {self.data_dir} listed in neither "
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
