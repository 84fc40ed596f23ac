"""N-MNIST (Orchard et al., Front. Neurosci. 2015): the 40-bit ``.bin`` reader and the DataModule.

On disk (``root`` is the ``root`` argument): ``root/NMNIST/Train/<digit>/*.bin`` and
``root/NMNIST/Test/<digit>/*.bin``, the extracted ``Train.zip`` / ``Test.zip`` of Orchard et al. (tonic's
layout). 40-bit events, 34x34. Besides the errors of :mod:`.event_base`, a zero-filled file or block and
decreasing timestamps raise :class:`~lightning_snn.data.base.DatasetError` naming the file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

import numpy as np
import tonic.io

from .base import DatasetError
from .event_base import EVENT_DTYPE, EventDataModule, EventSample, Size, SplitBy, class_folder_samples, class_folders, file_size

__all__ = ["NMNISTDataModule", "NMNIST_ZERO_RUN", "read_atis_bin_file", "read_nmnist_file"]


def read_atis_bin_file(path: Union[str, os.PathLike], dataset: str, source: str) -> np.ndarray:
    """Events of one ATIS ``.bin`` file of Orchard et al. (N-MNIST, N-Caltech101), t in us.

    Read with ``tonic.io.read_mnist_file`` (tonic's reader of both datasets). Each event is 40 bits:
    x (8), y (8), polarity (1), timestamp (23); ``y == 240`` marks a timestamp overflow (+2^13 us), as in
    Orchard's reader.

    The file is rejected (:class:`DatasetError` naming it and ``dataset``; ``source`` says where to get a
    good copy) when its size is not a positive multiple of 5 bytes (truncated), when it holds a run of
    :data:`NMNIST_ZERO_RUN` or more all-zero events (a zero-filled file or block, as a failed copy or a disk
    error leaves: no real recording has one, see ``tests/data/test_nmnist.py::test_real_recordings``; an
    ATIS pixel cannot fire eight times in one microsecond), or when its timestamps decrease (the sensor
    writes them in order; a zeroed or damaged block breaks the order). Coordinates outside the sensor are
    rejected when the events are binned (:meth:`~lightning_snn.data.event_base.EventBinning.check`).
    """
    path = os.fspath(path)
    size = file_size(path, dataset)
    if size == 0 or size % 5:
        raise DatasetError(
            f"{dataset} file {path} is truncated or not an {dataset} recording: {size} bytes is not a positive "
            f"multiple of 5 (one event = 40 bits). Replace it from {source}"
        )
    try:
        with open(path, "rb") as f:
            raw = f.read()
        events = tonic.io.read_mnist_file(io.BytesIO(raw), dtype=EVENT_DTYPE, is_stream=True)
    except Exception as err:
        raise DatasetError(f"{dataset} file {path} cannot be read ({type(err).__name__}: {err})") from err
    _check_atis_events(path, np.frombuffer(raw, dtype=np.uint8).reshape(-1, 5), events, dataset, f"Replace it from {source}")
    return events


def read_nmnist_file(path: Union[str, os.PathLike], first_saccade_only: bool = False) -> np.ndarray:
    """Events of one N-MNIST ``.bin`` file (:func:`read_atis_bin_file`), x/y in 0..33, t in us.

    ``first_saccade_only`` keeps ``t < 100 ms``, as tonic. Coordinates outside the 34x34 sensor are
    rejected when the events are binned.
    """
    events = read_atis_bin_file(path, "N-MNIST", f"the N-MNIST archive ({NMNISTDataModule.url})")
    if first_saccade_only:
        events = events[events["t"] < 100_000]
    return events


#: this many consecutive all-zero 5-byte events mark a zero-filled block (disk blocks are 512+ bytes)
NMNIST_ZERO_RUN = 8


def _check_atis_events(path: str, rows: np.ndarray, events: np.ndarray, dataset: str, replace: str) -> None:
    """Reject zero-filled files or blocks and decreasing timestamps (see :func:`read_atis_bin_file`)."""
    zero = ~rows.any(axis=1)
    if zero.all():
        raise DatasetError(f"{dataset} file {path} is all zero bytes ({rows.size} bytes): a failed copy or a disk error. {replace}")
    if zero.sum() >= NMNIST_ZERO_RUN:
        edges = np.diff(np.concatenate([[0], zero.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        longest = int(np.argmax(ends - starts))
        if ends[longest] - starts[longest] >= NMNIST_ZERO_RUN:
            raise DatasetError(
                f"{dataset} file {path} holds a zero-filled block: {ends[longest] - starts[longest]} all-zero events "
                f"from byte {5 * starts[longest]} (a failed copy or a disk error). {replace}"
            )
    if len(events) > 1:
        back = np.flatnonzero(np.diff(events["t"]) < 0)
        if len(back):
            i = int(back[0])
            raise DatasetError(
                f"{dataset} file {path} is corrupt: its timestamps go back from {int(events['t'][i])} us to "
                f"{int(events['t'][i + 1])} us at event {i + 1} of {len(events)} ({len(back)} such steps; "
                f"a recording's timestamps never decrease). {replace}"
            )


class NMNISTDataModule(EventDataModule):
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
        for label, files in class_folders(self.data_dir, split_dir, self.classes, ".bin", self.dataset_name, self.url):
            samples += class_folder_samples(self.data_dir, files, label)
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
