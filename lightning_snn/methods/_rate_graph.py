"""Rate-BP machinery: hooks that record a spike pass and turn the same backbone into its rate graph.

This is mechanism 2 of ARCHITECTURE.md ("hooks around layers"). Nothing here is specific to a backbone:
any module built from :class:`~lightning_snn.neurons.BaseNode` neurons, BatchNorm layers
(:class:`~lightning_snn.neurons.BatchNormThroughTime` / tdBN or a plain ``nn.BatchNorm*d`` inside a
``TimeDistributed``) and linear layers (conv, linear, average pooling, residual sums) works, in both step
modes. One Rate-BP training forward (:func:`rate_bp_forward`) has two phases:

1. **Spike pass** (``torch.no_grad()``): the backbone runs all T steps exactly as in BPTT (same neuron
   dynamics, same BN batch statistics and running-statistics update). Forward hooks record per neuron
   the firing rate ``r = 1/T Σ_t S_t`` and the eligibility ``e = 1/T Σ_t ψ_t ε_t`` (below), and per BN
   layer the batch mean and ``1/sqrt(σ² + eps)`` of its input (BN's own statistics kernel). Weight layers
   record nothing. Only these
   ``[B, ...]``-sized statistics outlive the pass; every ``[T, B, ...]`` tensor is transient.
2. **Rate pass** (grad enabled): the same modules run once on the time-averaged input ``x̄ = 1/T Σ_t x_t``,
   given as a length-1 sequence ``[1, B, ...]`` so that the backbone runs unchanged in its own step mode
   (multi-step layers fold the singleton time axis, a single-step backbone loops once). During this call
   the ``forward`` of every neuron and BN layer is overridden (an instance attribute, removed in a
   ``finally``):

   * neuron: value ``r``, gradient ``e`` w.r.t. its input, i.e. ``r.detach() + x·e − (x·e).detach()``;
     implemented as :class:`_RateNode`, an autograd Function that saves only ``e``;
   * BN: the straight-through normalisation of the paper's code (``calcu_rate``): mean ``m`` and variance
     ``v`` take the *values* of the spike-pass statistics and the *gradients* of the rate-pass batch mean
     and variance, ``out = γ·(x − m)/sqrt(v + eps) + β``; implemented as :class:`_RateNorm`, an autograd
     Function with that composite's gradient in closed form that saves one tensor; running statistics
     are not touched;
   * conv / linear / pooling / residual sums run as they are. Being linear, they map time-means to
     time-means, so the rate graph's values are the spiking network's time-averaged values.

   The backward then runs once through this T-free graph. What autograd keeps is ``[B, ...]``-sized
   (``e`` per neuron, the layer inputs of the rate graph): nothing grows with T.

Neuron statistics, for the charge ``H_t = c + λ(V_{t−1} − c) + k·X_t`` of :mod:`lightning_snn.neurons.nodes`
(``c = v_reset`` or 0) and the surrogate derivative ``ψ_t = σ'(H_t − θ)`` of the neuron's own surrogate
(so the rate gradient uses exactly the BPTT surrogate), with ``ε_t = ∂H_t/∂c`` for a constant input current c::

    ε_0 = k,    ε_{t+1} = k + λ·ε_t·D_t
    D_t = ∂V_t/∂H_t along the paths BPTT differentiates:
          soft reset, detach_reset       1                       (the paper's neuron)
          soft reset, no detach          1 − θ·ψ_t
          hard reset, detach_reset       1 − S_t
          hard reset, no detach          (1 − S_t) + (v_reset − H_t)·ψ_t
    r = 1/T Σ_t S_t,     e = 1/T Σ_t ψ_t·ε_t  (= ∂r/∂c under the surrogate)

The Rate-BP repository implements the first two rows and, for hard reset, the last row with v_reset = 0
regardless of ``detach_reset``; here ``detach_reset`` is honoured in every case. ``H_t`` is recomputed in
the hook from the neuron's input sequence and its output spikes (a few elementwise operations per step;
the neuron's own fused kernel is left untouched, and the spikes are the neuron's, never re-thresholded).
The first step reproduces the neuron's ``H`` exactly; later steps may differ from it by rounding (fused
multiply-adds), which only moves ``ψ`` by a few ulps.

BN statistics per step mode. Multi-step: the BN layer is called once on ``[T·B, ...]`` and its mean and
variance are used as they are (this is the repository's ``m`` mode; at T = 1 the rate graph is BPTT's
graph). Single-step: BN normalises every step with that step's batch statistics, so T (mean, variance)
pairs are seen, and which pair the rate pass uses is a choice (:data:`BN_STATS`, ``bn_stats``):

* ``"time_average"``: the time-averaged mean and the harmonic mean of ``σ²_t + eps`` (eps counted once).
  That is what the repository's HEAD (``model/model_setting.py: bn_forward_hook``) intends with its
  running averages of the mean and of ``1/(σ²_t + eps)``. At T = 1 it is BPTT's BN.
* ``"official_last_step"``: what that code computes. Its running averages are weighted by the BN
  module's ``curr_time_step``, which is never advanced (only the model's and the neurons' counters are),
  so every step overwrites the previous one; and the variance branch tests ``in_spikes_var``, which is
  always None in single-step mode, so the stored value is ``σ²_T + eps`` and ``calcu_rate`` adds eps a
  second time. The rate pass therefore uses the last step's mean and ``1/sqrt(σ²_T + 2·eps)``. This is a
  bug, kept as an option because the published single-step results were produced by it.

The repository's first commit (``5caed150``) instead replays BN on all T stored inputs, which keeps O(T)
tensors; it is not offered. In multi-step mode both choices are the same thing (one call, eps once).

Input of the rate pass (:data:`RATE_INPUTS`, ``rate_input``): ``"mean_frame"`` feeds ``x̄ = 1/T Σ_t x_t``;
``"last_frame"`` feeds ``x_T``, which is what the repository's single-step mode does (its model forward
hook starts the rate pass at the last step with that step's input, ``args[0]``). The two are identical
for static images (the same image at every step) and differ for event frames.

Known approximations (as in the paper's code): dropout layers would draw a new mask in the rate pass;
non-linear pooling (max) routes gradients through the max of the rates; learnable thresholds receive no
gradient (a warning is emitted).
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..neurons import BaseNode, BatchNormThroughTime, Sigmoid, reset_states

__all__ = ["BN_STATS", "RATE_BP_LIF", "RATE_INPUTS", "RateGraph", "rate_bp_forward"]

#: Which spike-pass BN statistics the rate pass uses when a BN layer was called once per step (module
#: docstring, "BN statistics per step mode"): the library's time average, or the repository's last step
#: with eps added twice (a bug of the repository, reproduced because its published numbers came from it).
BN_STATS = ("time_average", "official_last_step")
#: What the rate pass is fed: the mean input frame, or the last one (the repository's single-step mode).
RATE_INPUTS = ("mean_frame", "last_frame")

#: The LIF neuron of the Rate-BP repository (``model/layer.py: LIFLayer``): H = 0.2·V + I, θ = 1, reset by
#: subtraction with the reset detached, SpikingJelly's sigmoid surrogate with α = 4.
RATE_BP_LIF: dict[str, Any] = {
    "type": "lif",
    "decay": 0.2,
    "v_threshold": 1.0,
    "v_reset": None,
    "detach_reset": True,
    "surrogate": {"name": "sigmoid", "alpha": 4.0},
}

_MISSING = object()


class _RateNode(torch.autograd.Function):
    """Rate-pass neuron: forward value ``rate``, backward ``grad · elig`` (only ``elig`` is saved).

    Equivalent to ``rate.detach() + x·elig − (x·elig).detach()`` of the paper's code, without the extra
    products and with one saved tensor.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, rate: torch.Tensor, elig: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(elig)
        ctx.x_dtype = x.dtype
        return rate.to(dtype=x.dtype, copy=True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (elig,) = ctx.saved_tensors
        return (grad * elig).to(ctx.x_dtype), None, None


class _NeuronRecord:
    """Spike-pass statistics of one neuron (sums over the steps seen so far)."""

    __slots__ = ("steps", "v_prev", "spike_sum", "elig_sum", "eps", "multi_step", "rate", "elig")

    def __init__(self) -> None:
        self.steps = 0
        self.v_prev: torch.Tensor | None = None
        self.spike_sum: torch.Tensor | None = None
        self.elig_sum: torch.Tensor | None = None
        self.eps: torch.Tensor | float | None = None
        self.multi_step = True
        self.rate: torch.Tensor | None = None
        self.elig: torch.Tensor | None = None

    def finalize(self) -> None:
        if self.steps == 0:
            return
        rate = self.spike_sum / self.steps
        elig = self.elig_sum / self.steps
        if self.multi_step:  # the rate pass feeds this neuron a length-1 sequence [1, B, ...]
            rate, elig = rate.unsqueeze(0), elig.unsqueeze(0)
        self.rate, self.elig = rate, elig
        self.spike_sum = self.elig_sum = self.eps = self.v_prev = None


class _NormRecord:
    """Spike-pass batch statistics of one BN layer (one entry per call: 1 in multi-step, T in single-step).

    Stored as the per-channel mean and ``invstd = 1/sqrt(σ² + eps)`` (σ² biased, as BN normalises), plus
    the last call's mean and variance for the repository's single-step statistics (:data:`BN_STATS`).
    """

    __slots__ = ("calls", "mean_sum", "invstd", "inv_var_sum", "last_mean", "last_var", "eps")

    def __init__(self) -> None:
        self.calls = 0
        self.mean_sum: torch.Tensor | None = None
        self.invstd: torch.Tensor | None = None
        self.inv_var_sum: torch.Tensor | None = None
        self.last_mean: torch.Tensor | None = None
        self.last_var: torch.Tensor | None = None
        self.eps = 0.0

    def add(self, mean: torch.Tensor, var: torch.Tensor, eps: float) -> None:
        dtype = torch.promote_types(mean.dtype, torch.float32)
        mean, var = mean.to(dtype), var.to(dtype)
        inv_var = 1.0 / (var + eps)
        invstd = torch.rsqrt(var + eps)
        if self.calls == 0:
            self.mean_sum, self.invstd, self.inv_var_sum = mean, invstd, inv_var
        else:
            self.mean_sum = self.mean_sum + mean
            self.inv_var_sum = self.inv_var_sum + inv_var
        self.last_mean, self.last_var, self.eps = mean, var, eps
        self.calls += 1

    def stats(self, mode: str = "time_average") -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, invstd) for the rate pass.

        ``"time_average"``: the statistics themselves after one call, else the time average of the means
        and the harmonic mean of σ²_t + eps (``invstd = sqrt(mean_t 1/(σ²_t + eps))``).
        ``"official_last_step"``: the last call's mean and ``1/sqrt(σ²_T + 2·eps)`` (see :data:`BN_STATS`).
        """
        if mode == "official_last_step":
            return self.last_mean, torch.rsqrt(self.last_var + 2.0 * self.eps)
        if self.calls == 1:
            return self.mean_sum, self.invstd
        return self.mean_sum / self.calls, torch.sqrt(self.inv_var_sum / self.calls)


class _RateNorm(torch.autograd.Function):
    """Rate-pass BN with the spike-pass statistics as values (the repository's ``calcu_rate``).

    Forward ``y = γ·(z − μ_s)·invstd_s + β``. Backward: the gradient of the repository's composite, in which
    the mean has the value μ_s and the gradient of the rate-pass batch mean, and the variance the value σ²_s
    and the gradient of ``mean((z − m)²)``. With ``d = z − μ_s``, ``s = invstd_s`` and means over the
    normalised elements of a channel (N of them)::

        ∂L/∂z = s·(gγ − mean(gγ)) + (2/N)·∂L/∂v·(d − mean(d)),    ∂L/∂v = −½·s³·Σ gγd

    which is BN's own backward except for the ``mean(d)`` term (zero when the rate-pass batch mean equals
    μ_s, e.g. always at T = 1). Saves only ``d``. The repository clamps the variance with ``relu``; the
    clamp never acts on recorded statistics (σ² ≥ 0) except at σ² = 0, where d = 0 and the term vanishes.
    """

    @staticmethod
    def forward(ctx, z, mean, invstd, weight, bias):
        shape = (1, -1) + (1,) * (z.dim() - 2)
        d = z - mean.view(shape)
        y = d * invstd.view(shape)
        if weight is not None:
            y = y * weight.view(shape)
        if bias is not None:
            y = y + bias.view(shape)
        ctx.save_for_backward(d, invstd, weight)
        return y

    @staticmethod
    def backward(ctx, g):
        d, invstd, weight = ctx.saved_tensors
        shape = (1, -1) + (1,) * (g.dim() - 2)
        dims = [0, *range(2, g.dim())]
        n = g.numel() // g.shape[1]
        s = invstd.view(shape)
        grad_z = grad_w = grad_b = None
        if ctx.needs_input_grad[3]:
            grad_w = (g * d).sum(dims) * invstd
        if ctx.needs_input_grad[4]:
            grad_b = g.sum(dims)
        if ctx.needs_input_grad[0]:
            gw = g * weight.view(shape) if weight is not None else g
            dv = (gw * d).sum(dims, keepdim=True) * (-0.5 * s * s * s)
            grad_z = (gw - gw.mean(dims, keepdim=True)) * s + (d - d.mean(dims, keepdim=True)) * (dv * (2.0 / n))
        return grad_z, None, None, grad_w, grad_b


def _batch_stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of ``z`` ``[N, C, ...]`` over all dims but 1.

    ``torch.batch_norm_update_stats`` is BN's own statistics kernel (the mean is bit-identical to the one
    BN normalises with); on CPU it is several times faster than ``var_mean`` over (N, H, W) and, unlike
    ``native_batch_norm``, allocates no normalised copy of the input.
    """
    if hasattr(torch, "batch_norm_update_stats"):
        return torch.batch_norm_update_stats(z, None, None, 0.0)
    var, mean = torch.var_mean(z, dim=[0, *range(2, z.dim())], correction=0)
    return mean, var


