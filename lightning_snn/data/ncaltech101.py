"""N-Caltech101 (Orchard et al., Front. Neurosci. 2015): the DataModule, on the ATIS reader of N-MNIST.

On disk (``root`` is the ``root`` argument): ``root/Caltech101/<class>/image_NNNN.bin``, the extracted
``Caltech101.zip`` of Orchard et al. (the folder name tonic's ``NCALTECH101`` and SpikingJelly's
``NCaltech101`` extract it to). One folder per class: the 100 object categories of Caltech101 (its
``Faces`` category was left out of N-Caltech101, ``Faces_easy`` kept) plus ``BACKGROUND_Google``, 8,709
recordings. Every file holds 40-bit ATIS events in the format of N-MNIST
(:func:`~lightning_snn.data.nmnist.read_atis_bin_file`, with tonic's ``read_mnist_file``, which tonic uses for
both datasets), with its truncation, zero-block and timestamp-order checks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal, Optional, Union

import numpy as np

from .event_base import ClassFolderEventDataModule, Size, SplitBy
from .nmnist import read_atis_bin_file

__all__ = ["NCALTECH101_CLASSES", "NCaltech101DataModule", "read_ncaltech101_file"]

#: the class folders of N-Caltech101 in label order: sorted as Python sorts (upper case first), which is the
#: order of SpikingJelly's ``NCaltech101`` (a torchvision ``DatasetFolder``), so label indices agree with it
NCALTECH101_CLASSES: tuple[str, ...] = (
    "BACKGROUND_Google", "Faces_easy", "Leopards", "Motorbikes", "accordion", "airplanes", "anchor", "ant",
    "barrel", "bass", "beaver", "binocular", "bonsai", "brain", "brontosaurus", "buddha", "butterfly", "camera",
    "cannon", "car_side", "ceiling_fan", "cellphone", "chair", "chandelier", "cougar_body", "cougar_face", "crab",
    "crayfish", "crocodile", "crocodile_head", "cup", "dalmatian", "dollar_bill", "dolphin", "dragonfly",
    "electric_guitar", "elephant", "emu", "euphonium", "ewer", "ferry", "flamingo", "flamingo_head", "garfield",
    "gerenuk", "gramophone", "grand_piano", "hawksbill", "headphone", "hedgehog", "helicopter", "ibis",
    "inline_skate", "joshua_tree", "kangaroo", "ketch", "lamp", "laptop", "llama", "lobster", "lotus", "mandolin",
    "mayfly", "menorah", "metronome", "minaret", "nautilus", "octopus", "okapi", "pagoda", "panda", "pigeon",
    "pizza", "platypus", "pyramid", "revolver", "rhino", "rooster", "saxophone", "schooner", "scissors",
    "scorpion", "sea_horse", "snoopy", "soccer_ball", "stapler", "starfish", "stegosaurus", "stop_sign",
    "strawberry", "sunflower", "tick", "trilobite", "umbrella", "watch", "water_lilly", "wheelchair", "wild_cat",
    "windsor_chair", "wrench", "yin_yang",
)
_BACKGROUND = "BACKGROUND_Google"
_URL = "https://www.garrickorchard.com/datasets/n-caltech101"


def read_ncaltech101_file(path: Union[str, os.PathLike]) -> np.ndarray:
    """Events of one N-Caltech101 ``.bin`` file, in the recording's own coordinates (x < 240, y < 180), t in us.

    The events are not shifted: tonic's ``NCALTECH101`` subtracts each recording's minimum x and y,
    SpikingJelly's ``NCaltech101`` keeps them on its 240x180 canvas, as here. Damaged files raise
    :class:`~lightning_snn.data.base.DatasetError` naming them (see :func:`read_atis_bin_file`).
    """
    return read_atis_bin_file(path, "N-Caltech101", f"the N-Caltech101 archive ({_URL})")


class NCaltech101DataModule(ClassFolderEventDataModule):
    """N-Caltech101 (Orchard et al., Front. Neurosci. 2015): 8,709 recordings, 2x180x240, 101 classes.

    Caltech101 images shown on a monitor to an ATIS sensor making three saccades (~300 ms), each image
    resized to at most 240x180 (Orchard et al. 2015). Frames are binned on that 240x180 canvas, as
    SpikingJelly's ``NCaltech101`` (``get_H_W() == (180, 240)``) and the TET-style pipelines built on it.

    There is no official split. The usual protocol of the SNN papers that train on SpikingJelly frames is a
    9:1 split of each class (SpikingJelly's ``split_to_train_test_set(0.9, ...)``), which is the default
    here: ``split: random`` draws a fixed per-class subset from ``split_seed``; ``split: first`` takes the
    first recordings of each class in file-name order, SpikingJelly's ``random_split=False``.

    Defaults follow the CIFAR10-DVS recipe of TET (Deng et al., ICLR 2022) that N-Caltech101 papers reuse:
    T = 10 frames with equal event counts, resized to 48x48 (``size``: the 240x180 canvas is squeezed, not
    cropped, as ``transforms.Resize((48, 48))`` does), training frames flipped horizontally (p 0.5) and
    rolled by up to +-5 px. ``background: false`` leaves out ``BACKGROUND_Google`` (100 classes), which
    some papers do; its folder is then not read.

    N-Caltech101 cannot be downloaded here: ``download: true`` is refused with instructions.

    Args:
        root: directory containing ``Caltech101/<class>/*.bin``.
        T: number of frames per sample (the model's ``T`` must be the same).
        split_by: ``"number"`` (equal event counts) or ``"time"``.
        size: output ``(height, width)`` or one int (48 by default); None keeps 180x240.
        polarity: one channel per polarity (2) or merged (1).
        denoise_filter_time: tonic ``Denoise`` filter time in us; None disables.
        background: include the ``BACKGROUND_Google`` class (101 classes) or not (100).
        split: ``"random"`` or ``"first"`` (see above).
        train_ratio: fraction of each class in the training split.
        split_seed: seed of the ``random`` split.
        flip: probability of a horizontal flip of the training frames.
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

    dataset_name = "N-Caltech101"
    folder_name = "Caltech101"
    sensor_size = (240, 180)
    n_classes = len(NCALTECH101_CLASSES)
    url = _URL
    manual_download = ("(not fetched by lightning-snn, nor by SpikingJelly). Download Caltech101.zip from {url}, extract it under "
                       "{root} (giving {root}/Caltech101/accordion/image_0001.bin, ...)")
    classes = NCALTECH101_CLASSES
    suffix = ".bin"

    def __init__(
        self,
        root: str = "data",
        T: int = 10,
        split_by: SplitBy = "number",
        size: Size = 48,
        polarity: bool = True,
        denoise_filter_time: Optional[float] = None,
        background: bool = True,
        split: Literal["random", "first"] = "random",
        train_ratio: float = 0.9,
        split_seed: int = 0,
        flip: float = 0.5,
        roll: int = 5,
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
        self.background = bool(background)
        if not self.background:
            self.classes = tuple(c for c in NCALTECH101_CLASSES if c != _BACKGROUND)
            self.not_classes = (_BACKGROUND,)
            self.num_classes = len(self.classes)
        self.set_split(split, train_ratio, split_seed)
        self.save_hyperparameters()

    def reader(self) -> Callable[[str], np.ndarray]:
        return read_ncaltech101_file

    def extra_cache_params(self) -> dict[str, Any]:
        # the frames of a recording do not depend on the class list or the split: entries are shared
        return {"decode": "ATIS 40-bit, unshifted coordinates on a 240x180 canvas"}
