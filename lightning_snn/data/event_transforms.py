"""Augmentations of binned event frames ``[T, C, H, W]``, as the DVS recipes apply them.

Every transform draws its random parameters **once per sample** and applies the same geometric change
to all T frames and both polarity channels (a sample is one recording, so all its frames move
together). Random numbers come from torch's generator, which DataLoader workers seed independently.

Where each piece comes from:

* :class:`EventRandomHorizontalFlip` + :class:`EventRandomRoll`: the CIFAR10-DVS recipe of TET
  (Deng et al., "Temporal Efficient Training of Spiking Neural Network via Gradient Re-weighting",
  ICLR 2022) that Rate-BP (Yu et al., NeurIPS 2024) reuses: frames resized to 48x48, flipped along W
  with probability 0.5, then ``torch.roll`` by a random offset in [-5, 5] pixels on both axes
  (wrap-around); nothing at test time.
* :class:`SNNAugmentWide`: RevSNN (Zhang & Zhang, "Memory-Efficient Reversible Spiking Neural
  Networks", AAAI 2024) on CIFAR10-DVS and DVS128 Gesture: ``RandomHorizontalFlip(0.5)`` followed by
  one random operation among Identity, ShearX (+-0.3), TranslateX/Y (+-5 px), Rotate (+-30 deg) and
  Cutout (``RandomErasing(p=1, scale=(0.001, 0.11), ratio=(1, 1))``), magnitude drawn from 31 bins with
  a random sign, nearest-neighbour interpolation, zero fill (a TrivialAugment-Wide variant, Muller &
  Hutter, ICCV 2021, restricted to geometric operations).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Optional

import torch
from torchvision.transforms import Compose, InterpolationMode, RandomErasing
from torchvision.transforms import functional as TF

__all__ = [
    "EventRandomHorizontalFlip",
    "EventRandomRoll",
    "SNNAugmentWide",
    "build_event_train_transform",
]


def _check_frames(frames: torch.Tensor, name: str) -> None:
    if frames.dim() < 3:
        raise ValueError(f"{name} expects event frames [..., C, H, W] (usually [T, C, H, W]), got shape {tuple(frames.shape)}")


class EventRandomHorizontalFlip:
    """Flip all frames of a sample along the width axis with probability ``p`` (TET / RevSNN).

    Beware: on DVS128 Gesture a horizontal flip turns a left-hand gesture into a right-hand one, so
    it changes the label of several classes; the Gesture DataModule leaves it off by default.
    """

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        _check_frames(frames, type(self).__name__)
        if self.p > 0.0 and float(torch.rand(())) < self.p:
            return frames.flip(-1)
        return frames

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class EventRandomRoll:
    """``torch.roll`` of all frames by one random ``(dy, dx)``, each uniform in ``[-max_shift, max_shift]``.

    Pixels leaving one border re-enter at the other (wrap-around), exactly as the TET / Rate-BP
    CIFAR10-DVS code does (``torch.roll(data, shifts=(off1, off2), dims=(2, 3))`` with
    ``off = random.randint(-5, 5)``).
    """

    def __init__(self, max_shift: int = 5) -> None:
        if max_shift < 0:
            raise ValueError(f"roll max_shift must be >= 0, got {max_shift}")
        self.max_shift = int(max_shift)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        _check_frames(frames, type(self).__name__)
        if self.max_shift == 0:
            return frames
        dy, dx = (int(v) for v in torch.randint(-self.max_shift, self.max_shift + 1, (2,)))
        return torch.roll(frames, shifts=(dy, dx), dims=(-2, -1))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_shift={self.max_shift})"


class SNNAugmentWide:
    """RevSNN's ``SNNAugmentWide``: one random geometric op per sample, the same for every frame.

    Operations and magnitude ranges (``num_magnitude_bins`` values each, a random sign for the signed
    ones): Identity; ShearX ``linspace(-0.3, 0.3)`` (shear angle ``degrees(m)``); TranslateX / TranslateY
    ``linspace(-5, 5)`` pixels (truncated to int); Rotate ``linspace(-30, 30)`` degrees; Cutout, a
    ``RandomErasing(p=1, scale=(0.001, 0.11), ratio=(1, 1), value=0)`` square. Affine ops use
    nearest-neighbour interpolation and fill 0 (no events) outside the frame.
    """

    OPS: tuple[str, ...] = ("Identity", "ShearX", "TranslateX", "TranslateY", "Rotate", "Cutout")

    def __init__(self, num_magnitude_bins: int = 31, fill: float = 0.0) -> None:
        if num_magnitude_bins < 2:
            raise ValueError(f"num_magnitude_bins must be >= 2, got {num_magnitude_bins}")
        self.num_magnitude_bins = int(num_magnitude_bins)
        self.fill = float(fill)
        self.cutout = RandomErasing(p=1.0, scale=(0.001, 0.11), ratio=(1.0, 1.0), value=self.fill)

    def _magnitudes(self, op: str) -> torch.Tensor:
        n = self.num_magnitude_bins
        return {
            "ShearX": torch.linspace(-0.3, 0.3, n),
            "TranslateX": torch.linspace(-5.0, 5.0, n),
            "TranslateY": torch.linspace(-5.0, 5.0, n),
            "Rotate": torch.linspace(-30.0, 30.0, n),
        }[op]

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        _check_frames(frames, type(self).__name__)
        op = self.OPS[int(torch.randint(len(self.OPS), ()))]
        if op == "Identity":
            return frames
        if op == "Cutout":
            return self.cutout(frames)
        mags = self._magnitudes(op)
        magnitude = float(mags[int(torch.randint(len(mags), ()))])
        if int(torch.randint(2, ())):
            magnitude = -magnitude
        shape = frames.shape
        flat = frames.reshape(-1, *shape[-3:]) if frames.dim() > 4 else frames  # affine wants [..., C, H, W]
        nearest = InterpolationMode.NEAREST
        if op == "ShearX":
            out = TF.affine(flat, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(magnitude), 0.0],
                            interpolation=nearest, fill=self.fill)
        elif op == "TranslateX":
            out = TF.affine(flat, angle=0.0, translate=[int(magnitude), 0], scale=1.0, shear=[0.0, 0.0],
                            interpolation=nearest, fill=self.fill)
        elif op == "TranslateY":
            out = TF.affine(flat, angle=0.0, translate=[0, int(magnitude)], scale=1.0, shear=[0.0, 0.0],
                            interpolation=nearest, fill=self.fill)
        else:  # Rotate
            out = TF.rotate(flat, magnitude, interpolation=nearest, fill=self.fill)
        return out.reshape(shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_magnitude_bins={self.num_magnitude_bins}, fill={self.fill})"


def build_event_train_transform(
    flip: float = 0.0, roll: int = 0, snn_augment: bool = False
) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """The training augmentation of an event DataModule, in the recipes' order, or None if all are off.

    Args:
        flip: probability of a horizontal flip (TET / Rate-BP / RevSNN use 0.5).
        roll: maximum ``torch.roll`` shift in pixels, 0 disables (TET / Rate-BP use 5).
        snn_augment: apply RevSNN's :class:`SNNAugmentWide` after the flip.
    """
    ops: list[Callable[[torch.Tensor], torch.Tensor]] = []
    if flip > 0.0:
        ops.append(EventRandomHorizontalFlip(flip))
    if roll > 0:
        ops.append(EventRandomRoll(roll))
    if snn_augment:
        ops.append(SNNAugmentWide())
    if not ops:
        return None
    return ops[0] if len(ops) == 1 else Compose(ops)

