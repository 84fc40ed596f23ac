"""Neurons of DSR: differentiation on spike representation (Meng et al., CVPR 2022).

Forward: the IF or LIF neuron is simulated over all T steps with reset by subtraction and the two
knobs of the paper, a trainable threshold ``V_th`` (projected onto ``[V_th_bound, inf)`` before every
forward) and the firing factor ``alpha`` (the neuron fires when the membrane reaches ``alpha * V_th``
and then subtracts ``V_th``)::

    IF :  U[t] = V[t-1] + x[t]                             S[t] = V_th  * 1{U[t] >= alpha V_th}
    LIF:  U[t] = b V[t-1] + (1 - b) x[t],  b = exp(-dt/tau)  S[t] = V_th/dt * 1{U[t] >= alpha V_th}
          V[t] = U[t] - V_th * 1{U[t] >= alpha V_th}

A spike carries the value ``V_th`` (IF) or ``V_th / dt`` (LIF), as in the official code, so that the
firing rate (IF) or the weighted firing rate (LIF) of a spike train *is* its spike representation.

Backward: the time loop is never differentiated. With the representation of the input,

    IF :  r = 1/T sum_t x[t]                       a = clamp(r, 0, V_th)
    LIF:  r = sum_t w[t] x[t] / sum_t w[t],        a = clamp(r / tau, 0, V_th / dt),
          w[t] = exp(-(T - t) dt / tau), t = 1..T

the gradient of the loss is pushed through the sub-differentiable mapping ``a = f(r)`` only:
``dL/dr = f'(r) * G`` with the output gradient ``G`` collected over the T steps, spread back to the
T inputs, and ``dL/dV_th = sum(G * df/dV_th)``. Two variants (``grad_mode``):

* ``"official"`` (default) -- the rule of the official repository (github.com/qymeng94/DSR,
  ``cifar/modules/neuron.py`` and ``imagenet/neuron.py``): ``G = T * sum_t p[t] g[t]`` with the
  representation weights ``p = w / sum w``, spread evenly (``1/T``) over the inputs; the threshold
  gradient is ``sum(G * 1{r > V_th})`` (IF) and ``dt * sum(G * 1{r > V_th tau/dt})`` (LIF).
* ``"exact"`` -- the exact vector-Jacobian product of ``x[1..T] -> r -> a``, the output train read as
  ``a`` at every step: ``G = sum_t g[t]``, ``dL/dx[t] = p[t] * f'(r) * G`` and
  ``dL/dV_th = sum(G * df/dV_th)`` (``df/dV_th = 1/dt`` above the LIF clamp).

For the IF neuron (``p = 1/T``) both are the same. The threshold gradient is finally multiplied by
``threshold_grad_scale`` (the official ImageNet code uses ``0.001`` for its IF neurons, CIFAR ``1``).

The Function saves only the representation ``r`` (one step's worth of memory, independent of T).

SpikingJelly 2.0 ships ``DSRIFNode`` / ``DSRLIFNode`` (``spikingjelly.activation_based.neuron.dsr``)
with the same forward and the same official backward (the LIF threshold mask of the ImageNet code), but
it enforces the lower bound by ``v_threshold.clamp(min=bound)`` inside the graph, whose gradient is zero
below the bound: a threshold that an optimiser step pushes under the bound stays there for good and
stops learning. The official code projects the parameter itself (``Vth <- max(Vth, bound)``) before each
forward, which keeps it trainable; these neurons do the same, and are :class:`BaseNode` subclasses so
that ``reset_states``, the neuron factory and :class:`~lightning_snn.callbacks.FiringRateMonitor` work.
The tests compare both implementations and a direct transcription of the paper's mapping.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .compression import note_spikes
from .factory import register_neuron
from .nodes import BaseNode, StepMode

__all__ = [
    "DSRIFNode",
    "DSRLIFNode",
    "DSRNode",
    "GradMode",
    "ReLUActivation",
    "lif_leak",
    "representation_weights",
    "spike_representation",
]

GradMode = Literal["official", "exact"]


def representation_weights(T: int, tau: float | None = None, delta_t: float | None = None,
                           device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The normalised weights ``p[t]`` of the spike representation over ``T`` steps.

    ``tau=None`` gives the firing rate (``1/T`` each, IF neurons); otherwise the weighted firing rate of
    the LIF neuron, ``p[t] ∝ exp(-(T - t) dt / tau)`` for ``t = 1..T`` (later steps weigh more).
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    if tau is None:
        return torch.full((T,), 1.0 / T, device=device, dtype=dtype)
    if delta_t is None:
        raise ValueError("representation_weights: the weighted rate needs delta_t together with tau")
    w = torch.tensor([math.exp(-(T - t) * delta_t / tau) for t in range(1, T + 1)], dtype=torch.float64)
    return (w / w.sum()).to(device=device, dtype=dtype)


def spike_representation(seq: torch.Tensor, tau: float | None = None, delta_t: float | None = None) -> torch.Tensor:
    """Firing rate (``tau=None``) or weighted firing rate of a time-major sequence ``[T, ...] -> [...]``."""
    p = representation_weights(seq.shape[0], tau, delta_t, device=seq.device, dtype=torch.promote_types(seq.dtype, torch.float32))
    return torch.tensordot(p, seq.to(p.dtype), dims=1).to(seq.dtype)


def lif_leak(tau: float, delta_t: float, dtype: torch.dtype = torch.float32,
             device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The LIF leak ``b = exp(-dt/tau)`` and input factor ``1 - b`` as 0-d tensors of ``dtype``.

    Evaluated as the official code does (``cifar/modules/neuron.py``, ``LIFFunction.forward``): ``tau`` is
    a tensor, ``b = torch.exp(-delta_t / tau)`` and ``1 - b`` are tensor operations in that tensor's dtype on
    the CPU. In float32 this gives ``1 - b = 0.04877055`` for ``dt = 0.05, tau = 1``, whereas rounding the
    float64 value ``1 - exp(-0.05)`` to float32 gives ``0.04877058``; the two differ in the last bit, which
    moves spikes whose membrane lies within that much of the firing level. The official code makes its
    ``tau`` tensor in the default dtype; here it takes the neuron's compute dtype (float64 under a float64
    model, where both expressions agree to round-off).
    """
    tau_t = torch.tensor(tau, dtype=dtype)
    beta = torch.exp(-delta_t / tau_t)
    return beta.to(device), (1 - beta).to(device)


