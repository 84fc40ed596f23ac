"""Integrate-and-fire (IF) and leaky integrate-and-fire (LIF) neurons, multi-step and single-step.

One discrete-time update covers the neurons of every paper in this library (STBP, Wu et al. 2018,
Eq. 1-3; tdBN, Zheng et al. 2021, Eq. 1; SpikingJelly's LIF)::

    H[t] = c + λ·(V[t-1] - c) + k·X[t]          charge  (c = v_reset for hard reset, else 0)
    S[t] = Θ(H[t] - V_th)                        fire    (surrogate gradient in backward)
    V[t] = H[t] - S[t]·V_th                      reset by subtraction   (v_reset=None)
    V[t] = H[t]·(1 - S[t]) + v_reset·S[t]        reset to v_reset       (v_reset=float)

λ is the leak factor (1 for IF). Papers give it two ways: as a leak factor directly (STBP's ``tau=0.25``,
tdBN, Rate-BP, IDE's ``leaky``) -> pass ``decay``; or as a membrane time constant (SpikingJelly,
PLIF) -> pass ``tau``, giving λ = 1 - 1/τ and k = 1/τ if ``decay_input`` else 1.

Multi-step mode (``step_mode="m"``, input ``[T, B, ...]``) runs the loop inside one autograd Function
that keeps only ``H`` for backward and computes the BPTT gradient in a single reverse sweep; the
single-step mode (``step_mode="s"``, input ``[B, ...]``, state kept between calls) is written with
plain autograd ops. The tests check both against an independent unrolled reference and against
SpikingJelly's own neurons.

Backends of the multi-step path (``backend=``; the single-step path is plain autograd in every case):

* ``"torch"``: the reference, :class:`_MultiStepNeuron` (a Python loop over T of eager tensor ops).
* ``"inductor"``: the same Function with its forward loop and backward sweep (:func:`_forward_loop`,
  :func:`_backward_loop`) compiled by ``torch.compile`` (inductor), T and the neuron configuration
  specialised, the neuron count dynamic; compiled functions are cached per configuration. CPU and GPU.
  Where ``torch.compile`` is unsupported it warns once and runs the reference; a user-defined surrogate
  (not Rectangular / Sigmoid / ATan) also runs the reference.
* ``"triton"``: SpikingJelly's fused Triton kernels (CUDA tensors only), used only where they compute
  exactly this neuron: IF, or LIF with λ = 1 - 1/τ for a τ > 1 (from ``tau`` or ``decay`` in (0, 1)),
  the sigmoid or arc-tangent surrogate, and a fixed threshold. Anything else (the rectangular
  surrogate, ``decay=0``, a learnable threshold, a custom surrogate) raises a ``ValueError`` naming the
  unsupported combination. SpikingJelly 2.x has no CuPy kernels any more, so there is no ``"cupy"``.
"""
from __future__ import annotations

import math
import types
import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from .compression import note_spikes
from .surrogate import ATan, Rectangular, Sigmoid, SurrogateGradient

__all__ = ["BACKENDS", "Backend", "BaseNode", "IFNode", "LIFNode", "StepMode", "reset_states", "set_step_mode"]

StepMode = Literal["m", "s"]
Backend = Literal["torch", "inductor", "triton"]


