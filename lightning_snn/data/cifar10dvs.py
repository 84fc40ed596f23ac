"""CIFAR10-DVS (Li et al., Front. Neurosci. 2017): the AEDAT 2.0 reader, the splits and the DataModule.

On disk (``root`` is the ``root`` argument): ``root/CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat``, the
extracted per-class zips of the original figshare release (AEDAT 2.0 from a DVS128; tonic's folder name).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Union

import numpy as np
import tonic.io

from .base import DatasetError
from .event_base import EVENT_DTYPE, ClassFolderEventDataModule, Size, SplitBy, aedat_header, file_size

__all__ = ["CIFAR10DVSDataModule", "read_cifar10dvs_file"]


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
    version, start = aedat_header(path, "CIFAR10-DVS")
    if not 2.0 <= version < 3.0:
        raise DatasetError(f"CIFAR10-DVS file {path} is AEDAT {version}; the original release is AEDAT 2.0")
    size = file_size(path, "CIFAR10-DVS")
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



class CIFAR10DVSDataModule(ClassFolderEventDataModule):
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
    suffix = ".aedat"
    splits = ("random", "first", "tebn")
    not_classes = ("download",)

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
        self.set_split(split, train_ratio, split_seed)
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
        return super().split_files(files)

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
