"""ASL-DVS (Bi et al., ICCV 2019): the ``.mat`` reader and the DataModule.

On disk (``root`` is the ``root`` argument): ``root/ASLDVS/<letter>/*.mat``, one folder per letter ``a`` ...
``y`` without ``j`` (24 classes: ``j`` and ``z`` need motion), as the per-letter zips inside
``ICCV2019_DVS_dataset.zip`` extract (tonic's ``ASLDVS`` keeps them under ``ASLDVS/``). Every file is a
MATLAB file with the column vectors ``ts`` (us), ``x``, ``y`` and ``pol`` of one ~100 ms recording of a
DAVIS240c (240x180).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal, Optional, Union

import numpy as np

from .base import DatasetError
from .event_base import EVENT_DTYPE, ClassFolderEventDataModule, Size, SplitBy, file_size

__all__ = ["ASL_DVS_CLASSES", "ASLDVSDataModule", "read_asl_dvs_file"]

#: the 24 letters of ASL-DVS in label order (``j`` and ``z`` are not in the dataset)
ASL_DVS_CLASSES: tuple[str, ...] = tuple(c for c in "abcdefghiklmnopqrstuvwxy")
_URL = "https://github.com/PIX2NVS/NVS2Graph"
#: (width, height) of the DAVIS240c
_SENSOR = (240, 180)
_FIELDS = ("ts", "x", "y", "pol")


def read_asl_dvs_file(path: Union[str, os.PathLike]) -> np.ndarray:
    """Events of one ASL-DVS ``.mat`` file, in image coordinates (y down), t in us.

    tonic has no reader function for this format (its ``ASLDVS`` dataset calls ``scipy.io.loadmat``),
    so the file is read with ``scipy.io.loadmat`` and decoded as tonic does: ``x``, ``y = 179 - y``
    (the sensor counts rows from the bottom), ``p = pol``, ``t = ts``. SpikingJelly's ``ASLDVS`` also mirrors
    x (``239 - x``); the two differ by a horizontal flip of every sample.

    Rejected with :class:`~lightning_snn.data.base.DatasetError` naming the file: a file MATLAB's format
    cannot be read from (truncated, corrupt, or MATLAB 7.3 / HDF5), a missing field, fields of different
    lengths or of a non-numeric type, values that are not whole numbers, no events, a polarity other than 0 / 1.
    Coordinates outside the 240x180 sensor are rejected when the events are binned.
    """
    import scipy.io

    path = os.fspath(path)
    file_size(path, "ASL-DVS")
    replace = f"Replace it from the ASL-DVS archive ({_URL})"
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # MatReadError, OSError "could not read bytes", ValueError, NotImplementedError (v7.3)
        raise DatasetError(
            f"ASL-DVS file {path} cannot be read as a MATLAB file, truncated or corrupt? ({type(err).__name__}: {err}). {replace}"
        ) from err
    missing = [k for k in _FIELDS if k not in mat]
    if missing:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"ASL-DVS file {path} lacks the field(s) {', '.join(missing)} (found: {', '.join(found) or 'none'}; "
                           f"expected {', '.join(_FIELDS)}). {replace}")
    columns = {k: _column(path, k, mat[k], replace) for k in _FIELDS}
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(f"ASL-DVS file {path} has fields of different lengths ({lengths}): truncated or corrupt. {replace}")
    n = lengths["ts"]
    if n == 0:
        raise DatasetError(f"ASL-DVS file {path} holds no events. {replace}")
    pol = columns["pol"]
    if not np.isin(pol, (0, 1)).all():
        raise DatasetError(f"ASL-DVS file {path} has polarities other than 0 and 1 ({np.unique(pol)[:5].tolist()}). {replace}")
    events = np.empty(n, dtype=EVENT_DTYPE)
    events["x"] = columns["x"]
    events["y"] = _SENSOR[1] - 1 - columns["y"]
    events["p"] = pol == 1
    events["t"] = columns["ts"]
    return events


def _column(path: str, name: str, value: Any, replace: str) -> np.ndarray:
    """One field as int64 ``[N]``: a column or row vector of whole numbers."""
    array = np.asarray(value)
    if array.ndim > 2 or (array.ndim == 2 and min(array.shape) > 1) or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating) or array.dtype == bool
    ):
        raise DatasetError(f"ASL-DVS file {path}: field {name} is a {array.dtype} array of shape {array.shape}; "
                           f"expected a numeric vector. {replace}")
    array = array.reshape(-1)
    if np.issubdtype(array.dtype, np.floating) and not (np.isfinite(array).all() and (array == np.round(array)).all()):
        raise DatasetError(f"ASL-DVS file {path}: field {name} holds values that are not whole numbers. {replace}")
    return array.astype(np.int64)


class ASLDVSDataModule(ClassFolderEventDataModule):
    """ASL-DVS (Bi et al., ICCV 2019): 100,800 recordings (4,200 per letter), 2x180x240, 24 classes.

    Static handshapes of the American Sign Language letters, posed by five subjects to a DAVIS240c, each
    recording ~100 ms. There is no official split (the NVS2Graph repository ships none, and its exact
    protocol could not be checked here): the default is a seeded stratified 4:1 split (``train_ratio: 0.8``
    of each class, drawn from ``split_seed``), a common choice for ASL-DVS; ``train_ratio: 0.9`` gives the
    9:1 split of SpikingJelly-based papers. ``split: first`` takes the first recordings of each class in
    file-name order.

    Frames: T = 10 with equal event counts (SpikingJelly's ``split_by='number'``), resized from 180x240 to
    ``size`` (48x48 by default; the canvas is squeezed, not cropped). Mind the cache: 100,800 samples of
    T x 2 x 48 x 48 float32 frames take about 19 GB (``size: null`` keeps int16 180x240 frames, ~170 GB).
    No augmentation by default.

    ASL-DVS cannot be downloaded here: ``download: true`` is refused with instructions.

    Args:
        root: directory containing ``ASLDVS/<letter>/*.mat``.
        T: number of frames per sample (the model's ``T`` must be the same).
        split_by: ``"number"`` (equal event counts) or ``"time"``.
        size: output ``(height, width)`` or one int (48 by default); None keeps 180x240.
        polarity: one channel per polarity (2) or merged (1).
        denoise_filter_time: tonic ``Denoise`` filter time in us; None disables.
        split: ``"random"`` or ``"first"`` (see above).
        train_ratio: fraction of each class in the training split (0.8 by default).
        split_seed: seed of the ``random`` split.
        flip: probability of a horizontal flip of the training frames (0: off).
        roll: maximum random roll of the training frames in pixels (0: off).
        snn_augment: RevSNN's SNNAugmentWide on the training frames.
        cache: bin once into a disk cache (recommended); False bins on every access.
        cache_dir: cache root; default ``<root>/.lightning_snn_cache``.
        download: must stay false.
        batch_size: samples per batch.
        num_workers: DataLoader workers (also used to build the cache).
        val_split: fraction of the training split held out for validation; 0.0 validates on the test split.
        seed: seed of the hold-out split.
        pin_memory: pin host memory; None pins when CUDA is available.
    """

    dataset_name = "ASL-DVS"
    folder_name = "ASLDVS"
    sensor_size = _SENSOR
    n_classes = len(ASL_DVS_CLASSES)
    url = _URL
    manual_download = ("(its archive is a shared Dropbox folder whose checksum changes). Download "
                       "ICCV2019_DVS_dataset.zip (linked from {url}), extract it and the per-letter zips inside it "
                       "under {root}/ASLDVS (giving {root}/ASLDVS/a/*.mat, ...)")
    classes = ASL_DVS_CLASSES
    suffix = ".mat"

    def __init__(
        self,
        root: str = "data",
        T: int = 10,
        split_by: SplitBy = "number",
        size: Size = 48,
        polarity: bool = True,
        denoise_filter_time: Optional[float] = None,
        split: Literal["random", "first"] = "random",
        train_ratio: float = 0.8,
        split_seed: int = 0,
        flip: float = 0.0,
        roll: int = 0,
        snn_augment: bool = False,
        cache: bool = True,
        cache_dir: Optional[str] = None,
        download: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        val_split: float = 0.0,
        seed: int = 0,
        pin_memory: Optional[bool] = None,
    ) -> None:
        super().__init__(root, T, split_by, size, polarity, denoise_filter_time, flip, roll, snn_augment, cache,
                         cache_dir, download, batch_size, num_workers, val_split, seed, pin_memory)
        self.set_split(split, train_ratio, split_seed)
        self.save_hyperparameters()

    def reader(self) -> Callable[[str], np.ndarray]:
        return read_asl_dvs_file

    def extra_cache_params(self) -> dict[str, Any]:
        return {"decode": "scipy.io.loadmat ts, x, y=179-y, pol (tonic's ASLDVS)"}