def _forward_sweep(x_seq, v_init, v_threshold, decay, input_scale, v_reset, keep_h: bool):
    """The charge / fire / reset recursion over T (module docstring) in the compute dtype.

    Returns ``(S, H or None, V[T])``. ``keep_h=False`` (no gradient wanted: evaluation, Rate-BP's spike
    pass, IDE's simulation) writes every ``H[t]`` into one buffer instead of keeping the ``[T, ...]`` tensor.
    """
    compute_dtype = torch.promote_types(x_seq.dtype, torch.float32)
    x = x_seq.to(compute_dtype)
    th = v_threshold.to(compute_dtype)
    c = 0.0 if v_reset is None else v_reset
    v = v_init.to(compute_dtype)
    if input_scale != 1.0:
        x = x * input_scale
    h_seq = torch.empty_like(x) if keep_h else None
    h_buf = None if keep_h else torch.empty_like(x[0])
    s_seq = torch.empty_like(x)
    for t in range(x.shape[0]):
        # H[t] and S[t] are written in place (same arithmetic as the docstring's equations)
        h = h_seq[t] if h_seq is not None else h_buf
        if decay == 1.0:
            torch.add(x[t], v, out=h)
        elif c == 0.0:
            torch.mul(v, decay, out=h).add_(x[t])
        else:
            torch.sub(v, c, out=h).mul_(decay).add_(c).add_(x[t])
        s = s_seq[t]
        torch.ge(h, th, out=s)
        # V[t], a new tensor (never h). Hard reset H·(1 - S) + v_reset·S as products, which is exact for
        # S in {0, 1} and several times faster than masked_fill on the CPU
        if v_reset is None:
            v = h - s * th
        else:
            v = h * (1.0 - s)
            if v_reset != 0.0:
                v.add_(s, alpha=v_reset)
    return s_seq, h_seq, v


class _MultiStepNeuron(torch.autograd.Function):
    """Fused multi-step neuron: forward over T without a graph, backward by one reverse sweep (BPTT)."""

    @staticmethod
    def forward(ctx, x_seq, v_init, v_threshold, decay, input_scale, v_reset, surrogate, detach_reset):
        s_seq, h_seq, v = _forward_sweep(x_seq, v_init, v_threshold, decay, input_scale, v_reset, keep_h=True)
        ctx.save_for_backward(h_seq, v_threshold)
        ctx.cfg = (decay, input_scale, v_reset, surrogate, detach_reset, x_seq.dtype, v_init.dtype)
        return s_seq.to(x_seq.dtype), v

    @staticmethod
    def backward(ctx, grad_s_seq, grad_v_last):
        h_seq, v_threshold = ctx.saved_tensors
        decay, input_scale, v_reset, surrogate, detach_reset, x_dtype, v_dtype = ctx.cfg
        th = v_threshold.to(h_seq.dtype)
        grad_s_seq = grad_s_seq.to(h_seq.dtype)
        g_v = torch.zeros_like(h_seq[0]) if grad_v_last is None else grad_v_last.to(h_seq.dtype)
        grad_x = torch.empty_like(h_seq)
        g_th = torch.zeros_like(h_seq[0]) if ctx.needs_input_grad[2] else None
        sg_seq = surrogate.derivative(h_seq - th)  # all steps at once
        fired_seq = (h_seq >= th).to(h_seq.dtype) if (v_reset is not None or g_th is not None) else None
        if v_reset is not None:  # per-step factors of the hard reset, for all steps at once
            keep_seq = 1.0 - fired_seq  # ∂V/∂H through the (1 - S) term
            reset_gap = None if detach_reset else v_reset - h_seq  # ∂V/∂S
        for t in range(h_seq.shape[0] - 1, -1, -1):
            h = h_seq[t]
            sg = sg_seq[t]
            g_s = grad_s_seq[t]
            g_h = grad_x[t]  # dL/dH[t], written in place
            if v_reset is None:  # V = H - S·Vth
                if not detach_reset:
                    g_s = g_s - g_v * th
                torch.mul(g_s, sg, out=g_h).add_(g_v)
                if g_th is not None:
                    g_th -= g_s * sg + g_v * fired_seq[t]
            else:  # V = H·(1 - S) + v_reset·S
                if not detach_reset:
                    g_s = torch.addcmul(g_s, g_v, reset_gap[t])
                torch.mul(g_s, sg, out=g_h).addcmul_(g_v, keep_seq[t])
                if g_th is not None:
                    g_th -= g_s * sg
            g_v = g_h * decay if decay != 1.0 else g_h
        if input_scale != 1.0:
            g_v = g_v.clone()  # may alias grad_x[0]
            grad_x.mul_(input_scale)
        grad_th = None
        if g_th is not None:
            grad_th = g_th.sum().reshape(v_threshold.shape).to(v_threshold.dtype)
        return grad_x.to(x_dtype), g_v.to(v_dtype), grad_th, None, None, None, None, None


