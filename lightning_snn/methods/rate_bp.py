"""Rate-based backpropagation (Rate-BP; Yu, Liu, Wang, Li, Wang, NeurIPS 2024, arXiv 2410.11488).

BPTT stores and differentiates every time step (backward memory and time O(L·T)). Rate-BP keeps the
T-step spiking forward but backpropagates once through a graph of time-averaged (rate) quantities,
whose cost does not grow with T:

1. **spike pass** under ``torch.no_grad()``: the backbone runs all T steps; forward hooks record, per
   neuron, the firing rate ``r`` and the eligibility ``e = ∂r/∂c`` (the surrogate derivative accumulated
   through the membrane leak), and per BN layer the spike-pass batch statistics;
2. **rate pass**: the same modules run once on the time-averaged input, with every neuron returning
   ``r`` (gradient ``e``) and every BN using the spike statistics (straight-through), then one backward.

The hooks and overrides live in :mod:`lightning_snn.methods._rate_graph` (ARCHITECTURE.md mechanism 2) and
exist only during the training forward: the backbone itself is the ordinary shared one, evaluation is the
ordinary T-step spiking forward, and ``rate: false`` trains the very same module with plain BPTT (identical
to :class:`~lightning_snn.methods.BPTT`), so the two can be compared with one flag.

Both step modes of the Rate-BP repository are supported (``step_mode: m`` loops over T inside the layers,
``step_mode: s`` outside). The rate pass feeds the backbone a length-1 sequence ``[1, B, ...]`` of the mean
input, so it runs in the backbone's own step mode without switching anything.

Loss-gradient scale. With ``--rate_flag`` the repository replaces the loss by
``loss.detach() + loss/T − (loss/T).detach()``: the value is unchanged, the gradient is divided by T.
``grad_scale: "1/T"`` (default) reproduces that; ``"none"`` keeps the unscaled rate gradient. The scale is
applied to the gradient entering the network output, which for a loss of the output is the same thing
(the logged loss value is untouched). At T = 1 both settings give exactly the BPTT gradient. Note that
SGD weight decay is not scaled, so "1/T" is not simply a learning-rate change.

Differences to the repository (methods/rev_rate.md B2/B6): the rate pass of single-step mode uses the
mean input frame (the repository uses the last frame, which differs for event data), and single-step BN
uses the time-averaged per-step statistics (the repository's HEAD uses the last step's and adds eps
twice); the network output keeps the spiking value exactly (value swap) in both modes; the eligibility
uses the neuron's own surrogate derivative (the repository hard-codes the sigmoid with α = 4, the same
thing for its neuron) and honours ``detach_reset`` for hard reset too.

Verified by the tests: at T = 1 the gradients equal BPTT's (to float64 round-off; bit for bit without BN),
at T > 1 they equal an independent implementation of the paper's equations, and the tensors saved for
backward are identical whatever T is.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch

from .bptt import BPTT
from ._rate_graph import RATE_BP_LIF, RateGraph, rate_bp_forward

__all__ = ["RATE_BP_LIF", "RateBP", "RateGraph", "rate_bp_forward"]


class RateBP(BPTT):
    """Rate-based backpropagation on any shared backbone; ``rate=False`` gives plain BPTT.

    Args:
        rate: train with Rate-BP (True) or with BPTT through time on the same module (False).
        grad_scale: ``"1/T"`` (the repository's scaling of the loss gradient in rate mode) or ``"none"``.
            Only used when ``rate`` is True.
        neuron: neuron spec; None gives the repository's LIF (:data:`RATE_BP_LIF`: decay 0.2, θ 1, soft
            reset, detached reset, sigmoid surrogate α = 4).
        surrogate, detach_reset: overrides of the neuron spec, as in :class:`BPTT`.
        **kwargs: see :class:`~lightning_snn.methods.SpikingClassifier`. ``loss`` must be ``"ce"`` in rate
            mode (the rate graph has one output, the time-averaged logits; there is no per-step TET loss).
    """

    def __init__(
        self,
        *args: Any,
        rate: bool = True,
        grad_scale: Literal["1/T", "none"] = "1/T",
        **kwargs: Any,
    ) -> None:
        if grad_scale not in ("1/T", "none"):
            raise ValueError(f"grad_scale must be '1/T' (the paper's code) or 'none', got {grad_scale!r}")
        self.rate = bool(rate)
        self.grad_scale = grad_scale
        super().__init__(*args, **kwargs)
        if self.rate and self.loss_kind != "ce":
            raise ValueError(
                f"Rate-BP trains on the time-averaged output: loss must be 'ce', got {self.loss_kind!r} "
                "(use rate: false for BPTT with TET)"
            )

    def neuron_spec(self, neuron: Mapping[str, Any] | None) -> Any:
        return super().neuron_spec(RATE_BP_LIF if neuron is None else neuron)

    def uses_rate_graph(self) -> bool:
        """Whether the next forward builds the rate graph (rate mode, training, autograd on)."""
        return self.rate and self.training and torch.is_grad_enabled()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training with ``rate=True``: ``[1, B, K]`` outputs carrying the rate graph (value: the spiking
        mean output). Otherwise the per-step spiking outputs ``[T, B, K]`` with the ordinary BPTT graph.
        """
        if not self.uses_rate_graph():
            return super().forward(x)
        x_seq = self.encode(x)
        scale = 1.0 / x_seq.shape[0] if self.grad_scale == "1/T" else 1.0
        return rate_bp_forward(self.backbone, x_seq, grad_scale=scale)
