"""Static-image DataModules: MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 and ImageNet.

All read the datasets in their usual on-disk layout (torchvision's for the first four, an
``ImageFolder`` tree for ImageNet), download nothing unless ``download: true`` and validate their
files in ``setup`` with errors that name the path at fault:

* ``FileNotFoundError`` for a missing root, folder or file (and how to obtain the data);
* :class:`~lightning_snn.data.base.DatasetError` (a ``RuntimeError``) for a truncated or corrupt
  file, naming the file (and the shape or size found);
* ``ValueError`` for an ImageFolder whose class count differs from ``num_classes``.

torchvision's MNIST reader fails on a truncated idx file with an anonymous shape error, and its CIFAR
classes check md5 sums only when downloading; the ``Checked*`` datasets below check presence,
loadability and shapes with errors naming the file, and (CIFAR, ``verify_md5``) the official md5 sums of
the files that claim to be the official release (see :class:`_CheckedCIFARMixin`). ImageNet images that
cannot be decoded (truncated JPEG) raise an error naming the file when they are read.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Optional, Union

import numpy as np
from torch.utils.data import Dataset
from torchvision import datasets as tvd
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, find_classes, has_file_allowed_extension
from torchvision.datasets.vision import VisionDataset

from . import transforms as tr
from .base import DatasetError, SpikingDataModule

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "CheckedCIFAR10",
    "CheckedCIFAR100",
    "CheckedFashionMNIST",
    "CheckedMNIST",
    "FashionMNISTDataModule",
    "ImageNetDataModule",
    "MNISTDataModule",
]

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


# ====================================================================== CIFAR datasets
class _CheckedCIFARMixin:
    """torchvision's CIFAR reading the python version, with presence, loadability, shape and md5 checks.

    Files are read and unpickled once; a missing file raises ``FileNotFoundError``, a truncated pickle,
    arrays of the wrong size or labels out of range raise :class:`DatasetError` naming the file.

    md5 (``verify_md5=True``, the default). The official sums are torchvision's (``train_list``,
    ``test_list``, ``meta``). A data file that holds the official number of images
    (:attr:`official_images`) is the official file or a damaged copy of it, so its md5 must match; when
    every data file read does, the meta file is checked as well. Bit rot flips bytes in place, keeping the
    pickle readable and the image count, so it is always caught. A file holding another number of images
    (a subset, a re-packed or generated set such as the tests' fakes) is not the official file: no official
    sum applies to it, and it gets the structural checks only. ``verify_md5=False`` skips the sums (about a
    second for CIFAR-10's 180 MB).
    """

    dataset_name = "CIFAR-10"
    label_key = "labels"
    n_classes = 10
    #: images in each data file of the official release
    official_images: ClassVar[dict[str, int]] = {
        **{f"data_batch_{i}": 10_000 for i in range(1, 6)}, "test_batch": 10_000,
    }
    # provided by the torchvision class mixed in
    base_folder: str
    train_list: list[list[str]]
    test_list: list[list[str]]
    meta: dict[str, str]
    root: str

    def __init__(
        self,
        root: Union[str, Path],
        train: bool = True,
        transform: Optional[Callable] = None,
        target_transform: Optional[Callable] = None,
        download: bool = False,
        verify_md5: bool = True,
    ) -> None:
        VisionDataset.__init__(self, root, transform=transform, target_transform=target_transform)  # type: ignore[arg-type]
        self.train = train
        self.verify_md5 = bool(verify_md5)
        if download:
            self.download()  # type: ignore[attr-defined]  # torchvision's; uses _check_integrity below
        files = self.train_list if train else self.test_list
        self._require_files([name for name, _ in files] + [self.meta["filename"]])

        data, targets, official = [], [], True
        for name, md5 in files:
            path = os.path.join(self.folder, name)
            raw = self._read(path)
            x, y = self._check_batch(path, self._unpickle(path, raw))
            if len(x) == self.official_images[name]:
                self._check_md5(path, raw, md5)
            else:
                official = False
            data.append(x)
            targets.extend(y)
        self.data: Any = np.concatenate(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # HWC
        self.targets: list[int] = targets
        self._load_meta(verify=official)

    @property
    def folder(self) -> str:
        return os.path.join(self.root, self.base_folder)

    def _check_integrity(self) -> bool:
        """Presence of every file (used by ``download()``; the md5 sums are checked when the files are read)."""
        names = [n for n, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        return all(os.path.isfile(os.path.join(self.folder, n)) for n in names)

    def _require_files(self, names: Sequence[str]) -> None:
        missing = [n for n in names if not os.path.isfile(os.path.join(self.folder, n))]
        if not missing:
            return
        what = "directory missing" if not os.path.isdir(self.folder) else "missing " + ", ".join(missing)
        hint = ""
        root = os.path.normpath(self.root)
        if os.path.basename(root) == self.base_folder or os.path.isfile(os.path.join(root, missing[0])):
            hint = f" (root should be the directory that contains {self.base_folder}/, not that folder itself)"
        raise FileNotFoundError(
            f"{self.dataset_name} not found under {self.folder} ({what}){hint}. Put the python version of "
            f"{self.dataset_name} there ({CIFAR_URL}) or pass download: true"
        )

    def _read(self, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as err:
            raise DatasetError(f"{self.dataset_name} file {path} cannot be read ({err.strerror or err})") from err

    def _check_md5(self, path: str, raw: bytes, expected: str) -> None:
        if not self.verify_md5:
            return
        found = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        if found != expected:
            raise DatasetError(
                f"{self.dataset_name} file {path} is damaged: its md5 is {found}, the official file's is {expected} "
                f"(it has the official layout, so bytes changed: bit rot or a bad copy). Delete it and pass "
                f"download: true, or replace it from {CIFAR_URL}; verify_md5: false skips this check"
            )

    def _unpickle(self, path: str, raw: Optional[bytes] = None) -> dict[str, Any]:
        try:
            entry = pickle.load(io.BytesIO(self._read(path) if raw is None else raw), encoding="latin1")
        except DatasetError:
            raise
        except Exception as err:  # EOFError, UnpicklingError, ValueError, ... from a bad file
            raise DatasetError(
                f"{self.dataset_name} file {path} is truncated or corrupt ({type(err).__name__}: {err}). "
                f"Replace it with the python version from {CIFAR_URL} or delete it and pass download: true"
            ) from err
        if not isinstance(entry, dict):
            raise DatasetError(f"{self.dataset_name} file {path} holds a {type(entry).__name__}, expected a dict")
        return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}

    def _check_batch(self, path: str, entry: dict[str, Any]) -> tuple[np.ndarray, list[int]]:
        for key in ("data", self.label_key):
            if key not in entry:
                raise DatasetError(
                    f"{self.dataset_name} file {path} has no '{key}' entry (keys: {sorted(entry)}); "
                    f"is it a {self.dataset_name} batch?"
                )
        x = np.asarray(entry["data"])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
            raise DatasetError(
                f"{self.dataset_name} file {path} has data of shape {x.shape} and dtype {x.dtype}; "
                f"expected uint8 of shape [N, 3072]"
            )
        y = [int(v) for v in entry[self.label_key]]
        if len(y) != len(x):
            raise DatasetError(f"{self.dataset_name} file {path} has {len(x)} images but {len(y)} labels")
        if y and not (0 <= min(y) and max(y) < self.n_classes):
            raise DatasetError(
                f"{self.dataset_name} file {path} has labels in [{min(y)}, {max(y)}]; "
                f"expected [0, {self.n_classes - 1}]"
            )
        return x, y

    def _load_meta(self, verify: bool = False) -> None:
        path = os.path.join(self.folder, self.meta["filename"])
        raw = self._read(path)
        if verify:
            self._check_md5(path, raw, self.meta["md5"])
        meta = self._unpickle(path, raw)
        key = self.meta["key"]
        if key not in meta:
            raise DatasetError(f"{self.dataset_name} meta file {path} has no '{key}' entry")
        self.classes = [c.decode("latin1") if isinstance(c, bytes) else str(c) for c in meta[key]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class CheckedCIFAR10(_CheckedCIFARMixin, tvd.CIFAR10):
    """torchvision CIFAR-10 reading ``root/cifar-10-batches-py`` with the checks of :class:`_CheckedCIFARMixin`."""


class CheckedCIFAR100(_CheckedCIFARMixin, tvd.CIFAR100):
    """torchvision CIFAR-100 reading ``root/cifar-100-python`` (fine labels) with the same checks."""

    dataset_name = "CIFAR-100"
    label_key = "fine_labels"
    n_classes = 100
    official_images: ClassVar[dict[str, int]] = {"train": 50_000, "test": 10_000}


# ====================================================================== MNIST datasets
_IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # uint8 with 3 dims / 1 dim


def check_idx_file(path: str, kind: str, dataset_name: str = "MNIST") -> tuple[int, ...]:
    """Validate an uncompressed idx file (``kind`` is "images" or "labels"), return its dims.

    Raises :class:`DatasetError` naming the file when the magic number is wrong (e.g. still
    gzip-compressed) or the size does not match the header (truncated file).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = f.read(4)
        if len(header) < 4:
            raise DatasetError(f"{dataset_name} file {path} is truncated ({size} bytes, no idx header)")
        magic = int.from_bytes(header, "big")
        if header[:2] == b"\x1f\x8b":
            raise DatasetError(f"{dataset_name} file {path} is gzip-compressed; decompress it (gunzip) first")
        if magic != _IDX_MAGIC[kind]:
            raise DatasetError(
                f"{dataset_name} file {path} has idx magic number {magic:#010x}; expected "
                f"{_IDX_MAGIC[kind]:#010x} (uint8 {kind})"
            )
        ndim = magic & 0xFF
        raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DatasetError(f"{dataset_name} file {path} is truncated ({size} bytes, incomplete idx header)")
    dims = tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(ndim))
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if size != expected:
        state = "truncated" if size < expected else "corrupt (trailing bytes)"
        raise DatasetError(
            f"{dataset_name} file {path} is {state}: its header says shape {list(dims)}, i.e. {expected} bytes, "
            f"but the file has {size} bytes. Replace it or delete it and pass download: true"
        )
    if kind == "images" and dims[1:] != (28, 28):
        raise DatasetError(f"{dataset_name} file {path} holds images of shape {list(dims)}; expected [N, 28, 28]")
    return dims


class _CheckedMNISTMixin:
    """MNIST-family dataset with a clear missing-file error and truncation checks of idx files.

    Reads the uncompressed idx files in ``root/<folder_name>/raw/``, exactly where torchvision's
    ``MNIST`` / ``FashionMNIST`` put them.
    """

    dataset_name = "MNIST"
    folder_name = "MNIST"
    url_hint = "http://yann.lecun.com/exdb/mnist/"
    root: str
    train: bool

    def __init__(
        self,
        root: Union[str, Path],
        train: bool = True,
        transform: Optional[Callable] = None,
        target_transform: Optional[Callable] = None,
        download: bool = False,
    ) -> None:
        raw = os.path.join(os.path.expanduser(str(root)), self.folder_name, "raw")
        processed = os.path.join(os.path.expanduser(str(root)), self.folder_name, "processed")
        legacy = all(os.path.isfile(os.path.join(processed, f)) for f in ("training.pt", "test.pt"))
        if not download and not legacy:
            self._require_files(raw, self._split_files(train))
        super().__init__(root, train=train, transform=transform, target_transform=target_transform, download=download)  # type: ignore[call-arg]

    @staticmethod
    def _split_files(train: bool) -> list[str]:
        prefix = "train" if train else "t10k"
        return [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.root, self.folder_name, "raw")

    @property
    def processed_folder(self) -> str:
        return os.path.join(self.root, self.folder_name, "processed")

    def _check_exists(self) -> bool:
        names = self._split_files(True) + self._split_files(False)
        return all(os.path.isfile(os.path.join(self.raw_folder, n)) for n in names)

    def _require_files(self, raw: str, names: Sequence[str]) -> None:
        missing = [n for n in names if not os.path.isfile(os.path.join(raw, n))]
        if not missing:
            return
        what = "directory missing" if not os.path.isdir(raw) else "missing " + ", ".join(missing)
        gz = [n + ".gz" for n in missing if os.path.isfile(os.path.join(raw, n + ".gz"))]
        hint = f"; found {', '.join(gz)}: decompress it (gunzip) in place" if gz else ""
        raise FileNotFoundError(
            f"{self.dataset_name} not found under {raw} ({what}{hint}). Put the uncompressed idx files "
            f"(train-images-idx3-ubyte, ..., from {self.url_hint}) there or pass download: true"
        )

    def _load_data(self) -> Any:
        images, labels = (os.path.join(self.raw_folder, n) for n in self._split_files(self.train))
        n_images = check_idx_file(images, "images", self.dataset_name)[0]
        n_labels = check_idx_file(labels, "labels", self.dataset_name)[0]
        if n_images != n_labels:
            raise DatasetError(f"{self.dataset_name}: {images} has {n_images} images but {labels} has {n_labels} labels")
        return super()._load_data()  # type: ignore[misc]


class CheckedMNIST(_CheckedMNISTMixin, tvd.MNIST):
    """torchvision MNIST (``root/MNIST/raw``) with clear missing/truncated-file errors."""


class CheckedFashionMNIST(_CheckedMNISTMixin, tvd.FashionMNIST):
    """torchvision FashionMNIST (``root/FashionMNIST/raw``) with clear missing/truncated-file errors."""

    dataset_name = "Fashion-MNIST"
    folder_name = "FashionMNIST"
    url_hint = "https://github.com/zalandoresearch/fashion-mnist"


# ====================================================================== DataModules
class _TorchvisionDataModule(SpikingDataModule):
    """Shared logic of the MNIST/CIFAR DataModules (torchvision dataset classes with ``train=``)."""

    dataset_cls: type

    def __init__(
        self,
        root: str,
        batch_size: int,
        num_workers: int,
        download: bool,
        val_split: float,
        seed: int,
        pin_memory: Optional[bool],
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, val_split=val_split, seed=seed, pin_memory=pin_memory
        )
        self.root = str(root)
        self.download = bool(download)
        self.train_transform: Callable
        self.test_transform: Callable
        #: extra keyword arguments of ``dataset_cls`` (CIFAR: ``verify_md5``)
        self.dataset_kwargs: dict[str, Any] = {}

    def _check_root(self) -> None:
        if not os.path.isdir(self.root) and not self.download:
            raise FileNotFoundError(
                f"{self.dataset_cls.dataset_name} root directory {self.root} does not exist. "
                f"Point root at the directory holding the dataset or pass download: true"
            )

    def prepare_data(self) -> None:
        """Download both splits when ``download`` is true (called on one process only)."""
        if self.download:
            for train in (True, False):
                self.dataset_cls(self.root, train=train, download=True, **self.dataset_kwargs)

    def build_train_dataset(self) -> Dataset:
        self._check_root()
        return self.dataset_cls(self.root, train=True, transform=self.train_transform, download=self.download,
                                **self.dataset_kwargs)

    def build_test_dataset(self) -> Dataset:
        self._check_root()
        return self.dataset_cls(self.root, train=False, transform=self.test_transform, download=self.download,
                                **self.dataset_kwargs)


class MNISTDataModule(_TorchvisionDataModule):
    """MNIST (60k/10k, 1x28x28, 10 classes) from torchvision's layout ``root/MNIST/raw/``.

    Recipe of the STBP reference code (Wu et al. 2018): training images get
    ``RandomHorizontalFlip`` + ``Normalize(0.1307, 0.3081)``; test images only ``Normalize``.
    ``augment: false`` drops the flip.

    Args:
        root: directory containing ``MNIST/raw/`` (the uncompressed idx files).
        batch_size: samples per batch.
        num_workers: DataLoader workers.
        download: download into ``root`` if missing (never otherwise).
        val_split: fraction of train held out for validation; 0.0 validates on the test split.
        seed: seed of the hold-out split.
        augment: random horizontal flip on the training split.
        pin_memory: pin host memory; ``None`` pins when CUDA is available.
    """

    dataset_cls = CheckedMNIST
    mean: tuple[float, ...] = tr.MNIST_MEAN
    std: tuple[float, ...] = tr.MNIST_STD

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 128,
        num_workers: int = 0,
        download: bool = False,
        val_split: float = 0.0,
        seed: int = 0,
        augment: bool = True,
        pin_memory: Optional[bool] = None,
    ) -> None:
        super().__init__(root, batch_size, num_workers, download, val_split, seed, pin_memory)
        self.augment = bool(augment)
        self.num_classes = 10
        self.input_shape = (1, 28, 28)
        self.train_transform = tr.build_train_transform(self.mean, self.std, flip=self.augment)
        self.test_transform = tr.build_test_transform(self.mean, self.std)
        self.save_hyperparameters()


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (60k/10k, 1x28x28, 10 classes) from ``root/FashionMNIST/raw/``.

    Same recipe as :class:`MNISTDataModule` (STBP-style flip + normalise), with the Fashion-MNIST
    statistics ``Normalize(0.2860, 0.3530)``.
    """

    dataset_cls = CheckedFashionMNIST
    mean = tr.FASHION_MNIST_MEAN
    std = tr.FASHION_MNIST_STD


class CIFAR10DataModule(_TorchvisionDataModule):
    """CIFAR-10 (50k/10k, 3x32x32, 10 classes) from ``root/cifar-10-batches-py/``.

    Training recipe of the STBP reference code: ``RandomCrop(32, padding=4)`` +
    ``RandomHorizontalFlip`` + ``Normalize``; optional torchvision AutoAugment CIFAR10 policy
    (Cubuk et al. 2019) and Cutout (DeVries & Taylor 2017, one hole of side ``cutout_length``,
    16 for CIFAR-10 as in their paper). Test images are only normalised.

    Args:
        root: directory containing ``cifar-10-batches-py/`` (the python version of the dataset).
        batch_size: samples per batch.
        num_workers: DataLoader workers.
        download: download into ``root`` if missing (never otherwise).
        val_split: fraction of train held out for validation; 0.0 validates on the test split.
        seed: seed of the hold-out split.
        augment: random crop (padding 4) + horizontal flip on the training split.
        cutout: apply Cutout (one hole).
        cutout_length: side of the Cutout square.
        cutout_order: ``"after_normalize"`` (DeVries & Taylor's code: the hole is the mean colour) or
            ``"before_normalize"`` (between ``ToTensor`` and ``Normalize``, the hole is black, i.e.
            ``-mean/std`` after normalisation: the Rate-BP repository's order).
        autoaugment: AutoAugment's CIFAR-10 policy after crop and flip: ``true`` or ``"torchvision"``
            (torchvision's ``AutoAugment``, fill 0), ``"cifar10_policy"`` (the PIL implementation many SNN
            repositories copy, fill 128: :class:`lightning_snn.data.autoaugment.CIFAR10Policy`).
        timm_transform: build the training pipeline with ``timm.data.create_transform`` from these
            arguments instead (e.g. RandAugment and random erasing:
            ``{auto_augment: rand-m9-n1-mstd0.4-inc1, re_prob: 0.25, scale: [1, 1], ratio: [1, 1]}``);
            ``augment``, ``autoaugment`` and ``cutout`` must then be off.
        mean: per-channel mean overriding the default statistics (e.g. to reproduce a paper's code).
        std: per-channel standard deviation overriding the default statistics.
        pin_memory: pin host memory; ``None`` pins when CUDA is available.
        verify_md5: check the official md5 sum of every file that holds the official number of images
            (see :class:`CheckedCIFAR10`); false skips it.
    """

    dataset_cls = CheckedCIFAR10
    default_mean: tuple[float, ...] = tr.CIFAR10_MEAN
    default_std: tuple[float, ...] = tr.CIFAR10_STD
    n_classes = 10

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 128,
        num_workers: int = 0,
        download: bool = False,
        val_split: float = 0.0,
        seed: int = 0,
        augment: bool = True,
        cutout: bool = False,
        cutout_length: int = 16,
        autoaugment: Union[bool, Literal["torchvision", "cifar10_policy"]] = False,
        timm_transform: Optional[dict[str, Any]] = None,
        mean: Optional[tuple[float, float, float]] = None,
        std: Optional[tuple[float, float, float]] = None,
        pin_memory: Optional[bool] = None,
        verify_md5: bool = True,
        cutout_order: Literal["after_normalize", "before_normalize"] = "after_normalize",
    ) -> None:
        super().__init__(root, batch_size, num_workers, download, val_split, seed, pin_memory)
        self.verify_md5 = bool(verify_md5)
        self.dataset_kwargs = {"verify_md5": self.verify_md5}
        self.augment = bool(augment)
        self.cutout = bool(cutout)
        self.cutout_length = int(cutout_length)
        if cutout_order not in tr.CUTOUT_ORDERS:
            raise ValueError(f"cutout_order must be one of {tr.CUTOUT_ORDERS}, got {cutout_order!r}")
        self.cutout_order = cutout_order
        self.autoaugment = autoaugment
        self.mean = tuple(mean) if mean is not None else self.default_mean
        self.std = tuple(std) if std is not None else self.default_std
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean} and {self.std}")
        self.num_classes = self.n_classes
        self.input_shape = (3, 32, 32)
        if timm_transform is not None:
            if self.augment or self.autoaugment or self.cutout:
                raise ValueError("timm_transform builds the whole training pipeline: set augment, autoaugment and cutout to false")
            self.train_transform = tr.timm_train_transform(self.mean, self.std, 32, **dict(timm_transform))
        else:
            self.train_transform = tr.build_train_transform(
                self.mean,
                self.std,
                crop_size=32 if self.augment else None,
                padding=4,
                flip=self.augment,
                autoaugment=self.autoaugment,
                cutout_length=self.cutout_length if self.cutout else 0,
                cutout_order=self.cutout_order,
            )
        self.test_transform = tr.build_test_transform(self.mean, self.std)
        self.save_hyperparameters()


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 (50k/10k, 3x32x32, 100 fine classes) from ``root/cifar-100-python/``.

    Same recipe and arguments as :class:`CIFAR10DataModule`, with the CIFAR-100 statistics; Cutout's
    default side is 8, as DeVries & Taylor use for CIFAR-100.
    """

    dataset_cls = CheckedCIFAR100
    default_mean = tr.CIFAR100_MEAN
    default_std = tr.CIFAR100_STD
    n_classes = 100

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 128,
        num_workers: int = 0,
        download: bool = False,
        val_split: float = 0.0,
        seed: int = 0,
        augment: bool = True,
        cutout: bool = False,
        cutout_length: int = 8,
        autoaugment: Union[bool, Literal["torchvision", "cifar10_policy"]] = False,
        timm_transform: Optional[dict[str, Any]] = None,
        mean: Optional[tuple[float, float, float]] = None,
        std: Optional[tuple[float, float, float]] = None,
        pin_memory: Optional[bool] = None,
        verify_md5: bool = True,
        cutout_order: Literal["after_normalize", "before_normalize"] = "after_normalize",
    ) -> None:
        super().__init__(
            root=root,
            batch_size=batch_size,
            num_workers=num_workers,
            download=download,
            val_split=val_split,
            seed=seed,
            augment=augment,
            cutout=cutout,
            cutout_length=cutout_length,
            autoaugment=autoaugment,
            timm_transform=timm_transform,
            mean=mean,
            std=std,
            pin_memory=pin_memory,
            verify_md5=verify_md5,
            cutout_order=cutout_order,
        )


def load_image(path: str) -> Any:
    """torchvision's ``default_loader`` (decoded RGB image), raising :class:`DatasetError` naming ``path``.

    A truncated or corrupt JPEG otherwise stops a run mid-epoch with PIL's message, which does not say
    which of the million files is at fault.
    """
    try:
        return default_loader(path)
    except Exception as err:  # OSError("image file is truncated ..."), UnidentifiedImageError, ...
        raise DatasetError(
            f"image {path} cannot be decoded ({type(err).__name__}: {err}); the file is truncated or corrupt: "
            f"replace it from the original archive (or move it out of the class folder)"
        ) from err


class _ImageFiles:
    """``is_valid_file`` for ``ImageFolder`` that remembers the files it rejects (to name them)."""

    def __init__(self) -> None:
        self.rejected: list[str] = []

    def __call__(self, path: str) -> bool:
        ok = has_file_allowed_extension(path, IMG_EXTENSIONS)
        if not ok and not os.path.basename(path).startswith("."):
            self.rejected.append(path)
        return ok


class ImageNetDataModule(SpikingDataModule):
    """ImageNet (or any ImageFolder tree) from ``root/train/<class>/*`` and ``root/val/<class>/*``.

    Standard torchvision / ResNet recipe: training images ``RandomResizedCrop(image_size)`` +
    ``RandomHorizontalFlip`` + ``Normalize``; validation images ``Resize(256)`` + ``CenterCrop(224)``
    (scaled with ``image_size``) + ``Normalize`` with the ImageNet statistics. The validation images
    must be sorted into class folders (the usual ``valprep.sh`` layout).

    ImageNet cannot be downloaded automatically (its licence requires a login): ``download: true``
    is refused with an explanation.

    Args:
        root: directory containing ``train/`` and ``val/``.
        batch_size: samples per batch.
        num_workers: DataLoader workers (set it to several per GPU for real ImageNet runs).
        download: must stay false.
        val_split: fraction of train held out for validation; 0.0 validates on ``val/``.
        seed: seed of the hold-out split.
        image_size: side of the square crops fed to the network.
        num_classes: expected number of class folders in ``train/`` and ``val/``.
        augment: random-resized crop + flip on the training split (else the validation transform).
        pin_memory: pin host memory; ``None`` pins when CUDA is available.
    """

    def __init__(
        self,
        root: str = "data/imagenet",
        batch_size: int = 64,
        num_workers: int = 0,
        download: bool = False,
        val_split: float = 0.0,
        seed: int = 0,
        image_size: int = 224,
        num_classes: int = 1000,
        augment: bool = True,
        pin_memory: Optional[bool] = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, val_split=val_split, seed=seed, pin_memory=pin_memory
        )
        if download:
            raise ValueError(
                "ImageNet cannot be downloaded automatically (its licence requires registering at "
                "https://image-net.org). Extract ILSVRC2012 train/ and val/ (val sorted into class "
                f"folders) under {root} and set download: false"
            )
        if image_size < 1 or num_classes < 1:
            raise ValueError(f"image_size and num_classes must be >= 1, got {image_size} and {num_classes}")
        self.root = str(root)
        self.download = False
        self.image_size = int(image_size)
        self.num_classes = int(num_classes)
        self.augment = bool(augment)
        self.input_shape = (3, self.image_size, self.image_size)
        self.test_transform = tr.imagenet_val_transform(self.image_size)
        self.train_transform = (
            tr.imagenet_train_transform(self.image_size) if self.augment else self.test_transform
        )
        self.save_hyperparameters()

    def _folder(self, split: str, transform: Callable) -> Dataset:
        if not os.path.isdir(self.root):
            raise FileNotFoundError(
                f"ImageNet root directory {self.root} does not exist. It must contain train/ and val/ "
                f"ImageFolder trees (one sub-folder per class); get ILSVRC2012 from https://image-net.org"
            )
        path = os.path.join(self.root, split)
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"ImageNet split folder {path} not found: {self.root} must contain train/ and val/ "
                f"ImageFolder trees (one sub-folder per class, validation images sorted into them)"
            )
        try:
            classes, _ = find_classes(path)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"ImageNet split folder {path} has no class sub-folders") from err
        if len(classes) != self.num_classes:
            other = os.path.join(self.root, "val" if split == "train" else "train")
            named = ""
            if os.path.isdir(other):
                extra = sorted(set(classes) - set(find_classes(other)[0]))
                named = f" ({len(extra)} not in {other}: {', '.join(extra[:5])})" if extra else ""
            raise ValueError(
                f"ImageNet split folder {path} has {len(classes)} class folders{named} but num_classes is "
                f"{self.num_classes}; set num_classes: {len(classes)} or fix the folder"
            )
        files = _ImageFiles()
        try:
            folder = tvd.ImageFolder(path, transform=transform, loader=load_image, is_valid_file=files)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"ImageNet split folder {path}: {err}") from err
        loose = sorted(e.name for e in os.scandir(path) if e.is_file() and not e.name.startswith("."))
        for what, names in (("file(s) outside the class folders", loose), ("non-image file(s) in class folders", files.rejected)):
            if names:
                warnings.warn(f"ImageNet: ignoring {len(names)} {what} of {path} (e.g. {', '.join(names[:3])}); "
                              "only images in class folders are read", UserWarning, stacklevel=3)
        return folder

    def build_train_dataset(self) -> Dataset:
        train = self._folder("train", self.train_transform)
        # both splits must share the class -> index mapping
        val_path = os.path.join(self.root, "val")
        if os.path.isdir(val_path):
            val_classes, _ = find_classes(val_path)
            if val_classes != train.classes:  # type: ignore[attr-defined]
                diff = sorted(set(val_classes) ^ set(train.classes))[:5]  # type: ignore[attr-defined]
                raise ValueError(
                    f"ImageNet class folders of {val_path} differ from those of "
                    f"{os.path.join(self.root, 'train')} (e.g. {diff}); labels would not match"
                )
        return train

    def build_test_dataset(self) -> Dataset:
        return self._folder("val", self.test_transform)
