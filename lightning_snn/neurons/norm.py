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

__all__ = ["ThresholdDependentBatchNorm", "BatchNormThroughTime", "SyncBatchNormThroughTime"]


def _batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, scale: float) -> torch.Tensor:
    """Batch norm of ``x`` (``[N, C, ...]``) with ``bn``'s parameters and running statistics, the affine
    weight multiplied by ``scale`` (tdBN's α·V_th)."""
    bn._check_input_dim(x)
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            factor = 1.0 / float(bn.num_batches_tracked)
    use_batch_stats = bn.training or bn.running_mean is None
    weight = bn.weight
    if scale != 1.0:
        weight = torch.full((bn.num_features,), scale, device=x.device, dtype=x.dtype) if weight is None else weight * scale
    return F.batch_norm(
        x,
        bn.running_mean if not bn.training or bn.track_running_stats else None,
        bn.running_var if not bn.training or bn.track_running_stats else None,
        weight,
        bn.bias,
        use_batch_stats,
        factor,
        bn.eps,
    )


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
        return _batch_norm(self, x, self.output_scale())


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


class SyncBatchNormThroughTime(nn.SyncBatchNorm):
    """:class:`BatchNormThroughTime` / :class:`ThresholdDependentBatchNorm` with statistics synchronised over
    the processes of a distributed run: torch's ``SyncBatchNorm`` on the time-folded input, followed by the
    fixed output scale (``α·V_th`` for tdBN: ``y = s·(BN(x) - β) + β``, the same as scaling ``λ`` by ``s``).

    Made by :meth:`from_local` (parameters and buffers are shared, names unchanged, so checkpoints load either
    way) and turned back by :meth:`to_local`. torch synchronises on GPU only; a multi-process CPU run raises.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: object | None = None, step_mode: StepMode = "m",
                 scale: float = 1.0) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, process_group)
        self.step_mode: StepMode = step_mode
        self.scale = float(scale)
        self._local_cls: type[BatchNormThroughTime] = BatchNormThroughTime
        self._local_kwargs: dict[str, float] = {}

    @classmethod
    def from_local(cls, bn: BatchNormThroughTime, process_group: object | None = None) -> SyncBatchNormThroughTime:
        sync = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, process_group,
                   bn.step_mode, bn.output_scale())
        sync._local_cls = type(bn)
        if isinstance(bn, ThresholdDependentBatchNorm):
            sync._local_kwargs = {"alpha": bn.alpha, "v_threshold": bn.v_threshold}
        _share_state(bn, sync)
        sync.train(bn.training)
        return sync

    def to_local(self) -> BatchNormThroughTime:
        if issubclass(self._local_cls, ThresholdDependentBatchNorm):
            local = self._local_cls(self.num_features, eps=self.eps, momentum=self.momentum, step_mode=self.step_mode,
                                    **self._local_kwargs)
        else:
            local = self._local_cls(self.num_features, self.eps, self.momentum, self.affine, self.track_running_stats,
                                    step_mode=self.step_mode)
        _share_state(self, local)
        local.train(self.training)
        return local

    def _check_input_dim(self, input: torch.Tensor) -> None:  # noqa: A002 - torch's signature
        if input.dim() < 2 or input.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: expected {self.num_features} channels at dim 1 of the (time-folded) "
                f"input, got shape {tuple(input.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        distributed = self.training and torch.distributed.is_available() and torch.distributed.is_initialized()
        if distributed and x.device.type == "cpu":
            if torch.distributed.get_world_size(self.process_group) > 1:
                raise RuntimeError(
                    "sync_batchnorm: torch synchronises BatchNorm statistics on GPUs only; this run is on CPU with "
                    "several processes (set trainer.sync_batchnorm: false)"
                )
            distributed = False
        if self.step_mode == "m" and x.dim() < 3:
            raise ValueError(f"{type(self).__name__} in multi-step mode expects [T, B, C, ...], got {tuple(x.shape)}")
        folded = x.flatten(0, 1) if self.step_mode == "m" else x
        if distributed:
            y = super().forward(folded)
        else:  # one process: plain batch norm, exactly as the local layer
            y = _batch_norm(self, folded, self.scale)
            return y.unflatten(0, x.shape[:2]) if self.step_mode == "m" else y
        if self.scale != 1.0:
            b = (self.bias if self.bias is not None else torch.zeros_like(self.running_mean)).view(1, -1, *[1] * (y.dim() - 2))
            y = (y - b) * self.scale + b
        return y.unflatten(0, x.shape[:2]) if self.step_mode == "m" else y

    def output_scale(self) -> float:
        return self.scale


def _share_state(src: nn.Module, dst: nn.Module) -> None:
    """Give ``dst`` the very parameters and buffers of ``src`` (same tensors, same names)."""
    for name in ("weight", "bias"):
        if getattr(src, name, None) is not None:
            setattr(dst, name, getattr(src, name))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        if getattr(src, name, None) is not None:
            dst.register_buffer(name, getattr(src, name))
