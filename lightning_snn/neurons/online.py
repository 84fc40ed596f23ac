"""Neurons with the temporal path of the gradient cut, for online training through time (SLTT, OTTT).

Forward, these are the IF / LIF neurons of ``nodes.py`` (same charge / fire / reset equations, same
arguments). Backward, the membrane potential carried from one step to the next is a constant:

    H[t] = c + λ·(sg(V[t-1]) - c) + k·X[t]          sg = stop-gradient

so the only gradient path through a neuron is the spatial one of its own step,

    ∂L/∂X[t] = k·σ'(H[t] - V_th)·∂L/∂S[t],          ∂L/∂V_th = -Σ_t σ'(H[t] - V_th)·∂L/∂S[t].

This is the neuron of SLTT (Meng et al., ICCV 2023, Sec. 4.1, Eq. 10: the temporal components
``∂u[t+1]/∂u[t]`` are dropped; official ``SLTTNeuron``: ``self.v = self.v.detach() * (1 - 1/tau) + x``) and
the neuron of OTTT (Xiao et al., NeurIPS 2022, Sec. 4.1: ``OnlineLIFNode`` charges from ``v.detach()``
as well; the presynaptic traces of OTTT live in :mod:`lightning_snn.methods.ottt`). The reset term only
acts on ``V[t]``, which the next step treats as a constant, so ``detach_reset`` has no effect on gradients.

Multi-step mode runs the forward sweep of ``nodes.py`` once and keeps only ``H`` for backward, whose cost
is one element-wise product per step (no reverse sweep). Single-step mode is plain autograd. The stored
``V`` never carries a graph, so a step's graph is freed by its own backward pass. Registered as
``online_if`` / ``online_lif``; the ``triton`` backend is refused (its kernels compute the BPTT backward).
"""
from __future__ import annotations

from typing import Any

import torch

from .factory import register_neuron
from .backends.eager import sweep
from .nodes import BaseNode, IFNode, LIFNode

__all__ = ["OnlineIFNode", "OnlineLIFNode", "OnlineNode", "cut_neuron_type"]


class _TemporallyCutNeuron(torch.autograd.Function):
    """Multi-step neuron whose backward keeps only the spatial path (module docstring)."""

    @staticmethod
    def forward(ctx, x_seq, v_init, v_threshold, decay, input_scale, v_reset, surrogate):
        s_seq, h_seq, v = sweep(x_seq, v_init, v_threshold, decay, input_scale, v_reset, keep_h=True)
        ctx.save_for_backward(h_seq, v_threshold)
        ctx.cfg = (input_scale, surrogate, x_seq.dtype)
        ctx.mark_non_differentiable(v)
        return s_seq.to(x_seq.dtype), v

    @staticmethod
    def backward(ctx, grad_s_seq, grad_v_last):
        h_seq, v_threshold = ctx.saved_tensors
        input_scale, surrogate, x_dtype = ctx.cfg
        g_h = grad_s_seq.to(h_seq.dtype) * surrogate.derivative(h_seq - v_threshold.to(h_seq.dtype))
        grad_th = None
        if ctx.needs_input_grad[2]:
            grad_th = (-g_h.sum()).reshape(v_threshold.shape).to(v_threshold.dtype)
        grad_x = g_h * input_scale if input_scale != 1.0 else g_h
        return grad_x.to(x_dtype), None, grad_th, None, None, None, None


class OnlineNode(BaseNode):
    """Mixin over :class:`BaseNode`: the membrane potential enters every step as a constant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.backend == "triton":
            raise ValueError(
                f"{type(self).__name__}: backend 'triton' computes the BPTT backward; the online neurons run "
                "backend 'torch' (their backward is one product per step)"
            )

    def _multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and (x_seq.requires_grad or self.v_threshold.requires_grad)):
            return super()._multi_step(x_seq)  # nothing to differentiate: the shared sweep
        if x_seq.dim() < 2:
            raise ValueError(f"{type(self).__name__} in multi-step mode expects [T, B, ...], got {tuple(x_seq.shape)}")
        v0 = self._initial_v(x_seq[0]).detach()
        spikes, self.v = _TemporallyCutNeuron.apply(
            x_seq, v0, self.v_threshold, self.decay, self.input_scale, self.v_reset, self.surrogate
        )
        return spikes

    def _single_step(self, x: torch.Tensor) -> torch.Tensor:
        v = self._initial_v(x).detach()
        th = self.v_threshold
        c = 0.0 if self.v_reset is None else self.v_reset
        h = c + self.decay * (v - c) + self.input_scale * x
        spike = self.surrogate(h - th)
        with torch.no_grad():  # V[t] only feeds the next step, where it is a constant
            s = spike.detach()
            self.v = h - s * th if self.v_reset is None else h * (1.0 - s) + self.v_reset * s
        return spike.to(x.dtype)


class OnlineIFNode(OnlineNode, IFNode):
    """IF neuron with the temporal gradient path cut (SLTT / OTTT; module docstring)."""


class OnlineLIFNode(OnlineNode, LIFNode):
    """LIF neuron with the temporal gradient path cut (SLTT / OTTT; module docstring). Arguments as :class:`LIFNode`."""


register_neuron("online_if", OnlineIFNode)
register_neuron("online_lif", OnlineLIFNode)

#: neuron type of a BPTT spec -> its temporally cut twin
_CUT_TYPES = {"lif": "online_lif", "if": "online_if", "online_lif": "online_lif", "online_if": "online_if"}


def cut_neuron_type(kind: str, method: str) -> str:
    """The registered name of the temporally cut twin of neuron type ``kind`` (``ValueError`` if none)."""
    try:
        return _CUT_TYPES[kind.lower()]
    except KeyError:
        raise ValueError(
            f"{method}: neuron.type {kind!r} has no temporally cut version; use 'lif' or 'if' "
            "(the method swaps in online_lif / online_if)"
        ) from None