def _folds_time(bn: nn.Module) -> bool:
    """True for BN-through-time layers in multi-step mode, which receive ``[T, B, C, ...]``."""
    return isinstance(bn, BatchNormThroughTime) and bn.step_mode == "m"


def _uses_batch_stats(bn: nn.modules.batchnorm._BatchNorm) -> bool:
    return bn.training or bn.running_mean is None


class RateGraph:
    """The Rate-BP view of one backbone: :meth:`spike_pass`, then :meth:`rate_pass` (see module docstring).

    Hooks and overrides exist only while a pass runs; the backbone is left exactly as it was. A
    ``RateGraph`` is meant for one training step (build a new one per batch).
    """

    def __init__(self, model: nn.Module, bn_stats: str = "time_average") -> None:
        if bn_stats not in BN_STATS:
            raise ValueError(f"bn_stats must be one of {BN_STATS}, got {bn_stats!r}")
        self.model = model
        self.bn_stats = bn_stats
        self.neurons = [m for m in model.modules() if isinstance(m, BaseNode)]
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        others = [type(m).__name__ for m in model.modules() if getattr(m, "is_stateful", False) and not isinstance(m, BaseNode)]
        if others:
            raise ValueError(
                f"Rate-BP supports BaseNode (IF/LIF) neurons only; the backbone also holds stateful {sorted(set(others))}"
            )
        learned_leak = sorted({type(n).__name__ for n in self.neurons
                               if isinstance(n.decay, torch.Tensor) and n.decay.requires_grad})
        if learned_leak:  # the rate graph takes λ and k as constants: a learnable τ would silently stay untrained
            raise ValueError(f"Rate-BP treats the membrane leak as a constant; {learned_leak} learns it (e.g. PLIF's τ): "
                             "use IF/LIF neurons with Rate-BP, or train the PLIF network with BPTT")
        if any(isinstance(n.v_threshold, nn.Parameter) and n.v_threshold.requires_grad for n in self.neurons):
            warnings.warn("Rate-BP: learnable thresholds receive no gradient in the rate graph", stacklevel=3)
        self._neuron_rec: dict[nn.Module, _NeuronRecord] = {}
        self._norm_rec: dict[nn.Module, _NormRecord] = {}

    # ------------------------------------------------------------------------------- spike pass
    @contextmanager
    def recording(self) -> Iterator[RateGraph]:
        """Forward hooks on neurons and BN layers that record the spike-pass statistics."""
        self._neuron_rec = {n: _NeuronRecord() for n in self.neurons}
        self._norm_rec = {b: _NormRecord() for b in self.norms}
        handles = []
        try:
            for node in self.neurons:
                handles.append(node.register_forward_pre_hook(self._neuron_pre_hook))
                handles.append(node.register_forward_hook(self._neuron_hook))
            for bn in self.norms:
                handles.append(bn.register_forward_hook(self._norm_hook))
            yield self
        finally:
            for h in handles:
                h.remove()
        for rec in self._neuron_rec.values():
            rec.finalize()

    def spike_pass(self, x_seq: torch.Tensor) -> torch.Tensor:
        """All T steps without autograd, recording r, e and BN statistics. Returns the outputs ``[T, B, K]``."""
        with self.recording(), torch.no_grad():
            return self.model(x_seq)

    def _neuron_pre_hook(self, node: BaseNode, args: tuple[Any, ...]) -> None:
        self._neuron_rec[node].v_prev = node.v  # membrane state before this call (None right after a reset)

    def _neuron_hook(self, node: BaseNode, args: tuple[Any, ...], out: torch.Tensor) -> None:
        rec = self._neuron_rec[node]
        x = args[0]
        multi = node.step_mode == "m"
        rec.multi_step = multi
        cdtype = torch.promote_types(x.dtype, torch.float32)
        xs = x.detach().to(cdtype)
        ss = out.detach().to(cdtype)
        if not multi:
            xs, ss = xs.unsqueeze(0), ss.unsqueeze(0)
        lam, k, v_reset = float(node.decay), float(node.input_scale), node.v_reset
        c = 0.0 if v_reset is None else v_reset
        th = node.v_threshold.detach().to(cdtype)
        v = None if rec.v_prev is None else rec.v_prev.detach().to(cdtype)
        eps = k if rec.eps is None else rec.eps  # ε_t = ∂H_t/∂c; a float while it is equal for all neurons
        elig = rec.elig_sum
        steps = xs.shape[0]
        for t in range(steps):
            x_t, s_t = xs[t], ss[t]
            # H_t = c + λ(V − c) + k·X_t; right after a reset (V = c = 0) the leak term is exactly 0
            kx = x_t * k if k != 1.0 else x_t
            if v is None and c == 0.0:
                h = kx
            elif v is None:
                h = kx + c
            elif c == 0.0:
                h = torch.add(kx, v, alpha=lam) if lam != 1.0 else kx + v
            else:
                h = kx + (c + lam * (v - c))
            psi = self._surrogate_derivative(node, h - th)
            if elig is None:
                elig = psi if isinstance(eps, float) and eps == 1.0 else psi * eps
            elif isinstance(eps, float):
                elig.add_(psi, alpha=eps)
            else:
                elig.addcmul_(psi, eps)
            if v_reset is None:
                if node.detach_reset:
                    eps = k + lam * eps
                else:
                    eps = k + lam * eps * (1.0 - th * psi)
            else:
                d = (1.0 - s_t) if node.detach_reset else (1.0 - s_t) + (v_reset - h) * psi
                eps = k + lam * eps * d
            if t < steps - 1:  # the state after the last step comes from the neuron itself (pre-hook)
                v = torch.addcmul(h, s_t, th, value=-1.0) if v_reset is None else torch.where(s_t.bool(), v_reset, h)
        spikes = ss.sum(0)
        rec.spike_sum = spikes if rec.spike_sum is None else rec.spike_sum + spikes
        rec.elig_sum = elig
        rec.eps = eps
        rec.steps += steps
        rec.v_prev = None

    @staticmethod
    def _surrogate_derivative(node: BaseNode, x: torch.Tensor) -> torch.Tensor:
        """``node.surrogate.derivative(x)``; for the sigmoid surrogate (the paper's) the same values with
        fewer temporaries: ``α·sig(αx)·(1 − sig(αx))``, evaluated in SpikingJelly's operation order."""
        sur = node.surrogate
        if isinstance(sur, Sigmoid):
            sg = x.mul_(sur.alpha).sigmoid_()  # x is a temporary (H − θ) owned by the caller
            return (1.0 - sg).mul_(sg).mul_(sur.alpha)
        return sur.derivative(x)

    def _norm_hook(self, bn: nn.modules.batchnorm._BatchNorm, args: tuple[Any, ...], out: torch.Tensor) -> None:
        if not _uses_batch_stats(bn):
            return  # normalised with running statistics: a fixed affine map, run as is in the rate pass
        x = args[0].detach()
        z = x.flatten(0, 1) if _folds_time(bn) else x
        self._norm_rec[bn].add(*_batch_stats(z), bn.eps)

    # -------------------------------------------------------------------------------- rate pass
    @contextmanager
    def rate_mode(self) -> Iterator[RateGraph]:
        """Override ``forward`` of every neuron and BN layer with its rate-graph version."""
        patched: list[tuple[nn.Module, Any]] = []
        try:
            for node in self.neurons:
                patched.append((node, node.__dict__.get("forward", _MISSING)))
                node.forward = functools.partial(self._rate_neuron_forward, node)
            for bn in self.norms:
                patched.append((bn, bn.__dict__.get("forward", _MISSING)))
                bn.forward = functools.partial(self._rate_norm_forward, bn, bn.forward)
            yield self
        finally:
            for module, previous in reversed(patched):
                if previous is _MISSING:
                    module.__dict__.pop("forward", None)
                else:
                    module.__dict__["forward"] = previous

    def rate_pass(self, x_rate: torch.Tensor) -> torch.Tensor:
        """The T-free rate graph on the time-averaged input ``[1, B, ...]``; returns ``[1, B, K]``."""
        with self.rate_mode():
            return self.model(x_rate)

    def _rate_neuron_forward(self, node: BaseNode, x: torch.Tensor) -> torch.Tensor:
        rec = self._neuron_rec.get(node)
        if rec is None or rec.rate is None:
            raise RuntimeError(f"Rate-BP: neuron {type(node).__name__} was not run in the spike pass")
        if rec.rate.shape != x.shape:
            raise RuntimeError(
                f"Rate-BP: rate-pass input {tuple(x.shape)} of a neuron does not match its spike-pass rate "
                f"{tuple(rec.rate.shape)}"
            )
        return _RateNode.apply(x, rec.rate, rec.elig)

    def _rate_norm_forward(self, bn: nn.modules.batchnorm._BatchNorm, original: Any, x: torch.Tensor) -> torch.Tensor:
        rec = self._norm_rec.get(bn)
        if rec is None or rec.calls == 0 or not _uses_batch_stats(bn):
            return original(x)  # running statistics (eval-mode BN): an affine map, exact on rates
        fold = _folds_time(bn)
        z = x.flatten(0, 1) if fold else x
        mean, invstd = rec.stats(self.bn_stats)
        scale = bn.output_scale() if hasattr(bn, "output_scale") else 1.0  # tdBN's α·V_th
        weight = bn.weight
        if scale != 1.0:
            weight = torch.full((z.shape[1],), scale, dtype=z.dtype, device=z.device) if weight is None else weight * scale
        y = _RateNorm.apply(z, mean.to(z.dtype), invstd.to(z.dtype), weight, bn.bias)
        return y.unflatten(0, x.shape[:2]) if fold else y

    def clear(self) -> None:
        """Drop the recorded statistics (autograd keeps the eligibilities it needs)."""
        self._neuron_rec = {}
        self._norm_rec = {}


