"""Batch normalisation for spiking networks: tdBN and BN through time.

Both normalise a multi-step tensor ``[T, B, C, ...]`` with statistics shared over time, i.e. over
(T, B, H, W) per channel, by folding T into the batch dimension. In single-step mode (``[B, C, ...]``)
each call normalises one time step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .nodes import StepMode

__all__ = ["ThresholdDependentBatchNorm", "BatchNormThroughTime"]


class BatchNormThroughTime(nn.modules.batchnorm._BatchNorm):
    """Plain BatchNorm applied to every time step with statistics over (T, B, spatial dims).

    Works for ``[T, B, C]`` (after linear layers) and ``[T, B, C, H, W]`` (after convolutions).
    Running statistics follow :class:`torch.nn.BatchNorm2d` (biased variance to normalise, unbiased
    variance in the running estimate).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.step_mode: StepMode = step_mode

    def _check_input_dim(self, input: torch.Tensor) -> None:  # noqa: A002 - torch's signature
        if input.dim() < 2 or input.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: expected {self.num_features} channels at dim 1 of the (time-folded) "
                f"input, got shape {tuple(input.shape)}"
            )

    def output_scale(self) -> float:
        return 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "m":
            if x.dim() < 3:
                raise ValueError(f"{type(self).__name__} in multi-step mode expects [T, B, C, ...], got {tuple(x.shape)}")
            return self._normalise(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        return self._normalise(x)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if self.momentum is None:
            factor = 0.0
        else:
            factor = self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        scale = self.output_scale()
        weight = self.weight
        if scale != 1.0:
            weight = torch.full((self.num_features,), scale, device=x.device, dtype=x.dtype) if weight is None else weight * scale
        bias = self.bias
        return F.batch_norm(
            x,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            weight,
            bias,
            use_batch_stats,
            factor,
            self.eps,
        )


class ThresholdDependentBatchNorm(BatchNormThroughTime):
    """Threshold-dependent BatchNorm (tdBN, Zheng et al. AAAI 2021, Eq. 5-6).

    ``y = λ · α·V_th·(x - E[x]) / sqrt(Var[x] + ε) + β`` with mean and variance taken over
    (T, B, H, W) per channel. ``alpha`` is 1 in plain layers and 1/sqrt(2) on the two branches that are
    summed before a neuron in a residual block; ``v_threshold`` is the threshold of the neuron that the
    output drives. ``α·V_th`` is a fixed factor, ``λ`` (``weight``) and ``β`` (``bias``) are learned.
    """

    def __init__(
        self,
        num_features: int,
        alpha: float = 1.0,
        v_threshold: float = 1.0,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(num_features, eps, momentum, affine=True, track_running_stats=True, step_mode=step_mode)
        self.alpha = float(alpha)
        self.v_threshold = float(v_threshold)

    def output_scale(self) -> float:
        return self.alpha * self.v_threshold

    def extra_repr(self) -> str:
        return super().extra_repr() + f", alpha={self.alpha:g}, v_threshold={self.v_threshold:g}"
