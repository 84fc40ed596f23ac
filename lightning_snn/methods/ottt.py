"""OTTT: online training through time (Xiao et al., NeurIPS 2022; github.com/pkuxmq/OTTT-SNN).

OTTT trains with the temporal path of the gradient cut, as SLTT, and in addition replaces the
presynaptic spikes in every weight gradient by their *traces* (Sec. 4.1, Eq. 8-9):

    â_l[t] = λ·â_l[t-1] + s_l[t]                         presynaptic trace (λ: the neurons' leak; 1 for IF)
    δ_{l+1}[t] = ∂L_t/∂u_{l+1}[t]                       instantaneous error, spatial backprop at step t
    ∇W_l = Σ_t δ_{l+1}[t] · â_l[t]^T                    (OTTT_A: accumulated over t, one update per batch)
    W_l ← W_l - η·δ_{l+1}[t] · â_l[t]^T  at every t     (OTTT_O: an update at every time step)

The trace carries the temporal credit that the cut removed, with memory independent of T; the
update is "three-factor" (presynaptic trace, postsynaptic surrogate derivative, a global error).

Implementation (ARCHITECTURE.md: neuron swap + hooks around layers, the backbone unchanged):

* the neurons are swapped for their temporally cut twins (``online_lif`` / ``online_if``);
* during a training batch, every convolution / linear layer fed by spikes gets a forward pre-hook and
  a forward hook (:class:`PresynapticTraces`). The pre-hook updates the trace of the layer's *input*
  (pooling, scaling, flattening and dropout between a neuron and the layer are linear, so the trace of
  the input is the same linear map of the neurons' traces) and hands the layer an input whose value
  is the trace and whose gradient flows to the real input; the forward hook replaces the output's
  value by the layer applied to the real input (computed without a graph). So the forward pass is
  unchanged, the input gradient is the ordinary spatial one, and the weight gradient is
  ``δ · â^T`` — the official ``WrapedSNNOp`` / ``Replace`` construction;
* layers that run before any neuron at a time step (the first convolution, fed by the data) keep
  the instantaneous input, as the official code (its first convolution is not wrapped); so does a layer
  that a backbone marks ``presynaptic_trace = False`` because its input is not a spike train (the NF-ResNet
  classifier reads the pooled residual stream, and the official code does not wrap it either).

Both variants run under manual optimisation (:mod:`lightning_snn.methods._online`): ``variant: A``
accumulates the per-step gradients and updates once per batch; ``variant: O`` updates after every time
step (``-online_update``). The trace decay is the neurons' leak λ, which must be the same for all of them.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import nn

from ..neurons import BaseNode
from ._online import OnlineThroughTime

__all__ = ["OTTT", "OTTT_LIF", "PresynapticTraces"]

#: the neuron of the official commands: ``OnlineLIFNode`` with ``-tau 2`` (λ = 0.5), ``decay_input=False``,
#: reset by subtraction (``v_reset=None``), V_th = 1, ``detach_reset=True``, ``surrogate.Sigmoid()`` (α = 1 in
#: the repository's own ``modules/surrogate.py``)
OTTT_LIF: dict[str, Any] = {
    "type": "lif",
    "tau": 2.0,
    "v_threshold": 1.0,
    "v_reset": None,
    "detach_reset": True,
    "surrogate": {"name": "sigmoid", "alpha": 1.0},
}

#: weight layers whose gradient OTTT computes from presynaptic traces
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class _ValueWithGradientTo(torch.autograd.Function):
    """Forward: ``value``. Backward: the incoming gradient goes to ``carrier`` (the official ``Replace``)."""

    @staticmethod
    def forward(ctx: Any, carrier: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return value

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class PresynapticTraces:
    """Hooks that give every weight layer of ``backbone`` fed by spikes OTTT's weight gradient (module
    docstring). Use as a context manager around one training batch; :meth:`begin_step` before every step.

    Args:
        backbone: the network; its weight layers (:data:`WEIGHT_LAYERS`) and neurons (``BaseNode``) are hooked.
        decay: trace decay λ (the presynaptic neurons' leak factor).
    """

    def __init__(self, backbone: nn.Module, decay: float) -> None:
        self.backbone = backbone
        self.decay = float(decay)
        self.traces: dict[nn.Module, torch.Tensor] = {}
        self._inputs: dict[nn.Module, torch.Tensor] = {}
        self._handles: list[Any] = []
        self._after_neuron = False

    def __enter__(self) -> PresynapticTraces:
        for m in self.backbone.modules():
            if isinstance(m, BaseNode):
                self._handles.append(m.register_forward_hook(self._neuron_ran))
            elif isinstance(m, WEIGHT_LAYERS):
                self._handles.append(m.register_forward_pre_hook(self._before_layer))
                self._handles.append(m.register_forward_hook(self._after_layer))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.traces.clear()
        self._inputs.clear()

    def begin_step(self) -> None:
        """A new time step starts: the layers before the first neuron see the data again."""
        self._after_neuron = False

    def _neuron_ran(self, module: nn.Module, args: Any, output: Any) -> None:
        self._after_neuron = True

    def _before_layer(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not (self._after_neuron and torch.is_grad_enabled()) or not getattr(module, "presynaptic_trace", True):
            return None  # fed by the data or by real values (or no gradient wanted): the instantaneous input
        x = args[0]
        previous = self.traces.get(module)
        with torch.no_grad():
            x_acc = x.detach().to(torch.promote_types(x.dtype, torch.float32))
            trace = x_acc if previous is None else previous.mul(self.decay).add_(x_acc)  # â[t] = λ·â[t-1] + s[t]
        self.traces[module] = trace
        self._inputs[module] = x
        return (_ValueWithGradientTo.apply(x, trace.to(x.dtype)), *args[1:])

    def _after_layer(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        x = self._inputs.pop(module, None)
        if x is None:
            return None
        with torch.no_grad():
            value = module.forward(x)  # the layer on the real input (hooks are not re-entered)
        return _ValueWithGradientTo.apply(output, value)


class OTTT(OnlineThroughTime):
    """OTTT training, variants A and O (module docstring).

    Args:
        variant: ``"A"`` (gradients accumulated over the T steps, one update per batch; the official
            default) or ``"O"`` (an optimiser update after every time step; ``-online_update``).
        **kwargs: see :class:`~lightning_snn.methods._online.OnlineThroughTime`. ``neuron`` defaults to
            :data:`OTTT_LIF`; the loss to the official ``(1 - λ)·CE + λ·MSE(one-hot)`` per step with
            λ = 0.05 (``-loss_lambda``; 0.001 on DVS-CIFAR10); ``backbone`` to ``ottt_vgg11_ws``.
    """

    default_neuron = OTTT_LIF
    method_name = "OTTT"

    def __init__(self, *args: Any, variant: Literal["A", "O"] = "A", **kwargs: Any) -> None:
        if variant not in ("A", "O"):
            raise ValueError(f"OTTT: variant must be 'A' (accumulate over time) or 'O' (update every step), got {variant!r}")
        kwargs.setdefault("backbone", "ottt_vgg11_ws")
        kwargs.setdefault("mse_target", "onehot")
        super().__init__(*args, **kwargs)
        self.variant = variant
        self.updates_every_step = variant == "O"
        self._traces: PresynapticTraces | None = None
        self.trace_decay = self._trace_decay()

    def _trace_decay(self) -> float:
        decays = {float(m.decay) for m in self.backbone.modules() if isinstance(m, BaseNode)}
        if len(decays) != 1:
            raise ValueError(
                "OTTT: the presynaptic trace decays with the neurons' leak factor, so all neurons need the same one; "
                f"found {sorted(decays) or 'no neurons'}"
            )
        return decays.pop()

    @contextlib.contextmanager
    def online_context(self) -> Iterator[PresynapticTraces]:
        with PresynapticTraces(self.backbone, self.trace_decay) as traces:
            self._traces = traces
            try:
                yield traces
            finally:
                self._traces = None

    def begin_step(self, t: int) -> None:
        if self._traces is not None:
            self._traces.begin_step()