def _spike_value(v_threshold: torch.Tensor, x_dtype: torch.dtype, tau: float | None, delta_t: float | None) -> torch.Tensor:
    """The value of one spike, ``V_th`` (IF) or ``V_th / dt`` (LIF), in the neuron's compute dtype."""
    th = v_threshold.detach().to(torch.promote_types(x_dtype, torch.float32))
    return th if tau is None else th / delta_t


class _DSRFunction(torch.autograd.Function):
    """Spiking forward over T steps; backward through the representation mapping only."""

    @staticmethod
    def forward(ctx, x_seq, v_threshold, alpha, tau, delta_t, grad_mode, grad_scale):
        leaky = tau is not None
        dtype = torch.promote_types(x_seq.dtype, torch.float32)
        x = x_seq.to(dtype)
        th = v_threshold.detach().to(dtype)
        fire_at = alpha * th
        spike_value = _spike_value(v_threshold, x_seq.dtype, tau, delta_t)
        if leaky:
            beta, in_scale = lif_leak(tau, delta_t, dtype, x.device)
        T = x.shape[0]
        out = torch.empty_like(x)
        v = torch.zeros_like(x[0])
        for t in range(T):
            v = beta * v + in_scale * x[t] if leaky else v + x[t]
            fired = v >= fire_at
            v = v - fired.to(dtype) * th
            torch.mul(fired.to(dtype), spike_value, out=out[t])
        p = representation_weights(T, tau, delta_t, device=x.device, dtype=dtype)
        r = torch.tensordot(p, x, dims=1)
        ctx.save_for_backward(r)
        ctx.th = th.clone()
        ctx.cfg = (T, tau, delta_t, grad_mode, grad_scale, x_seq.dtype, v_threshold.dtype)
        return out.to(x_seq.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (r,) = ctx.saved_tensors
        T, tau, delta_t, grad_mode, grad_scale, x_dtype, th_dtype = ctx.cfg
        th = ctx.th
        g = grad_out.to(r.dtype)
        p = representation_weights(T, tau, delta_t, device=r.device, dtype=r.dtype)
        shape = (T,) + (1,) * r.dim()
        if tau is None:  # IF: a = clamp(r, 0, V_th)
            G = g.sum(0)
            slope = ((r >= 0) & (r <= th)).to(r.dtype)
            above = (r > th).to(r.dtype)
            dth = 1.0
            spread = p.view(shape)
        else:  # LIF: a = clamp(r / tau, 0, V_th / dt)
            upper = th * tau / delta_t
            slope = ((r > 0) & (r < upper)).to(r.dtype) / tau
            above = (r > upper).to(r.dtype)
            if grad_mode == "official":
                G = T * torch.tensordot(p, g, dims=1)
                spread = torch.full(shape, 1.0 / T, device=r.device, dtype=r.dtype)
                dth = delta_t
            else:
                G = g.sum(0)
                spread = p.view(shape)
                dth = 1.0 / delta_t
        grad_x = (spread * (G * slope).unsqueeze(0)).to(x_dtype)
        grad_th = None
        if ctx.needs_input_grad[1]:
            grad_th = ((G * above).sum() * (dth * grad_scale)).reshape(()).to(th_dtype)
        return grad_x, grad_th, None, None, None, None, None


class DSRNode(BaseNode):
    """Base of the DSR neurons (multi-step only; the whole sequence is needed for the representation).

    Args:
        v_threshold: initial threshold ``V_th`` (``--Vth`` of the official commands).
        alpha: the neuron fires at ``alpha * V_th`` (``--alpha``).
        v_threshold_bound: lower bound of the trained threshold (``--Vth_bound``).
        learnable_threshold: train ``V_th`` (``--train_Vth 1``, the default of the official code).
        threshold_grad_scale: factor on the threshold gradient (official: 1 on CIFAR, 0.001 for ImageNet IF).
        grad_mode: ``"official"`` or ``"exact"`` (module docstring; identical for IF).
        step_mode: must be ``"m"``.
    """

    tau: float | None = None
    delta_t: float | None = None

    def __init__(
        self,
        v_threshold: float = 6.0,
        alpha: float = 0.5,
        v_threshold_bound: float = 0.01,
        learnable_threshold: bool = True,
        threshold_grad_scale: float = 1.0,
        grad_mode: GradMode = "official",
        step_mode: StepMode = "m",
    ) -> None:
        if step_mode != "m":
            raise ValueError(f"{type(self).__name__} runs in multi-step mode only (step_mode='m'), got {step_mode!r}")
        if not v_threshold > 0:
            raise ValueError(f"{type(self).__name__}: v_threshold must be > 0, got {v_threshold}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"{type(self).__name__}: alpha must lie in (0, 1], got {alpha}")
        if v_threshold_bound < 0:
            raise ValueError(f"{type(self).__name__}: v_threshold_bound must be >= 0, got {v_threshold_bound}")
        if grad_mode not in ("official", "exact"):
            raise ValueError(f"{type(self).__name__}: grad_mode must be 'official' or 'exact', got {grad_mode!r}")
        super().__init__(
            v_threshold=max(float(v_threshold), float(v_threshold_bound)),
            v_reset=None,
            step_mode=step_mode,
            learnable_threshold=learnable_threshold,
        )
        del self.surrogate  # no surrogate gradient in DSR
        if not learnable_threshold:  # keep a fixed (e.g. calibrated) threshold in checkpoints too
            self.register_buffer("v_threshold", self.v_threshold.detach().clone(), persistent=True)
        self.alpha = float(alpha)
        self.v_threshold_bound = float(v_threshold_bound)
        self.learnable_threshold = bool(learnable_threshold)
        self.threshold_grad_scale = float(threshold_grad_scale)
        self.grad_mode: GradMode = grad_mode

    @property
    def spike_value(self) -> float:
        """The value a spike carries: ``V_th`` (IF) or ``V_th / dt`` (LIF)."""
        th = float(self.v_threshold.detach())
        return th if self.tau is None else th / float(self.delta_t)

    def project_threshold(self) -> None:
        """``V_th <- max(V_th, V_th_bound)`` in place (the official code does this before every forward)."""
        with torch.no_grad():
            self.v_threshold.clamp_(min=self.v_threshold_bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode != "m":
            raise RuntimeError(
                f"{type(self).__name__} needs the whole sequence [T, B, ...] (multi-step mode); "
                "DSR cannot run in single-step mode"
            )
        if x.dim() < 2:
            raise ValueError(f"{type(self).__name__} expects [T, B, ...], got {tuple(x.shape)}")
        self.project_threshold()
        out = _DSRFunction.apply(
            x, self.v_threshold, self.alpha, self.tau, self.delta_t, self.grad_mode, self.threshold_grad_scale
        )
        if self.record_rate:
            self._record(out)
        return note_spikes(out, _spike_value(self.v_threshold, x.dtype, self.tau, self.delta_t).to(out.dtype))

    def representation(self, seq: torch.Tensor) -> torch.Tensor:
        """(Weighted) firing rate ``[T, ...] -> [...]`` of a sequence under this neuron's coding."""
        return spike_representation(seq, self.tau, self.delta_t)

    def _single_step(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - guarded in forward
        raise RuntimeError(f"{type(self).__name__} cannot run in single-step mode")

    def _record(self, spikes: torch.Tensor) -> None:
        # spikes carry V_th (or V_th/dt), not 1: count events
        with torch.no_grad():
            total = (spikes.detach() != 0).float().sum()
            n = torch.tensor(float(spikes.numel()), device=spikes.device)
            stat = torch.stack([total, n])
            self.spike_count = stat if self.spike_count is None else self.spike_count + stat

    def extra_repr(self) -> str:
        return (
            f"v_threshold={float(self.v_threshold.detach()):g}, alpha={self.alpha:g}, bound={self.v_threshold_bound:g}, "
            f"learnable={self.learnable_threshold}, grad_mode={self.grad_mode!r}, "
            f"threshold_grad_scale={self.threshold_grad_scale:g}"
        )


class DSRIFNode(DSRNode):
    """DSR integrate-and-fire neuron; defaults are the IF commands of the official README
    (``--Vth 6 --alpha 0.5 --Vth_bound 0.01``). Representation: firing rate, ``a = clamp(r, 0, V_th)``."""


class DSRLIFNode(DSRNode):
    """DSR leaky integrate-and-fire neuron; defaults are the official code's defaults used by the LIF
    commands (``Vth 0.3, alpha 0.3, Vth_bound 0.0005, tau 1, delta_t 0.05``). Representation: weighted
    firing rate, ``a = clamp(r / tau, 0, V_th / dt)``.

    Args:
        tau: membrane time constant.
        delta_t: discretisation step (leak ``b = exp(-dt/tau)``; spikes carry ``V_th / dt``).
        Others as :class:`DSRNode`.
    """

    def __init__(
        self,
        v_threshold: float = 0.3,
        alpha: float = 0.3,
        v_threshold_bound: float = 0.0005,
        tau: float = 1.0,
        delta_t: float = 0.05,
        learnable_threshold: bool = True,
        threshold_grad_scale: float = 1.0,
        grad_mode: GradMode = "official",
        step_mode: StepMode = "m",
    ) -> None:
        if not tau > 0 or not delta_t > 0:
            raise ValueError(f"DSRLIFNode: tau and delta_t must be > 0, got tau={tau}, delta_t={delta_t}")
        super().__init__(v_threshold, alpha, v_threshold_bound, learnable_threshold, threshold_grad_scale, grad_mode, step_mode)
        self.tau = float(tau)
        self.delta_t = float(delta_t)
        beta, in_scale = lif_leak(self.tau, self.delta_t)
        self.decay = float(beta)  # the float32 values the forward pass uses for a float32 input
        self.input_scale = float(in_scale)

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, delta_t={self.delta_t:g}, " + super().extra_repr()


class ReLUActivation(nn.Module):
    """The ANN activation of DSR's hybrid pipeline (``neuron: {type: ann_relu}``): ReLU, or
    ``clamp(x, 0, max_value)``. Threshold calibration records its outputs (post-activations)."""

    is_stateful = False

    def __init__(self, max_value: float | None = None, step_mode: StepMode = "m") -> None:
        super().__init__()
        if max_value is not None and not max_value > 0:
            raise ValueError(f"ReLUActivation: max_value must be > 0, got {max_value}")
        self.max_value = None if max_value is None else float(max_value)
        self.step_mode: StepMode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) if self.max_value is None else x.clamp(0.0, self.max_value)

    def extra_repr(self) -> str:
        return "" if self.max_value is None else f"max_value={self.max_value:g}"


register_neuron("dsr_if", DSRIFNode)
register_neuron("dsr_lif", DSRLIFNode)
register_neuron("ann_relu", ReLUActivation)
