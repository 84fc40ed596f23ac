"""Integrate-and-fire (IF) and leaky integrate-and-fire (LIF) neurons, multi-step and single-step.

One discrete-time update covers the neurons of every paper in this library (STBP, Wu et al. 2018,
Eq. 1-3; tdBN, Zheng et al. 2021, Eq. 1; SpikingJelly's LIF; PLIF, Fang et al. 2021, Eq. 1-4)::

    H[t] = c + λ·(V[t-1] - c) + k·X[t]          charge  (c = v_reset for hard reset, else 0)
    S[t] = Θ(H[t] - V_th)                        fire    (surrogate gradient in backward)
    V[t] = H[t] - S[t]·V_th                      reset by subtraction   (v_reset=None)
    V[t] = H[t]·(1 - S[t]) + v_reset·S[t]        reset to v_reset       (v_reset=float)

λ is the leak factor (1 for IF). Papers give it two ways: as a leak factor directly (STBP's ``tau=0.25``,
tdBN, Rate-BP, IDE's ``leaky``) -> pass ``decay``; or as a membrane time constant (SpikingJelly) -> pass
``tau``, giving λ = 1 - 1/τ and k = 1/τ if ``decay_input`` else 1. PLIF (:mod:`.plif`) learns τ.

Multi-step mode (``step_mode="m"``, input ``[T, B, ...]``) runs the loop inside one autograd Function
that keeps only ``H`` for backward and computes the BPTT gradient in a single reverse sweep; it is
implemented by the backend named by ``backend=`` (:mod:`lightning_snn.neurons.backends`: ``torch``, the
reference, ``inductor`` and ``triton``). The single-step mode (``step_mode="s"``, input ``[B, ...]``,
state kept between calls) is written with plain autograd ops. The tests check both against an
independent unrolled reference and against SpikingJelly's own neurons.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from .backends import BACKENDS, Backend, get_backend
from .compression import note_spikes
from .surrogate import Rectangular, SurrogateGradient

__all__ = ["BACKENDS", "Backend", "BaseNode", "IFNode", "LIFNode", "StepMode", "reset_states", "set_step_mode"]

StepMode = Literal["m", "s"]


class BaseNode(nn.Module):
    """Shared state handling of IF/LIF neurons.

    Args:
        v_threshold: firing threshold ``V_th``.
        v_reset: ``None`` resets by subtraction, a float resets the membrane to that value (hard reset).
        surrogate: pseudo-derivative used in backward (default: STBP's rectangular window, width 1).
        detach_reset: treat the spike in the reset term as a constant in backward (Zenke & Vogels 2021).
        step_mode: ``"m"`` (input ``[T, B, ...]``) or ``"s"`` (input ``[B, ...]``, state kept across calls).
        learnable_threshold: make ``V_th`` a trainable parameter.
        backend: multi-step implementation: ``"torch"`` (the reference fused Function), ``"inductor"``
            (its loops compiled by ``torch.compile``) or ``"triton"`` (SpikingJelly's Triton kernels, CUDA
            only, for the neuron configurations they implement exactly); see :mod:`.backends`.

    ``forward`` announces its output as a 0/1 spike train (:func:`~lightning_snn.neurons.note_spikes`) so
    that ``spike_storage: bits`` can store it compactly; a subclass whose output is graded must override
    ``forward`` without that announcement (or announce the one non-zero value, as the DSR neurons do).
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: SurrogateGradient | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "m",
        learnable_threshold: bool = False,
        backend: Backend = "torch",
    ) -> None:
        super().__init__()
        if step_mode not in ("m", "s"):
            raise ValueError(f"step_mode must be 'm' (multi-step) or 's' (single-step), got {step_mode!r}")
        get_backend(backend)  # ValueError naming the choices for an unknown name
        if not 0.0 < float(v_threshold) < math.inf:  # also rejects NaN
            raise ValueError(
                f"{type(self).__name__}: v_threshold (firing threshold) must be a finite number > 0, got {v_threshold}; "
                "with V_th <= 0 a neuron fires at rest and the network trains to chance"
            )
        threshold = torch.tensor(float(v_threshold))
        if learnable_threshold:
            self.v_threshold = nn.Parameter(threshold)
        else:
            self.register_buffer("v_threshold", threshold, persistent=False)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.surrogate = surrogate if surrogate is not None else Rectangular(1.0)
        self.detach_reset = detach_reset
        self.step_mode: StepMode = step_mode
        self.backend: Backend = backend
        self.v: torch.Tensor | None = None
        # [spikes, elements] summed while ``record_rate`` is on (FiringRateMonitor); not reset per batch
        self.spike_count: torch.Tensor | None = None
        self.record_rate = False
        self.check_backend()

    is_stateful = True
    # leak factor λ and input scale k of the charge equation (module docstring)
    decay: float = 1.0
    input_scale: float = 1.0

    def check_backend(self) -> None:
        """Raise ``ValueError`` if the backend cannot run this neuron as configured (subclasses call it
        again once their own parameters are set)."""
        get_backend(self.backend).check(self)

    def reset(self) -> None:
        """Forget the membrane potential (call before every new sample batch)."""
        self.v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "m":
            out = self._multi_step(x)
        else:
            out = self._single_step(x)
        if self.record_rate:
            self._record(out)
        return note_spikes(out)

    def _initial_v(self, like: torch.Tensor) -> torch.Tensor:
        if self.v is None:
            fill = 0.0 if self.v_reset is None else self.v_reset
            return torch.full_like(like, fill, dtype=torch.promote_types(like.dtype, torch.float32))
        if self.v.shape != like.shape:
            raise RuntimeError(
                f"{type(self).__name__}: input shape {tuple(like.shape)} does not match the stored membrane "
                f"potential {tuple(self.v.shape)}; call reset_states(model) before a new batch"
            )
        return self.v

    def _multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 2:
            raise ValueError(f"{type(self).__name__} in multi-step mode expects [T, B, ...], got {tuple(x_seq.shape)}")
        v0 = self._initial_v(x_seq[0])
        spikes, self.v = get_backend(self.backend).multi_step(self, x_seq, v0)
        return spikes

    def _single_step(self, x: torch.Tensor) -> torch.Tensor:
        v = self._initial_v(x)
        th = self.v_threshold
        c = 0.0 if self.v_reset is None else self.v_reset
        h = c + self.decay * (v - c) + self.input_scale * x
        spike = self.surrogate(h - th)
        s_reset = spike.detach() if self.detach_reset else spike
        if self.v_reset is None:
            self.v = h - s_reset * th
        else:
            self.v = h * (1.0 - s_reset) + self.v_reset * s_reset
        return spike.to(x.dtype)

    def _record(self, spikes: torch.Tensor) -> None:
        with torch.no_grad():
            total = spikes.detach().float().sum()
            n = torch.tensor(float(spikes.numel()), device=spikes.device)
            stat = torch.stack([total, n])
            self.spike_count = stat if self.spike_count is None else self.spike_count + stat

    def extra_repr(self) -> str:
        reset = "subtract" if self.v_reset is None else f"to {self.v_reset}"
        return (
            f"v_threshold={float(self.v_threshold):g}, decay={self.decay:g}, reset={reset}, "
            f"detach_reset={self.detach_reset}, step_mode={self.step_mode!r}"
            + ("" if self.backend == "torch" else f", backend={self.backend!r}")
        )