def rate_bp_forward(
    model: nn.Module,
    x_seq: torch.Tensor,
    grad_scale: float = 1.0,
    bn_stats: str = "time_average",
    rate_input: str = "mean_frame",
) -> torch.Tensor:
    """One Rate-BP training forward of ``model`` on ``x_seq`` ``[T, B, ...]``.

    Returns ``[1, B, K]``: its value is the spiking network's time-averaged output ``1/T Σ_t out_t`` (so a
    loss on ``outputs.mean(0)`` has the BPTT forward value), its autograd graph is the rate graph, and the
    gradient flowing into it is multiplied by ``grad_scale`` (the paper's code uses 1/T: it scales the loss
    gradient by 1/T, which for a loss of the outputs is the same as scaling the output gradient). Neuron
    states are reset before and after the spike pass. ``bn_stats`` (:data:`BN_STATS`) and ``rate_input``
    (:data:`RATE_INPUTS`) choose the BN statistics of per-step BN calls and the rate-pass input (module
    docstring).
    """
    if x_seq.dim() < 3:
        raise ValueError(f"Rate-BP expects a time-major input [T, B, ...], got shape {tuple(x_seq.shape)}")
    if rate_input not in RATE_INPUTS:
        raise ValueError(f"rate_input must be one of {RATE_INPUTS}, got {rate_input!r}")
    graph = RateGraph(model, bn_stats=bn_stats)
    reset_states(model)
    spike_out = graph.spike_pass(x_seq)
    reset_states(model)
    x_seq = x_seq.detach()
    if x_seq.shape[0] == 1 or x_seq.stride(0) == 0:  # T = 1, or direct encoding (the image repeated): exact
        x_rate = x_seq[:1]
    elif rate_input == "last_frame":
        x_rate = x_seq[-1:]
    else:
        x_rate = x_seq.mean(0, keepdim=True)
    rate_out = graph.rate_pass(x_rate)
    graph.clear()
    value = spike_out.mean(0, keepdim=True).to(rate_out.dtype)
    if grad_scale != 1.0:
        rate_out = rate_out * grad_scale
    return value + (rate_out - rate_out.detach())
