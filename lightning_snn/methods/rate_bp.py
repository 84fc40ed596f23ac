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
input (or, as an option, the last input frame), so it runs in the backbone's own step mode without
switching anything.

Single-step options (``step_mode: s`` only; multi-step mode has one computation). The repository's
single-step code differs from its multi-step code in two places, and both are offered:

* ``rate_bn_stats``: ``"official_last_step"`` reproduces the repository's HEAD (``model/model_setting.py``):
  the rate pass normalises with the *last* step's BN mean and ``1/sqrt(σ²_T + 2·eps)``, because the BN
  module's ``curr_time_step`` is never advanced (its running averages keep only the last step) and the
  variance already holds ``+eps`` when ``calcu_rate`` adds eps again. This is a bug of the repository; the
  configs that mirror its single-step commands use it by default because the published numbers came from
  it. ``"time_average"`` (default) uses what that code intends: the time average of the per-step means
  and the harmonic mean of ``σ²_t + eps``, which at T = 1 is exactly BPTT's BN.
* ``rate_input``: ``"last_frame"`` feeds the rate pass the last input frame, as the repository's
  single-step model hook does (it starts the rate pass at step T with that step's input); ``"mean_frame"``
  (default) feeds the mean frame, as its multi-step mode does. Identical for static images (direct
  encoding repeats the image), different for event frames.

Measured on one float64 step, same weights and batch (``benchmarks/rate_bp_single_step_options.py``,
``benchmarks/results/rate_bp_single_step_options.json``; freshly initialised nets, synthetic inputs, batch 8):
the loss and the logits are identical (the forward is the spike pass); the gradients are not. CIFAR
ResNet-18 (T = 4): official against library differs by up to 0.19 relative L2 on single tensors, 0.14 on
the first conv, 0.07 on the whole gradient, all from ``rate_bn_stats`` (``rate_input`` changes nothing for
static images). CIFAR10-DVS VGGSNN (T = 10, event frames): 2.7-2.9 on the first conv, up to 3.3 on single
tensors, 0.12-0.15 on the whole gradient, mostly from ``rate_input`` (``rate_bn_stats`` alone: 0.06-0.07 on
the first conv, up to 1.5 on single tensors). Three seeds for the ResNet, two for the VGGSNN.

Loss-gradient scale. With ``--rate_flag`` the repository's CIFAR script (``experiment/cifar/main.py``,
``CustomEvaluator``) replaces the loss by ``loss.detach() + loss/T − (loss/T).detach()``: the value is
unchanged, the gradient is divided by T. ``grad_scale: "1/T"`` (default) reproduces that; ``"none"``
keeps the unscaled rate gradient, which is what its CIFAR10-DVS script (``experiment/dvs/main.py``, plain
``CrossEntropyLoss``) trains with. The scale is
applied to the gradient entering the network output, which for a loss of the output is the same thing
(the logged loss value is untouched). At T = 1 both settings give exactly the BPTT gradient. Note that
SGD weight decay is not scaled, so "1/T" is not simply a learning-rate change.

Differences to the repository (methods/rev_rate.md B2/B6), beyond the two single-step options above: the
network output keeps the spiking value exactly (value swap) in both modes; the eligibility
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
from ._rate_graph import BN_STATS, RATE_BP_LIF, RATE_INPUTS, RateGraph, rate_bp_forward

__all__ = ["BN_STATS", "RATE_BP_LIF", "RATE_INPUTS", "RateBP", "RateGraph", "rate_bp_forward"]


class RateBP(BPTT):
    """Rate-based backpropagation on any shared backbone; ``rate=False`` gives plain BPTT.

    Args:
        rate: train with Rate-BP (True) or with BPTT through time on the same module (False).
        grad_scale: ``"1/T"`` (the repository's scaling of the loss gradient in rate mode) or ``"none"``.
            Only used when ``rate`` is True.
        rate_bn_stats: single-step mode: ``"time_average"`` (the library's; BPTT's BN at T = 1) or
            ``"official_last_step"`` (the repository's: last step's statistics, eps added twice, from a BN
            step counter that is never advanced; a bug, reproduced by the mirroring configs). See above.
        rate_input: single-step mode: ``"mean_frame"`` (the library's) or ``"last_frame"`` (the
            repository's) as the rate-pass input. See above.
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
        rate_bn_stats: Literal["time_average", "official_last_step"] = "time_average",
        rate_input: Literal["mean_frame", "last_frame"] = "mean_frame",
        **kwargs: Any,
    ) -> None:
        if grad_scale not in ("1/T", "none"):
            raise ValueError(f"grad_scale must be '1/T' (the paper's code) or 'none', got {grad_scale!r}")
        if rate_bn_stats not in BN_STATS:
            raise ValueError(f"rate_bn_stats must be one of {BN_STATS}, got {rate_bn_stats!r}")
        if rate_input not in RATE_INPUTS:
            raise ValueError(f"rate_input must be one of {RATE_INPUTS}, got {rate_input!r}")
        self.rate = bool(rate)
        self.grad_scale = grad_scale
        self.rate_bn_stats = rate_bn_stats
        self.rate_input = rate_input
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
        if self.step_mode != "s":  # multi-step mode: one BN call (eps once) and the mean frame, as the repository
            return rate_bp_forward(self.backbone, x_seq, grad_scale=scale)
        return rate_bp_forward(
            self.backbone, x_seq, grad_scale=scale, bn_stats=self.rate_bn_stats, rate_input=self.rate_input
        )