class IFNode(BaseNode):
    """Integrate-and-fire neuron: the charge equation with leak factor λ = 1."""


class LIFNode(BaseNode):
    """Leaky integrate-and-fire neuron.

    Give the leak as the paper does, exactly one of:
        decay: the leak factor λ in ``H = λ·V + X`` (STBP's ``tau=0.25``, tdBN/Rate-BP ``0.5``, IDE ``leaky``).
        tau: a membrane time constant τ > 1, giving λ = 1 - 1/τ (SpikingJelly's LIF); with
            ``decay_input=True`` the input is also scaled by 1/τ.
    Other arguments as :class:`BaseNode`.
    """

    def __init__(
        self,
        decay: float | None = None,
        tau: float | None = None,
        decay_input: bool = False,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: SurrogateGradient | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "m",
        learnable_threshold: bool = False,
        backend: Backend = "torch",
    ) -> None:
        super().__init__(v_threshold, v_reset, surrogate, detach_reset, step_mode, learnable_threshold, backend)
        if (decay is None) == (tau is None):
            raise ValueError("LIFNode: give exactly one of `decay` (leak factor λ) or `tau` (time constant τ)")
        if decay is not None:
            if not 0.0 <= decay <= 1.0:
                raise ValueError(f"LIFNode: decay (leak factor) must lie in [0, 1], got {decay}")
            if decay_input:
                raise ValueError("LIFNode: decay_input only applies with `tau`")
            self.decay = float(decay)
        else:
            if tau <= 1.0:
                raise ValueError(f"LIFNode: tau must be > 1, got {tau}")
            self.decay = 1.0 - 1.0 / tau
            self.input_scale = 1.0 / tau if decay_input else 1.0
        self.tau = tau
        self.check_backend()  # now with this neuron's leak


def reset_states(module: nn.Module) -> None:
    """Reset every stateful submodule (those with ``is_stateful = True``: neurons, recurrent buffers)."""
    for m in module.modules():
        if getattr(m, "is_stateful", False):
            m.reset()


def set_step_mode(module: nn.Module, step_mode: StepMode) -> None:
    """Switch every submodule with a ``step_mode`` attribute (neurons, time-distributed layers)."""
    if step_mode not in ("m", "s"):
        raise ValueError(f"step_mode must be 'm' or 's', got {step_mode!r}")
    for m in module.modules():
        if hasattr(m, "step_mode"):
            m.step_mode = step_mode
