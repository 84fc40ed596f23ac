"""Quantization-aware training (QAT) of any method and backbone, as a Lightning callback."""
from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from ..quantization import QuantSpec, quantize_model

__all__ = ["QuantizationAwareTraining"]


class QuantizationAwareTraining(L.Callback):
    """Fake-quantize the backbone's convolution and linear weights during training and evaluation.

    At ``setup`` every ``Conv1d``/``Conv2d``/``Linear`` of ``pl_module.backbone`` gets a fake-quantization
    parametrization (:mod:`lightning_snn.quantization.fake_quant`: symmetric, ``2^(b-1) - 1`` levels per
    sign, max-abs range as in the STBP repository, straight-through estimator). The float weights stay
    the trained parameters; the forward pass of every method (BPTT, DSR, Rate-BP, RevSNN's recompute)
    uses the quantized values. Export the result with ``lightning-snn export``.

    A backbone that cannot run with quantized weights sets ``supports_weight_quantization = False``
    (e.g. a feedback network whose equilibrium solver needs its exact float weights) and gets an error.

    Args:
        bits: weight bit width (2..8); the STBP repository publishes 8 and 4.
        per_channel: one scale per output channel instead of per tensor.
        quantize_bias: quantize biases too (their own per-tensor scale), as the STBP repository's README-era
            code (``1de278bf``) does; its HEAD (``8769231b``) leaves biases in float: ``quantize_bias=False``.
        percentile: range from this percentile of ``|w|`` instead of the maximum (clips the rest).
    """

    def __init__(self, bits: int = 8, per_channel: bool = False, quantize_bias: bool = True, percentile: float | None = None) -> None:
        self.spec = QuantSpec(bits, per_channel, percentile)
        self.quantize_bias = quantize_bias
        self.layers: list[str] = []

    def apply(self, pl_module: nn.Module) -> list[str]:
        """Quantize ``pl_module.backbone`` (or the module itself) in place; idempotent."""
        target = getattr(pl_module, "backbone", pl_module)
        if getattr(target, "supports_weight_quantization", True) is False:
            raise ValueError(
                f"QuantizationAwareTraining: backbone {type(target).__name__} does not support weight quantization "
                f"({getattr(target, 'quantization_unsupported_reason', 'declared by the backbone')})"
            )
        new = quantize_model(target, self.spec, self.quantize_bias)
        if not new and not self.layers:
            raise ValueError(f"QuantizationAwareTraining: no Conv/Linear layer found in {type(target).__name__}")
        self.layers += new
        return new

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        new = self.apply(pl_module)
        if new:
            rank_zero_info(f"QuantizationAwareTraining: {len(new)} layers fake-quantized to {self.spec.bits} bits "
                           f"({'per channel' if self.spec.per_channel else 'per tensor'})")
