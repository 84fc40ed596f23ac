"""Recurrent LIF network for 1-D (auditory) event streams: the RLIF model of Bittar & Garner, "A surrogate
gradient spiking baseline for speech command recognition" (Frontiers in Neuroscience 2022; repository
``idiap/sparch``, ``sparch/models/snns.py``: ``RLIFLayer`` and ``ReadoutLayer``).

Hidden layer ``l`` (``RecurrentLIFLayer``), with ``x`` the layer input at step ``t``::

    I[t] = BN(W x[t]) + V s[t-1]                  feed-forward current (BN over T and B) + recurrence
    H[t] = α ⊙ V_m[t-1] + (1 - α) ⊙ I[t]          charge with a learnable per-neuron leak α
    s[t] = Θ(H[t] - V_th)                          fire (surrogate gradient in backward)
    V_m[t] = H[t] - V_th s[t]                      reset by subtraction

``V`` has a zero diagonal (no self-connection; sparch zeroes it on every forward) and an orthogonal
initialisation; ``α`` is drawn uniformly in ``[exp(-1/τ_min), exp(-1/τ_max)]`` and clamped to that range
on every forward (sparch: τ in [5, 25] steps). Dropout follows the spikes. sparch writes the same update as
``u[t] = α (u[t-1] - s[t-1]) + (1 - α) I[t]`` with ``V_th = 1``; its recurrence is ``s[t-1] @ V`` (the
transpose of ``nn.Linear``'s convention, an orientation that an orthogonal initialisation does not see).

The neuron comes from the library's neuron factory (:mod:`lightning_snn.neurons.factory`), so its threshold,
reset rule, surrogate and ``detach_reset`` are the config's. With the learnable leak (``leak_tau`` set) the
factory must build an IF neuron (``H = V_m + X``): the layer feeds it ``X[t] = (1 - α)(I[t] - V_m[t-1])``,
which makes the neuron's charge exactly the line above. With ``leak_tau: null`` the neuron's own leak
applies, ``H = λ V_m + k I`` (e.g. ``{type: lif, decay: 0.9}``), and ``X[t] = I[t]``. The recurrence needs
``s[t-1]`` before step ``t``, so the neurons run single-step inside each layer's loop over T (the feed-forward
``W x`` and its BN run on the whole sequence at once).

The readout (``LeakyIntegratorReadout``) is a non-spiking leaky integrator ``u[t] = α u[t-1] + (1 - α) BN(W x[t])``
with its own learnable per-neuron α (or the neuron's fixed ``λ``, ``k``). Its per-step output is
``softmax(u[t])`` (``readout: softmax``, sparch: the network's output is ``Σ_t softmax(u[t])``, which the
method reproduces with ``time_readout: sum``) or the membrane ``u[t]`` itself (``readout: membrane``, to be
reduced by ``time_readout: max`` or ``mean``).

Initial state: ``init_state: zeros`` starts every membrane and the previous spikes at 0; ``uniform`` draws
them as sparch does on every forward pass, ``u[0], s[0] ~ U[0, 1)`` (hidden: ``V_m[0] = u[0] - s[0]``, the
state after sparch's reset; readout: ``u[0]``), which makes the output random in evaluation too.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..neurons import BatchNormThroughTime, NeuronFactory, StepMode, build_neuron_factory
from ..neurons.nodes import BaseNode
from .layers import SpikingBackbone, to_pair
from .registry import register_backbone

__all__ = ["LeakyIntegratorReadout", "RecurrentLIFLayer", "RecurrentLIFNet", "rlif_snn"]

InitState = Literal["zeros", "uniform"]
ReadoutKind = Literal["softmax", "membrane"]

#: sparch's neuron: fire at u > 1, reset by subtracting the spike, boxcar surrogate of width 1
SPARCH_NEURON = {"type": "if", "v_threshold": 1.0, "v_reset": None, "surrogate": {"name": "rectangular", "width": 1.0}}


class _LearnableLeak(nn.Module):
    """Per-neuron leak factors α in ``[exp(-1/τ_min), exp(-1/τ_max)]``: uniform init, clamped on use."""

    def __init__(self, size: int, tau: Sequence[float]) -> None:
        super().__init__()
        lo_tau, hi_tau = (float(t) for t in tau)
        if not 0.0 < lo_tau <= hi_tau:
            raise ValueError(f"leak_tau must be (τ_min, τ_max) with 0 < τ_min <= τ_max, got {tuple(tau)}")
        self.bounds = (math.exp(-1.0 / lo_tau), math.exp(-1.0 / hi_tau))
        self.alpha = nn.Parameter(torch.empty(size).uniform_(*self.bounds))

    def forward(self) -> torch.Tensor:
        return self.alpha.clamp(*self.bounds)


def _norm(kind: str | None, size: int) -> nn.Module:
    if kind in (None, "none"):
        return nn.Identity()
    if kind == "bn":  # sparch: BatchNorm1d(momentum=0.05) over the (B·T, H) feed-forward currents
        return BatchNormThroughTime(size, momentum=0.05)
    raise ValueError(f"norm: unknown normalisation {kind!r}; choose 'bn' or 'none'")


class RecurrentLIFLayer(nn.Module):
    """One layer of LIF neurons with a recurrent weight matrix (the update in the module docstring; sparch's ``RLIFLayer``).

    Args:
        in_features, hidden: input and output widths.
        neuron: factory of the layer's neuron (an IF neuron when ``leak_tau`` is given).
        norm: ``"bn"`` (BatchNorm of ``W x`` over T and B, momentum 0.05) or ``None``.
        dropout: dropout probability on the output spikes.
        leak_tau: ``(τ_min, τ_max)`` of the learnable per-neuron leak, or ``None`` for the neuron's own leak.
        bias: bias of the feed-forward ``W``.
        init_state: ``"zeros"`` or ``"uniform"`` (sparch's random initial state).
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        neuron: NeuronFactory,
        norm: str | None = "bn",
        dropout: float = 0.0,
        leak_tau: Sequence[float] | None = (5.0, 25.0),
        bias: bool = False,
        init_state: InitState = "zeros",
    ) -> None:
        super().__init__()
        self.W = nn.Linear(in_features, hidden, bias=bias)
        self.norm = _norm(norm, hidden)
        self.V = nn.Linear(hidden, hidden, bias=False)
        nn.init.orthogonal_(self.V.weight)
        self.register_buffer("off_diagonal", 1.0 - torch.eye(hidden), persistent=False)
        self.node = neuron()
        if not isinstance(self.node, BaseNode):
            raise ValueError(f"RecurrentLIFLayer: the neuron must be an IF/LIF neuron, got {type(self.node).__name__}")
        self.node.step_mode = "s"
        self.leak = None if leak_tau is None else _LearnableLeak(hidden, leak_tau)
        if self.leak is not None and (self.node.decay != 1.0 or self.node.input_scale != 1.0):
            raise ValueError(
                "RecurrentLIFLayer: with leak_tau (a learnable per-neuron leak) the neuron must be an IF neuron "
                f"(neuron.type: if), got leak factor {self.node.decay:g} and input scale {self.node.input_scale:g}; "
                "set leak_tau: null to use the neuron's own leak"
            )
        self.drop = nn.Dropout(dropout)
        self.init_state = init_state

    def recurrent_weight(self) -> torch.Tensor:
        """``V`` with its diagonal zeroed (no self-connections)."""
        return self.V.weight * self.off_diagonal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, in_features] -> [T, B, hidden]`` spikes (after dropout)."""
        current = self.norm(self.W(x))
        v_rec = self.recurrent_weight()
        alpha = None if self.leak is None else self.leak()
        shape = current.shape[1:]
        if self.init_state == "uniform":
            u0 = torch.rand(shape, device=current.device, dtype=current.dtype)
            s = torch.rand(shape, device=current.device, dtype=current.dtype)
            self.node.v = u0 - s
        else:
            s = current.new_zeros(shape)
            rest = 0.0 if self.node.v_reset is None else self.node.v_reset
            self.node.v = torch.full_like(current[0], rest)
        spikes = []
        for i_t in current.unbind(0):
            i_t = i_t + F.linear(s, v_rec)
            if alpha is not None:  # the IF neuron's charge V_m + X becomes α V_m + (1 - α) I
                i_t = (1.0 - alpha) * (i_t - self.node.v)
            s = self.node(i_t)
            spikes.append(s)
        return self.drop(torch.stack(spikes))


class LeakyIntegratorReadout(nn.Module):
    """Non-spiking readout ``u[t] = α u[t-1] + (1 - α) BN(W x[t])`` (sparch's ``ReadoutLayer``).

    With ``leak_tau`` the leak α is learnable per neuron (as the hidden layers'); without it the update is
    ``u[t] = λ u[t-1] + k BN(W x[t])`` with the fixed ``decay`` λ and ``input_scale`` k given. The per-step
    output is ``softmax(u[t])`` (``readout="softmax"``) or ``u[t]`` (``"membrane"``).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        norm: str | None = "bn",
        leak_tau: Sequence[float] | None = (5.0, 25.0),
        decay: float = 1.0,
        input_scale: float = 1.0,
        readout: ReadoutKind = "softmax",
        bias: bool = False,
        init_state: InitState = "zeros",
    ) -> None:
        super().__init__()
        if readout not in ("softmax", "membrane"):
            raise ValueError(f"readout must be 'softmax' or 'membrane', got {readout!r}")
        self.W = nn.Linear(in_features, num_classes, bias=bias)
        self.norm = _norm(norm, num_classes)
        self.leak = None if leak_tau is None else _LearnableLeak(num_classes, leak_tau)
        self.decay = float(decay)
        self.input_scale = float(input_scale)
        self.readout = readout
        self.init_state = init_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, in_features] -> [T, B, num_classes]``."""
        current = self.norm(self.W(x))
        if self.leak is not None:
            alpha = self.leak()
            decay, scale = alpha, 1.0 - alpha
        else:
            decay, scale = self.decay, self.input_scale
        if self.init_state == "uniform":
            u = torch.rand(current.shape[1:], device=current.device, dtype=current.dtype)
        else:
            u = current.new_zeros(current.shape[1:])
        out = []
        for i_t in current.unbind(0):
            u = decay * u + scale * i_t
            out.append(u)
        membrane = torch.stack(out)
        return membrane.softmax(-1) if self.readout == "softmax" else membrane


class RecurrentLIFNet(SpikingBackbone):
    """Stacked :class:`RecurrentLIFLayer` s and a :class:`LeakyIntegratorReadout` (module docstring).

    ``forward(x: [T, B, C, ...]) -> [T, B, num_classes]``; the feature dimensions are flattened
    (SHD's ``[T, B, 700, 1, 1]`` becomes ``[T, B, 700]``). The time loop is inside every layer (the recurrence
    needs the previous step's spikes), so only ``step_mode="m"`` (the whole sequence in, the whole sequence
    out) is accepted.
    """

    def __init__(
        self,
        num_classes: int,
        in_features: int,
        neuron: NeuronFactory,
        hidden: Sequence[int] = (128, 128),
        dropout: float = 0.1,
        norm: str | None = "bn",
        leak_tau: Sequence[float] | None = (5.0, 25.0),
        readout: ReadoutKind = "softmax",
        bias: bool = False,
        init_state: InitState = "zeros",
        step_mode: StepMode = "m",
    ) -> None:
        if step_mode != "m":
            raise ValueError(
                "rlif_snn runs its loop over T inside each recurrent layer: it takes the whole sequence "
                f"(step_mode 'm'), got step_mode={step_mode!r}"
            )
        if init_state not in ("zeros", "uniform"):
            raise ValueError(f"init_state must be 'zeros' or 'uniform', got {init_state!r}")
        if not hidden:
            raise ValueError("hidden must list at least one recurrent layer width")
        super().__init__(num_classes, neuron, step_mode)
        layers: list[nn.Module] = []
        width = int(in_features)
        for h in hidden:
            layers.append(RecurrentLIFLayer(width, int(h), neuron, norm, dropout, leak_tau, bias, init_state))
            width = int(h)
        probe = layers[-1].node
        self.body = nn.Sequential(*layers)
        self.readout = LeakyIntegratorReadout(
            width, num_classes, norm, leak_tau, probe.decay, probe.input_scale, readout, bias, init_state
        )

    @property
    def step_mode(self) -> StepMode:
        return "m"

    @step_mode.setter
    def step_mode(self, mode: StepMode) -> None:
        if mode != "m":
            raise ValueError(f"{type(self).__name__} runs whole sequences only (step_mode 'm'), got {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:
            raise ValueError(f"{type(self).__name__} expects a time-major input [T, B, features...], got shape {tuple(x.shape)}")
        return self.readout(self.body(x.flatten(2)))


@register_backbone("rlif_snn")
def rlif_snn(
    num_classes: int = 20,
    in_channels: int = 700,
    input_size: int | Sequence[int] = 1,
    neuron: NeuronFactory | dict | None = None,
    step_mode: StepMode = "m",
    **kwargs: Any,
) -> RecurrentLIFNet:
    """sparch's RLIF network over ``in_channels x H x W`` input features; ``kwargs`` are those of
    :class:`RecurrentLIFNet`, whose defaults are ``run_exp.py --model_type RLIF``'s (2 hidden layers of 128,
    dropout 0.1, batchnorm, no bias, leak τ in [5, 25], softmax readout). ``neuron`` defaults to sparch's
    neuron (:data:`SPARCH_NEURON`: IF charge under the learnable leak, threshold 1, reset by subtraction,
    boxcar surrogate of width 1)."""
    h, w = to_pair(input_size)
    factory = build_neuron_factory(neuron, default=SPARCH_NEURON)
    return RecurrentLIFNet(num_classes, in_channels * h * w, factory, step_mode=step_mode, **kwargs)
