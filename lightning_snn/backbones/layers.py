"""Step-mode aware building blocks shared by all backbones.

A backbone is written once as a stack of these layers. In multi-step mode (``step_mode="m"``) every
layer receives ``[T, B, ...]``: stateless layers fold T into the batch (SpikingJelly's
``SeqToANNContainer`` convention), neurons run their own time loop. In single-step mode every layer
receives ``[B, ...]`` and the backbone loops over T outside the layers.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..neurons import BatchNormThroughTime, NeuronFactory, StepMode, ThresholdDependentBatchNorm, set_step_mode
from ..neurons.factory import threshold_of

__all__ = ["TimeDistributed", "Flatten", "SpikingBackbone", "conv_bn", "make_norm", "to_pair"]


class TimeDistributed(nn.Module):
    """Apply a stateless module to every time step (folds ``[T, B]`` into the batch in multi-step mode)."""

    def __init__(self, module: nn.Module, step_mode: StepMode = "m") -> None:
        super().__init__()
        self.module = module
        self.step_mode: StepMode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self.module(x)
        y = self.module(x.flatten(0, 1))
        return y.unflatten(0, x.shape[:2])


class Flatten(nn.Module):
    """Flatten all feature dimensions, keeping ``[T, B]`` (multi-step) or ``[B]`` (single-step)."""

    def __init__(self, step_mode: StepMode = "m") -> None:
        super().__init__()
        self.step_mode: StepMode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2) if self.step_mode == "m" else x.flatten(1)


def make_norm(kind: str | None, channels: int, alpha: float = 1.0, v_threshold: float = 1.0) -> nn.Module:
    """``"tdbn"`` (threshold-dependent BN), ``"bn"`` (BN through time) or ``None`` (identity)."""
    if kind is None or kind == "none":
        return nn.Identity()
    if kind == "tdbn":
        return ThresholdDependentBatchNorm(channels, alpha=alpha, v_threshold=v_threshold)
    if kind == "bn":
        return BatchNormThroughTime(channels)
    raise ValueError(f"norm: unknown normalisation {kind!r}; choose 'tdbn', 'bn' or 'none'")


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int | None = None,
    norm: str | None = "tdbn",
    alpha: float = 1.0,
    v_threshold: float = 1.0,
) -> nn.Sequential:
    """Convolution (no bias when normalised) followed by tdBN / BN through time."""
    padding = kernel_size // 2 if padding is None else padding
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=norm in (None, "none"))
    return nn.Sequential(TimeDistributed(conv), make_norm(norm, out_channels, alpha, v_threshold))


def to_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"input_size must be an int or (H, W), got {size}")
    return size  # type: ignore[return-value]


class SpikingBackbone(nn.Module):
    """Base class of every backbone: ``forward(x: [T, B, ...]) -> [T, B, num_classes]``.

    Subclasses define ``body`` (a module written with the step-mode aware layers above). The step mode
    of the whole network is switched with :attr:`step_mode`.
    """

    body: nn.Module

    def __init__(self, num_classes: int, neuron: NeuronFactory, step_mode: StepMode = "m") -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.neuron = neuron
        self._step_mode: StepMode = step_mode

    def spiking(self) -> nn.Module:
        """A new neuron from the factory, in this backbone's step mode."""
        node = self.neuron()
        if hasattr(node, "step_mode"):
            node.step_mode = self._step_mode
        return node

    def threshold(self) -> float:
        return threshold_of(self.neuron())

    @property
    def step_mode(self) -> StepMode:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, mode: StepMode) -> None:
        self._step_mode = mode
        for m in self.modules():
            if m is not self and hasattr(m, "step_mode"):
                m.step_mode = mode

    def finalize(self) -> None:
        """Propagate the step mode to all layers once the body is built."""
        set_step_mode(self.body, self._step_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:
            raise ValueError(f"{type(self).__name__} expects a time-major input [T, B, ...], got shape {tuple(x.shape)}")
        if self._step_mode == "m":
            return self.body(x)
        return torch.stack([self.body(x_t) for x_t in x.unbind(0)])