# ============================================================================ fast backends
#: backends of the multi-step path; "torch" is the reference the tests compare the others against
BACKENDS: tuple[str, ...] = ("torch", "inductor", "triton")


def _surrogate_key(surrogate: SurrogateGradient) -> tuple[str, float]:
    """``(kind, alpha)`` of a built-in surrogate (exact type), ``("other", 0)`` for anything else (including
    a rectangular window moved off the threshold, which has no compiled form)."""
    kind = {Rectangular: "rect", Sigmoid: "sigmoid", ATan: "atan"}.get(type(surrogate), "other")
    if kind == "rect" and surrogate.center != 0.0:
        kind = "other"
    return kind, float(getattr(surrogate, "alpha", 0.0))


def _surrogate_derivative(x: torch.Tensor, kind: str, alpha: float) -> torch.Tensor:
    """σ'(x) of the built-in surrogates written as plain tensor ops (same formulas as ``surrogate.py``).

    rect: ``α·1{|x| < 1/(2α)}`` (α = 1/width); sigmoid: ``α·sig(αx)·(1 - sig(αx))``;
    atan: ``α/2 / (1 + (π/2·α·x)^2)``.
    """
    if kind == "rect":
        return alpha * (x.abs() < 0.5 / alpha).to(x.dtype)
    if kind == "sigmoid":
        sg = torch.sigmoid(alpha * x)
        return alpha * (1.0 - sg) * sg
    if kind == "atan":
        ax = (math.pi / 2 * alpha) * x
        return (alpha / 2) / (1.0 + ax * ax)
    raise ValueError(f"no closed form for surrogate kind {kind!r}")


