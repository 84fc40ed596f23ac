"""Symmetric uniform fake quantization of weights with a straight-through estimator.

The scheme of the STBP training-and-compression repository (``quantize_tensor``): signed integers in
``[-(2^(b-1) - 1), 2^(b-1) - 1]`` with ``scale = (2^(b-1) - 1) / max|w|``, per tensor or per output
channel, ``w_q = round(w · scale) / scale``. Rounding uses the straight-through estimator (Bengio et al.
2013): gradients pass unchanged inside the clipping range. With the default ``max`` range nothing is
clipped; ``percentile`` sets the range from a percentile of ``|w|`` and clips (and zeroes the gradient
of) the weights beyond it.

Layers are quantized with :mod:`torch.nn.utils.parametrize`, so the float "shadow" parameter keeps its
identity (an optimizer built before quantization keeps training it) and every method and backbone
that reads ``module.weight`` sees the quantized value.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "QuantSpec",
    "FakeQuantize",
    "quantize_symmetric",
    "quantize_model",
    "quantized_layers",
    "is_quantized",
]


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize one tensor.

    Args:
        bits: bit width, 2..8 (integers fit int8).
        per_channel: one scale per output channel (dim 0) instead of one per tensor.
        percentile: ``None`` sets the range to ``max|w|`` (STBP repository); a value in (0, 100) uses that
            percentile of ``|w|`` and clips beyond it.
    """

    bits: int = 8
    per_channel: bool = False
    percentile: float | None = None

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ValueError(f"quantization bits must be in 2..8, got {self.bits}")
        if self.percentile is not None and not 0.0 < self.percentile < 100.0:
            raise ValueError(f"percentile must be in (0, 100), got {self.percentile}")

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1


def _range(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    a = w.detach().abs()
    flat = a.reshape(a.shape[0], -1) if spec.per_channel and w.dim() > 1 else a.reshape(1, -1)
    if spec.percentile is None:
        r = flat.amax(dim=1)
    else:
        r = torch.quantile(flat.float(), spec.percentile / 100.0, dim=1).to(w.dtype)
    r = torch.where(r > 0, r, torch.ones_like(r))  # an all-zero tensor quantizes to zeros with scale qmax
    shape = (-1,) + (1,) * (w.dim() - 1) if spec.per_channel and w.dim() > 1 else ()
    return r.reshape(shape) if shape else r.reshape(())


def quantize_symmetric(w: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes (int8) and scale such that ``w ≈ codes / scale``."""
    scale = spec.qmax / _range(w, spec)
    codes = torch.clamp(torch.round(w.detach() * scale), -spec.qmax, spec.qmax)
    return codes.to(torch.int8), scale.to(torch.float32)


class _RoundSTE(torch.autograd.Function):
    """``clamp(round(x), -q, q)`` forward; gradient 1 inside ``[-q, q]`` and 0 outside."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, qmax: int) -> torch.Tensor:
        inside = x.abs() <= qmax + 0.5
        ctx.save_for_backward(inside)
        return torch.clamp(torch.round(x), -qmax, qmax)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None


class FakeQuantize(nn.Module):
    """Parametrization ``w -> round(w · s) / s`` with the straight-through estimator."""

    def __init__(self, spec: QuantSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = (self.spec.qmax / _range(w, self.spec)).to(torch.float32)
        codes = _RoundSTE.apply(w * scale.to(w.dtype), self.spec.qmax)
        return codes / scale.to(w.dtype)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.spec).items())


def is_quantized(module: nn.Module, name: str = "weight") -> bool:
    return parametrize.is_parametrized(module, name) and any(
        isinstance(p, FakeQuantize) for p in module.parametrizations[name]
    )


def quantized_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` of every layer whose weight is fake-quantized."""
    for name, m in model.named_modules():
        if is_quantized(m, "weight"):
            yield name, m


def quantize_model(
    model: nn.Module,
    spec: QuantSpec,
    quantize_bias: bool = True,
    layer_types: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Conv1d, nn.Linear),
) -> list[str]:
    """Fake-quantize the weight (and bias) of every layer of ``layer_types`` in place; returns their names.

    Layers already quantized are skipped, so calling it twice is harmless. Biases use a per-tensor scale
    of their own, as in the STBP repository.
    """
    names = []
    bias_spec = QuantSpec(spec.bits, per_channel=False, percentile=spec.percentile)
    for name, m in model.named_modules():
        if not isinstance(m, layer_types) or is_quantized(m, "weight"):
            continue
        parametrize.register_parametrization(m, "weight", FakeQuantize(spec))
        if quantize_bias and getattr(m, "bias", None) is not None:
            parametrize.register_parametrization(m, "bias", FakeQuantize(bias_spec))
        names.append(name)
    return names
