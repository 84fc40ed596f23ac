"""Backend ``"torch"``: the pure-PyTorch reference of the multi-step neuron, and the recursion itself.

This module holds the one statement of the charge / fire / reset recursion (:func:`forward_loop`) and
of its BPTT sweep (:func:`backward_loop`), for every neuron of :mod:`lightning_snn.neurons.nodes`::

    H[t] = c + λ·(V[t-1] - c) + k·X[t]          (c = v_reset for a hard reset, else 0)
    S[t] = Θ(H[t] - V_th)
    V[t] = H[t] - S[t]·V_th                      (v_reset=None)   or   H[t]·(1 - S[t]) + v_reset·S[t]

The ``"torch"`` backend runs them eagerly inside :class:`_MultiStepNeuron`; the ``"inductor"`` backend
compiles the same two functions with ``torch.compile``. Both are written as plain out-of-place tensor
code over ``[T, N]`` tensors so that dynamo can trace them; run eagerly they are also faster on the CPU
than the former in-place eager sweep (``benchmarks/neuron_backends.py``: forward + backward of
``[8, 64, 128, 8, 8]``, see ``benchmarks/results/neuron_backends.json``), so one statement serves both.

The leak λ and the input scale k are Python floats for IF/LIF and 0-d tensors for neurons that learn
them (PLIF, :mod:`lightning_snn.neurons.plif`); for a tensor the sweep also returns
``∂L/∂λ = Σ_t Σ_i g_H[t]·(V[t-1] - c)`` and ``∂L/∂k = Σ_t Σ_i g_H[t]·X[t]``, from which autograd
reaches the underlying parameter.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from ..surrogate import ATan, Erf, PiecewiseQuadratic, Rectangular, Sigmoid, SurrogateGradient

if TYPE_CHECKING:  # pragma: no cover
    from ..nodes import BaseNode

__all__ = ["backward_loop", "check", "forward_loop", "multi_step", "surrogate_derivative", "surrogate_key", "sweep"]

Scalar = float | torch.Tensor


def surrogate_key(surrogate: SurrogateGradient) -> tuple[str, float]:
    """``(kind, alpha)`` of a built-in surrogate (exact type), ``("other", 0)`` for anything else (including
    a rectangular window moved off the threshold, which has no closed form here)."""
    kind = {Rectangular: "rect", Sigmoid: "sigmoid", ATan: "atan", PiecewiseQuadratic: "pq", Erf: "erf"}.get(
        type(surrogate), "other"
    )
    if kind == "rect" and surrogate.center != 0.0:
        kind = "other"
    return kind, float(getattr(surrogate, "alpha", 0.0))


def surrogate_derivative(x: torch.Tensor, kind: str, alpha: float) -> torch.Tensor:
    """σ'(x) of the built-in surrogates as plain tensor ops (the formulas of ``surrogate.py``).

    rect: ``α·1{|x| < 1/(2α)}``; sigmoid: ``α·sig(αx)·(1 - sig(αx))``; atan: ``α/2 / (1 + (π/2·α·x)^2)``;
    pq: ``max(0, α - α²·|x|)``; erf: ``α/√π · exp(-(αx)^2)``.
    """
    if kind == "rect":
        return alpha * (x.abs() < 0.5 / alpha).to(x.dtype)
    if kind == "sigmoid":
        sg = torch.sigmoid(alpha * x)
        return alpha * (1.0 - sg) * sg
    if kind == "atan":
        ax = (math.pi / 2 * alpha) * x
        return (alpha / 2) / (1.0 + ax * ax)
    if kind == "pq":
        return (alpha - (alpha * alpha) * x.abs()).clamp_min(0.0)
    if kind == "erf":
        ax = alpha * x
        return (alpha / math.sqrt(math.pi)) * torch.exp(-(ax * ax))
    raise ValueError(f"no closed form for surrogate kind {kind!r}")


def _is_one(value: Scalar) -> bool:
    """True for the float 1 (IF's leak, an unscaled input); a tensor is never specialised away."""
    return isinstance(value, float) and value == 1.0


def forward_loop(
    x: torch.Tensor,
    v: torch.Tensor,
    th: torch.Tensor,
    *,
    T: int,
    decay: Scalar,
    input_scale: Scalar,
    v_reset: float | None,
    keep_h: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The recursion of the module docstring over ``T`` steps (no autograd graph wanted).

    ``x``: ``[T, N]`` in the compute dtype, ``v``: ``[N]``, ``th``: 0-d. Returns ``(S, H or None, V[T])``;
    ``keep_h=False`` (nothing to differentiate) does not keep H. Under ``torch.compile`` T and the
    configuration are constants, so the loop unrolls into a few fused kernels.
    """
    c = 0.0 if v_reset is None else v_reset
    hs = []
    ss = []
    for t in range(T):
        h = x[t] if _is_one(input_scale) else x[t] * input_scale
        if _is_one(decay):
            h = h + v
        elif c == 0.0:
            h = h + decay * v
        else:
            h = h + (c + decay * (v - c))
        s = (h >= th).to(h.dtype)
        # hard reset H·(1 - S) + v_reset·S as products: exact for S in {0, 1}, faster than a masked fill
        if v_reset is None:
            v = h - s * th
        else:
            v = h * (1.0 - s)
            if v_reset != 0.0:
                v = v + v_reset * s
        if keep_h:
            hs.append(h)
        ss.append(s)
    return torch.stack(ss), (torch.stack(hs) if keep_h else None), v


def backward_loop(
    grad_s: torch.Tensor,
    g_v: torch.Tensor,
    h_seq: torch.Tensor,
    th: torch.Tensor,
    *,
    T: int,
    decay: Scalar,
    input_scale: Scalar,
    v_reset: float | None,
    detach_reset: bool,
    kind: str,
    alpha: float,
    want_th: bool,
    x: torch.Tensor | None = None,
    v_init: torch.Tensor | None = None,
    surrogate: SurrogateGradient | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The reverse BPTT sweep of :func:`forward_loop`.

    With ``g_V[t]`` the gradient reaching ``V[t]`` and ``σ' = σ'(H[t] - V_th)``:

        soft reset:  ∂L/∂H[t] = (∂L/∂S[t] - g_V[t]·V_th·[not detach])·σ' + g_V[t]
        hard reset:  ∂L/∂H[t] = (∂L/∂S[t] + g_V[t]·(v_reset - H[t])·[not detach])·σ' + g_V[t]·(1 - S[t])
        ∂L/∂X[t] = k·∂L/∂H[t],   g_V[t-1] = λ·∂L/∂H[t]

    σ' is :func:`surrogate_derivative` of ``kind`` (what ``torch.compile`` traces) or, for
    ``kind="other"``, ``surrogate.derivative``. ``x`` (the unscaled input ``[T, N]``) is needed when k is a
    tensor and ``v_init`` (``[N]``) when λ is a tensor: their gradients ``Σ g_H·X`` and
    ``Σ g_H·(V[t-1] - c)`` are returned (V[t-1] recomputed from H[t-1]). Returns
    ``(∂L/∂X, ∂L/∂V[0], ∂L/∂V_th, ∂L/∂λ, ∂L/∂k)``, the last three None where not wanted.
    """
    c = 0.0 if v_reset is None else v_reset
    want_decay = isinstance(decay, torch.Tensor) and v_init is not None
    want_scale = isinstance(input_scale, torch.Tensor) and x is not None
    g_th = torch.zeros_like(h_seq[0]) if want_th else None
    g_decay = torch.zeros_like(h_seq[0]) if want_decay else None
    g_scale = torch.zeros_like(h_seq[0]) if want_scale else None
    grads = []
    for t in range(T - 1, -1, -1):
        h = h_seq[t]
        sg = surrogate.derivative(h - th) if kind == "other" else surrogate_derivative(h - th, kind, alpha)
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
        if g_decay is not None:  # ∂H[t]/∂λ = V[t-1] - c
            if t == 0:
                v_prev = v_init
            else:
                h_prev = h_seq[t - 1]
                s_prev = (h_prev >= th).to(h.dtype)
                v_prev = h_prev - s_prev * th if v_reset is None else h_prev * (1.0 - s_prev) + v_reset * s_prev
            g_decay = g_decay + g_h * (v_prev - c)
        if g_scale is not None:  # ∂H[t]/∂k = X[t]
            g_scale = g_scale + g_h * x[t]
        grads.append(g_h if _is_one(input_scale) else g_h * input_scale)
        g_v = g_h if _is_one(decay) else g_h * decay
    grads.reverse()
    return (
        torch.stack(grads),
        g_v,
        None if g_th is None else g_th.sum(),
        None if g_decay is None else g_decay.sum(),
        None if g_scale is None else g_scale.sum(),
    )


# The spike outputs are returned through ``.detach()``: an alias that is not a view of the [T, N] buffer, so
# that a view taken by the next layer keeps the announced spike tensor itself alive (compression.py matches
# saved tensors against it).


def _as_compute(value: Scalar, dtype: torch.dtype) -> Scalar:
    return value.to(dtype) if isinstance(value, torch.Tensor) else float(value)


def _grad_of(value: Scalar, grad: torch.Tensor | None) -> torch.Tensor | None:
    if grad is None or not isinstance(value, torch.Tensor):
        return None
    return grad.reshape(value.shape).to(value.dtype)


class _MultiStepNeuron(torch.autograd.Function):
    """Fused multi-step neuron: forward over T without a graph, backward by one reverse sweep (BPTT).

    Saves ``H`` (plus the input and the initial membrane where a learnable λ or k needs them).
    """

    @staticmethod
    def forward(ctx, x_seq, v_init, v_threshold, decay, input_scale, v_reset, surrogate, detach_reset):
        compute_dtype = torch.promote_types(x_seq.dtype, torch.float32)
        T = x_seq.shape[0]
        x = x_seq.to(compute_dtype).reshape(T, -1)
        v0 = v_init.to(compute_dtype).reshape(-1)
        lam, k = _as_compute(decay, compute_dtype), _as_compute(input_scale, compute_dtype)
        s_seq, h_seq, v = forward_loop(
            x, v0, v_threshold.to(compute_dtype), T=T, decay=lam, input_scale=k, v_reset=v_reset
        )
        need = ctx.needs_input_grad
        ctx.save_for_backward(h_seq, v_threshold, x if need[4] else None, v0 if need[3] else None)
        ctx.cfg = (decay, input_scale, v_reset, surrogate, detach_reset, x_seq.dtype, v_init.dtype, x_seq.shape)
        return s_seq.reshape(x_seq.shape).to(x_seq.dtype).detach(), v.reshape(v_init.shape)

    @staticmethod
    def backward(ctx, grad_s_seq, grad_v_last):
        h_seq, v_threshold, x, v0 = ctx.saved_tensors
        decay, input_scale, v_reset, surrogate, detach_reset, x_dtype, v_dtype, shape = ctx.cfg
        dtype = h_seq.dtype
        g_v = torch.zeros_like(h_seq[0]) if grad_v_last is None else grad_v_last.to(dtype).reshape(-1)
        grad_x, g_v0, g_th, g_decay, g_scale = backward_loop(
            grad_s_seq.to(dtype).reshape(h_seq.shape), g_v, h_seq, v_threshold.to(dtype),
            T=h_seq.shape[0], decay=_as_compute(decay, dtype), input_scale=_as_compute(input_scale, dtype),
            v_reset=v_reset, detach_reset=bool(detach_reset), kind="other", alpha=0.0,
            want_th=bool(ctx.needs_input_grad[2]), x=x, v_init=v0, surrogate=surrogate,
        )
        return (
            grad_x.reshape(shape).to(x_dtype), g_v0.reshape(shape[1:]).to(v_dtype), _grad_of(v_threshold, g_th),
            _grad_of(decay, g_decay), _grad_of(input_scale, g_scale), None, None, None,
        )


def sweep(
    x_seq: torch.Tensor, v_init: torch.Tensor, v_threshold: torch.Tensor, decay: Scalar, input_scale: Scalar,
    v_reset: float | None, keep_h: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """:func:`forward_loop` on ``[T, B, ...]`` tensors in the compute dtype (no autograd graph).

    Returns ``(S, H or None, V[T])`` shaped like the input (S and H in the compute dtype).
    """
    compute_dtype = torch.promote_types(x_seq.dtype, torch.float32)
    T = x_seq.shape[0]
    with torch.no_grad():
        s, h, v = forward_loop(
            x_seq.to(compute_dtype).reshape(T, -1), v_init.to(compute_dtype).reshape(-1),
            v_threshold.to(compute_dtype), T=T, decay=_as_compute(decay, compute_dtype),
            input_scale=_as_compute(input_scale, compute_dtype), v_reset=v_reset, keep_h=keep_h,
        )
    return s.reshape(x_seq.shape), (None if h is None else h.reshape(x_seq.shape)), v.reshape(v_init.shape)


def needs_graph(node: BaseNode, x_seq: torch.Tensor, v0: torch.Tensor) -> bool:
    """Whether anything of this call is differentiated (else the sweep runs without keeping H)."""
    if not torch.is_grad_enabled():
        return False
    leak = (node.v_threshold, node.decay, node.input_scale)
    return x_seq.requires_grad or v0.requires_grad or any(isinstance(p, torch.Tensor) and p.requires_grad for p in leak)


def check(node: BaseNode) -> None:
    """Every neuron configuration runs on the reference backend."""


def multi_step(node: BaseNode, x_seq: torch.Tensor, v0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes [T, B, ...], V[T])`` of ``node`` on ``x_seq`` from the membrane ``v0``."""
    if not needs_graph(node, x_seq, v0):
        s, _, v = sweep(x_seq, v0, node.v_threshold, node.decay, node.input_scale, node.v_reset, keep_h=False)
        return s.to(x_seq.dtype).detach(), v
    return _MultiStepNeuron.apply(
        x_seq, v0, node.v_threshold, node.decay, node.input_scale, node.v_reset, node.surrogate, node.detach_reset
    )