def _forward_loop(
    x: torch.Tensor, v: torch.Tensor, th: torch.Tensor, *, T: int, decay: float, input_scale: float, v_reset: float | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The charge / fire / reset recursion of the module docstring over ``T`` steps (no autograd).

    ``x``: ``[T, N]`` in the compute dtype, ``v``: ``[N]``, ``th``: 0-d. Returns ``(S, H, V[T])``.
    Written for ``torch.compile``: T and the configuration are Python constants, so the loop unrolls
    and the whole sequence becomes one fused kernel per step group.
    """
    c = 0.0 if v_reset is None else v_reset
    hs = []
    ss = []
    for t in range(T):
        h = x[t] * input_scale if input_scale != 1.0 else x[t]
        h = h + (v if decay == 1.0 else c + decay * (v - c))
        fired = h >= th
        s = fired.to(h.dtype)
        v = h - s * th if v_reset is None else torch.where(fired, torch.full_like(h, v_reset), h)
        hs.append(h)
        ss.append(s)
    return torch.stack(ss), torch.stack(hs), v


def _backward_loop(
    grad_s: torch.Tensor,
    g_v: torch.Tensor,
    h_seq: torch.Tensor,
    th: torch.Tensor,
    *,
    T: int,
    decay: float,
    input_scale: float,
    v_reset: float | None,
    detach_reset: bool,
    kind: str,
    alpha: float,
    want_th: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The reverse BPTT sweep of :class:`_MultiStepNeuron` as a pure function (for ``torch.compile``).

    With ``g_V[t]`` the gradient reaching ``V[t]`` and ``σ' = σ'(H[t] - V_th)``:

        soft reset:  ∂L/∂H[t] = (∂L/∂S[t] - g_V[t]·V_th·[not detach])·σ' + g_V[t]
        hard reset:  ∂L/∂H[t] = (∂L/∂S[t] + g_V[t]·(v_reset - H[t])·[not detach])·σ' + g_V[t]·(1 - S[t])
        ∂L/∂X[t] = k·∂L/∂H[t],   g_V[t-1] = λ·∂L/∂H[t]

    Returns ``(∂L/∂X, ∂L/∂V[0], ∂L/∂V_th or None)``.
    """
    g_th = torch.zeros_like(h_seq[0]) if want_th else None
    grads = []
    for t in range(T - 1, -1, -1):
        h = h_seq[t]
        sg = _surrogate_derivative(h - th, kind, alpha)
        g_s = grad_s[t]
        if v_reset is None:
            if not detach_reset:
                g_s = g_s - g_v * th
            g_h = g_s * sg + g_v
            if g_th is not None:
                g_th = g_th - (g_s * sg + g_v * (h >= th).to(h.dtype))
        else:
            s = (h >= th).to(h.dtype)
            if not detach_reset:
                g_s = g_s + g_v * (v_reset - h)
            g_h = g_s * sg + g_v * (1.0 - s)
            if g_th is not None:
                g_th = g_th - g_s * sg
        grads.append(g_h * input_scale if input_scale != 1.0 else g_h)
        g_v = g_h * decay if decay != 1.0 else g_h
    grads.reverse()
    return torch.stack(grads), g_v, (None if g_th is None else g_th.sum())


_COMPILED: dict[tuple[Any, ...], Callable[..., Any] | None] = {}
_COMPILE_WARNED: set[str] = set()


def _compiled(name: str, fn: Callable[..., Any], **static: Any) -> Callable[..., Any] | None:
    """``torch.compile`` of ``fn`` with the keyword arguments ``static`` fixed, cached per ``(name, static)``.

    The tensors are flattened to ``[T, N]`` / ``[N]`` and compiled with ``dynamic=True``, so one compiled
    graph serves every layer size of a network; T and the neuron configuration are specialised
    constants. Returns None (and warns once) where ``torch.compile`` is unsupported.
    """
    key = (name, tuple(sorted(static.items())))
    if key in _COMPILED:
        return _COMPILED[key]
    try:
        if not hasattr(torch, "compile"):
            raise RuntimeError("this torch has no torch.compile")
        compiled = torch.compile(_specialise(fn, static, len(_COMPILED)), dynamic=True, fullgraph=True)
    except Exception as err:  # pragma: no cover - platform dependent
        _warn_fallback(err)
        compiled = None
    _COMPILED[key] = compiled
    return compiled


def _specialise(fn: Callable[..., Any], static: dict[str, Any], tag: int) -> Callable[..., Any]:
    """A copy of ``fn`` with its keyword-only arguments fixed to ``static`` and a code object of its own.

    ``torch.compile`` keeps its cache (and its recompilation limit) per code object; a fresh code object
    per configuration keeps the configurations of a network from evicting each other.
    """
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{tag}")
    out = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    out.__kwdefaults__ = {**(fn.__kwdefaults__ or {}), **static}
    out.__qualname__ = f"{fn.__qualname__}_{tag}"
    return out


def _warn_fallback(err: BaseException) -> None:
    msg = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if msg not in _COMPILE_WARNED:
        _COMPILE_WARNED.add(msg)
        warnings.warn(
            f"neuron backend 'inductor': torch.compile is unsupported here ({msg}); "
            "falling back to the 'torch' backend (same results, no compilation)",
            RuntimeWarning,
            stacklevel=4,
        )


def _run_compiled(name: str, fn: Callable[..., Any], args: tuple[Any, ...], static: dict[str, Any]) -> Any:
    """Run the compiled ``fn``; on a compilation failure warn once, remember it and run ``fn`` eagerly."""
    compiled = _compiled(name, fn, **static)
    if compiled is not None:
        # detach() gives non-view aliases: dynamo guards on the base of view inputs, which would recompile
        # for every differently shaped producer of the same [T, N] tensor
        flat = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
        try:
            return compiled(*flat)
        except Exception as err:
            if not _is_compile_error(err):
                raise
            _warn_fallback(err)
            _COMPILED[(name, tuple(sorted(static.items())))] = None
    return fn(*args, **static)


def _is_compile_error(err: BaseException) -> bool:
    """Errors raised by dynamo / inductor / the C++ toolchain (as opposed to errors of the inputs)."""
    mod = type(err).__module__ or ""
    return mod.startswith(("torch._dynamo", "torch._inductor")) or type(err).__name__ in (
        "BackendCompilerFailed", "CppCompileError", "InductorError", "Unsupported",
    )


class _InductorMultiStepNeuron(torch.autograd.Function):
    """:class:`_MultiStepNeuron` with its forward loop and backward sweep compiled by ``torch.compile``.

    Only the pure tensor functions (:func:`_forward_loop`, :func:`_backward_loop`) are compiled; the
    autograd Function itself stays eager, saves only ``H`` for backward, and computes the same
    gradients as the reference (to float round-off).
    """

    @staticmethod
    def forward(ctx, x_seq, v_init, v_threshold, decay, input_scale, v_reset, surrogate, detach_reset):
        compute_dtype = torch.promote_types(x_seq.dtype, torch.float32)
        T = x_seq.shape[0]
        x = x_seq.to(compute_dtype).reshape(T, -1)
        th = v_threshold.to(compute_dtype)
        v0 = v_init.to(compute_dtype).reshape(-1)
        static = dict(T=T, decay=float(decay), input_scale=float(input_scale), v_reset=v_reset)
        s_seq, h_seq, v = _run_compiled("forward", _forward_loop, (x, v0, th), static)
        ctx.save_for_backward(h_seq, v_threshold)
        ctx.cfg = (decay, input_scale, v_reset, surrogate, detach_reset, x_seq.dtype, v_init.dtype, x_seq.shape)
        return s_seq.reshape(x_seq.shape).to(x_seq.dtype), v.reshape(v_init.shape)

    @staticmethod
    def backward(ctx, grad_s_seq, grad_v_last):
        h_seq, v_threshold = ctx.saved_tensors
        decay, input_scale, v_reset, surrogate, detach_reset, x_dtype, v_dtype, shape = ctx.cfg
        T = h_seq.shape[0]
        th = v_threshold.to(h_seq.dtype)
        g_s = grad_s_seq.to(h_seq.dtype).reshape(T, -1)
        g_v = torch.zeros_like(h_seq[0]) if grad_v_last is None else grad_v_last.to(h_seq.dtype).reshape(-1)
        want_th = bool(ctx.needs_input_grad[2])
        kind, alpha = _surrogate_key(surrogate)
        static = dict(
            T=T, decay=float(decay), input_scale=float(input_scale), v_reset=v_reset,
            detach_reset=bool(detach_reset), kind=kind, alpha=alpha, want_th=want_th,
        )
        grad_x, g_v0, g_th = _run_compiled("backward", _backward_loop, (g_s, g_v, h_seq, th), static)
        grad_th = None if g_th is None else g_th.reshape(v_threshold.shape).to(v_threshold.dtype)
        return (
            grad_x.reshape(shape).to(x_dtype), g_v0.reshape(shape[1:]).to(v_dtype), grad_th,
            None, None, None, None, None,
        )


def _triton_kernels(integrate_only: bool) -> Any:
    """SpikingJelly's Triton IF or LIF kernels (imported lazily: they need triton and a CUDA device)."""
    try:
        if integrate_only:
            from spikingjelly._ops.if_ import triton as kernels
        else:
            from spikingjelly._ops.lif import triton as kernels
    except Exception as err:  # ImportError of triton, or of the kernel module
        raise RuntimeError(
            f"neuron backend 'triton' needs triton and SpikingJelly's Triton kernels "
            f"(spikingjelly._ops.{'if_' if integrate_only else 'lif'}.triton): {type(err).__name__}: {err}"
        ) from err
    return kernels


class _TritonMultiStepNeuron(torch.autograd.Function):
    """Multi-step IF/LIF through SpikingJelly's fused Triton kernels (one launch forward, one backward).

    SpikingJelly's LIF charges ``H = V - (V - c)/τ + X`` (``decay_input=False``) or
    ``H = V + (X - (V - c))/τ`` (``decay_input=True``), i.e. the charge equation of the module docstring
    with λ = 1 - 1/τ and k = 1 or 1/τ; its reset, detach_reset and surrogate backward are ours
    term by term. ``cfg`` carries ``(tau or None for IF, decay_input, v_threshold, v_reset, detach_reset,
    surrogate_id, alpha)`` as validated by :meth:`BaseNode._triton_config`.
    """

    @staticmethod
    def forward(ctx, x_seq, v_init, cfg):
        tau, decay_input, th, v_reset, detach_reset, sid, alpha = cfg
        v0 = v_init.to(torch.float32).contiguous()
        x = x_seq.contiguous()
        if tau is None:
            kernels = _triton_kernels(True)
            s_seq, v, h_seq = kernels._forward_impl(x, v0, th, v_reset, detach_reset, alpha, False, sid)
        else:
            kernels = _triton_kernels(False)
            s_seq, v, h_seq = kernels._forward_impl(x, v0, tau, decay_input, th, v_reset, detach_reset, alpha, False, sid)
        ctx.save_for_backward(h_seq)
        ctx.cfg = cfg
        ctx.dtypes = (x_seq.dtype, v_init.dtype)
        return s_seq, v

    @staticmethod
    def backward(ctx, grad_s_seq, grad_v_last):
        (h_seq,) = ctx.saved_tensors
        tau, decay_input, th, v_reset, detach_reset, sid, alpha = ctx.cfg
        x_dtype, v_dtype = ctx.dtypes
        gs = (torch.zeros_like(h_seq, dtype=x_dtype) if grad_s_seq is None else grad_s_seq.to(x_dtype)).contiguous()
        gv = (torch.zeros_like(h_seq[0]) if grad_v_last is None else grad_v_last.to(torch.float32)).contiguous()
        if tau is None:
            gx, gv0 = _triton_kernels(True)._backward_impl(gs, gv, h_seq, th, v_reset, detach_reset, alpha, False, sid)
        else:
            gx, gv0 = _triton_kernels(False)._backward_impl(
                gs, gv, h_seq, tau, decay_input, th, v_reset, detach_reset, alpha, False, sid
            )
        return gx.to(x_dtype), gv0.to(v_dtype), None


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
            only, for the neuron configurations they implement exactly); see the module docstring.

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
        if backend == "cupy":
            raise ValueError(
                "neuron backend 'cupy' is not available: SpikingJelly 2.x replaced its CuPy kernels by Triton "
                "kernels; use backend 'triton' (CUDA) or 'inductor' (CPU or CUDA)"
            )
        if backend not in BACKENDS:
            raise ValueError(f"unknown neuron backend {backend!r}; available: {', '.join(repr(b) for b in BACKENDS)}")
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
        if backend == "triton":
            self._triton_config()  # fail at construction on a combination the kernels do not implement

    is_stateful = True
    # leak factor λ and input scale k of the charge equation (module docstring)
    decay: float = 1.0
    input_scale: float = 1.0

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
        if self.backend == "triton":
            if x_seq.device.type != "cuda":
                raise RuntimeError(
                    f"{type(self).__name__}: neuron backend 'triton' runs on CUDA tensors only, got a tensor on "
                    f"{x_seq.device}; use backend 'torch' or 'inductor' on the CPU"
                )
            if x_seq.dtype not in (torch.float32, torch.float16, torch.bfloat16):
                raise ValueError(
                    f"{type(self).__name__}: neuron backend 'triton' takes float32/float16/bfloat16 inputs, got {x_seq.dtype}"
                )
            spikes, self.v = _TritonMultiStepNeuron.apply(x_seq, v0, self._triton_config_cached())
            return spikes
        if self.backend == "torch" and not (
            torch.is_grad_enabled() and (x_seq.requires_grad or v0.requires_grad or self.v_threshold.requires_grad)
        ):  # nothing to differentiate: the same sweep without keeping H
            with torch.no_grad():
                s_seq, _, v = _forward_sweep(
                    x_seq, v0, self.v_threshold, self.decay, self.input_scale, self.v_reset, keep_h=False
                )
            self.v = v
            return s_seq.to(x_seq.dtype)
        # a user-defined surrogate has no closed form to compile: it runs the reference Function
        compiled = self.backend == "inductor" and _surrogate_key(self.surrogate)[0] != "other"
        fn = _InductorMultiStepNeuron if compiled else _MultiStepNeuron
        spikes, self.v = fn.apply(
            x_seq, v0, self.v_threshold, self.decay, self.input_scale, self.v_reset, self.surrogate, self.detach_reset
        )
        return spikes

    def _triton_config_cached(self) -> tuple[float | None, bool, float, float | None, bool, int, float]:
        """:meth:`_triton_config`, recomputed only when the threshold tensor (its version counter or
        storage) or another setting changed: reading a CUDA threshold as a float synchronises the device."""
        th = self.v_threshold
        key = (th._version, th.data_ptr(), id(self.surrogate), self.detach_reset, self.v_reset, self.decay, self.input_scale)
        cached = getattr(self, "_triton_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, self._triton_config())
            self._triton_cache = cached
        return cached[1]

    def _triton_config(self) -> tuple[float | None, bool, float, float | None, bool, int, float]:
        """Map this neuron onto SpikingJelly's Triton kernels, or raise ``ValueError`` naming what differs.

        IF (λ = 1, k = 1) -> the IF kernel. LIF -> the LIF kernel with τ = 1/(1 - λ): ``decay_input=False``
        when k = 1 and ``decay_input=True`` when k = 1/τ; any other (λ, k) pair has no kernel.
        """
        name = type(self).__name__
        if isinstance(self.v_threshold, nn.Parameter):
            raise ValueError(
                f"{name}: backend 'triton' does not support learnable_threshold=True (SpikingJelly's kernels take a "
                "fixed float threshold and return no threshold gradient); use backend 'torch' or 'inductor'"
            )
        kind, alpha = _surrogate_key(self.surrogate)
        sid = {"sigmoid": 0, "atan": 1}.get(kind)
        if sid is None:
            raise ValueError(
                f"{name}: backend 'triton' does not support the surrogate {type(self.surrogate).__name__} "
                "(SpikingJelly's fused kernels implement Sigmoid and ATan among ours, not the rectangular window); "
                "use backend 'torch' or 'inductor'"
            )
        decay, k = float(self.decay), float(self.input_scale)
        if decay == 1.0:
            if k != 1.0:
                raise ValueError(f"{name}: backend 'triton' has no IF kernel with input scale {k}")
            tau = None
            decay_input = False
        else:
            if not 0.0 < decay < 1.0:
                raise ValueError(
                    f"{name}: backend 'triton' needs a leak factor decay in (0, 1) (SpikingJelly's LIF takes tau = "
                    f"1/(1 - decay) > 1), got decay={decay:g}; use backend 'torch' or 'inductor'"
                )
            tau = getattr(self, "tau", None) or 1.0 / (1.0 - decay)
            if k == 1.0:
                decay_input = False
            elif math.isclose(k, 1.0 / tau, rel_tol=1e-12):
                decay_input = True
            else:
                raise ValueError(
                    f"{name}: backend 'triton' cannot express decay={decay:g} with input scale {k:g} "
                    "(SpikingJelly's LIF scales the input by 1 or 1/tau)"
                )
        return tau, decay_input, float(self.v_threshold), self.v_reset, bool(self.detach_reset), sid, alpha

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
        if backend == "triton":
            self._triton_config()  # now with this neuron's leak


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
