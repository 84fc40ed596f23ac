"""Backend ``"triton"``: SpikingJelly's fused Triton kernels (CUDA tensors only).

Used only where the kernels compute exactly this neuron: IF, LIF with λ = 1 - 1/τ for a τ > 1 (from
``tau`` or ``decay`` in (0, 1)), or PLIF (its own kernels, which also return ∂L/∂w), the sigmoid, arc-tangent, piecewise-quadratic or erf surrogate (the
kernels' surrogate ids 0, 1, 2, 6), and a fixed threshold. Anything else (the rectangular surrogate,
``decay=0``, a learnable threshold, a learnable leak other than PLIF's, a custom surrogate) raises a ``ValueError`` naming the
unsupported combination, when the neuron is built. The kernels are imported on first use, so this
module imports on machines without triton or CUDA. SpikingJelly 2.x has no CuPy kernels any more, so
there is no ``"cupy"``.
"""
from __future__ import annotations

import importlib
import math
from typing import TYPE_CHECKING, Any

import torch

from .eager import surrogate_key

if TYPE_CHECKING:  # pragma: no cover
    from ..nodes import BaseNode

__all__ = ["check", "config", "config_cached", "multi_step"]

#: our surrogate kinds -> SpikingJelly's kernel surrogate ids (spikingjelly._ops.surrogate._SURROGATE_IDS)
SURROGATE_IDS: dict[str, int] = {"sigmoid": 0, "atan": 1, "pq": 2, "erf": 6}

#: (τ, None for IF or "plif", decay_input, v_threshold, v_reset, detach_reset, surrogate id, alpha)
TritonConfig = tuple[float | str | None, bool, float, float | None, bool, int, float]


def _triton_kernels(integrate_only: bool) -> Any:
    """SpikingJelly's Triton IF or LIF kernels (imported lazily: they need triton and a CUDA device)."""
    return _import_kernels("if_" if integrate_only else "lif")


def _plif_kernels() -> Any:
    """SpikingJelly's Triton PLIF kernels (imported lazily)."""
    return _import_kernels("plif")


def _import_kernels(neuron: str) -> Any:
    try:
        return importlib.import_module(f"spikingjelly._ops.{neuron}.triton")
    except Exception as err:  # ImportError of triton, or of the kernel module
        raise RuntimeError(
            f"neuron backend 'triton' needs triton and SpikingJelly's Triton kernels "
            f"(spikingjelly._ops.{neuron}.triton): {type(err).__name__}: {err}"
        ) from err


class _TritonMultiStepNeuron(torch.autograd.Function):
    """Multi-step IF/LIF through SpikingJelly's fused Triton kernels (one launch forward, one backward).

    SpikingJelly's LIF charges ``H = V - (V - c)/τ + X`` (``decay_input=False``) or
    ``H = V + (X - (V - c))/τ`` (``decay_input=True``), i.e. the charge equation of :mod:`.eager`
    with λ = 1 - 1/τ and k = 1 or 1/τ; its reset, detach_reset and surrogate backward are ours
    term by term. ``cfg`` carries ``(tau or None for IF, decay_input, v_threshold, v_reset, detach_reset,
    surrogate_id, alpha)`` as validated by :func:`config`.
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


class _TritonPLIF(torch.autograd.Function):
    """Multi-step PLIF through SpikingJelly's fused Triton PLIF kernels.

    They charge ``H = V + (X - (V - c))·q`` (``decay_input``) or ``H = V - (V - c)·q + X`` with
    ``q = sigmoid(w)`` (:mod:`lightning_snn.neurons.plif`) and return ``∂L/∂w`` themselves; the backward
    needs the input and the initial membrane besides ``H``. ``cfg`` is :func:`config`'s tuple with
    ``"plif"`` in place of τ.
    """

    @staticmethod
    def forward(ctx, x_seq, v_init, w, cfg):
        _, decay_input, th, v_reset, detach_reset, sid, alpha = cfg
        v0 = v_init.to(torch.float32).contiguous()
        x = x_seq.contiguous()
        s_seq, v, h_seq = _plif_kernels()._forward_impl(x, v0, w, decay_input, th, v_reset, detach_reset, alpha, False, sid)
        ctx.save_for_backward(x, v0, w, h_seq)
        ctx.cfg = cfg
        ctx.v_dtype = v_init.dtype
        return s_seq, v

    @staticmethod
    def backward(ctx, grad_s_seq, grad_v_last):
        x, v0, w, h_seq = ctx.saved_tensors
        _, decay_input, th, v_reset, detach_reset, sid, alpha = ctx.cfg
        gs = (torch.zeros_like(x) if grad_s_seq is None else grad_s_seq.to(x.dtype)).contiguous()
        gv = (torch.zeros_like(v0) if grad_v_last is None else grad_v_last.to(torch.float32)).contiguous()
        gx, gv0, gw = _plif_kernels()._backward_impl(
            gs, gv, x, v0, w, h_seq, decay_input, th, v_reset, detach_reset, alpha, False, sid
        )
        return gx, gv0.to(ctx.v_dtype), gw.reshape(w.shape).to(w.dtype), None


def _is_plif(node: BaseNode) -> bool:
    from ..plif import PLIFNode  # here: plif.py imports the nodes that import the backends

    return type(node) is PLIFNode


def config(node: BaseNode) -> TritonConfig:
    """Map ``node`` onto SpikingJelly's Triton kernels, or raise ``ValueError`` naming what differs.

    IF (λ = 1, k = 1) -> the IF kernel. LIF -> the LIF kernel with τ = 1/(1 - λ): ``decay_input=False``
    when k = 1 and ``decay_input=True`` when k = 1/τ; any other (λ, k) pair has no kernel.
    """
    name = type(node).__name__
    if isinstance(node.v_threshold, torch.nn.Parameter):
        raise ValueError(
            f"{name}: backend 'triton' does not support learnable_threshold=True (SpikingJelly's kernels take a "
            "fixed float threshold and return no threshold gradient); use backend 'torch' or 'inductor'"
        )
    plif = _is_plif(node)
    if not plif and (isinstance(node.decay, torch.Tensor) or isinstance(node.input_scale, torch.Tensor)):
        raise ValueError(
            f"{name}: backend 'triton' does not support a learnable leak other than PLIF's (the IF/LIF kernels "
            "take a fixed τ); use backend 'torch' or 'inductor'"
        )
    kind, alpha = surrogate_key(node.surrogate)
    sid = SURROGATE_IDS.get(kind)
    if sid is None:
        raise ValueError(
            f"{name}: backend 'triton' does not support the surrogate {type(node.surrogate).__name__} "
            "(SpikingJelly's fused kernels implement Sigmoid, ATan, PiecewiseQuadratic and Erf among ours, not the "
            "rectangular window); use backend 'torch' or 'inductor'"
        )
    if plif:
        return "plif", node.decay_input, float(node.v_threshold), node.v_reset, bool(node.detach_reset), sid, alpha
    decay, k = float(node.decay), float(node.input_scale)
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
        tau = getattr(node, "tau", None) or 1.0 / (1.0 - decay)
        if k == 1.0:
            decay_input = False
        elif math.isclose(k, 1.0 / tau, rel_tol=1e-12):
            decay_input = True
        else:
            raise ValueError(
                f"{name}: backend 'triton' cannot express decay={decay:g} with input scale {k:g} "
                "(SpikingJelly's LIF scales the input by 1 or 1/tau)"
            )
    return tau, decay_input, float(node.v_threshold), node.v_reset, bool(node.detach_reset), sid, alpha


def config_cached(node: BaseNode) -> TritonConfig:
    """:func:`config`, recomputed only when the threshold tensor (its version counter or storage) or
    another setting changed: reading a CUDA threshold as a float synchronises the device."""
    th = node.v_threshold
    leak = tuple(p if isinstance(p, float) else None for p in (node.decay, node.input_scale))  # PLIF: w, not cfg
    key = (th._version, th.data_ptr(), id(node.surrogate), node.detach_reset, node.v_reset, *leak,
           getattr(node, "decay_input", None))
    cached = getattr(node, "_triton_cache", None)
    if cached is None or cached[0] != key:
        cached = (key, config(node))
        node._triton_cache = cached
    return cached[1]


def check(node: BaseNode) -> None:
    """Fail at construction on a combination the kernels do not implement."""
    config(node)


def multi_step(node: BaseNode, x_seq: torch.Tensor, v0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes, V[T])`` from the fused kernels; CUDA float32/float16/bfloat16 inputs only."""
    name = type(node).__name__
    if x_seq.device.type != "cuda":
        raise RuntimeError(
            f"{name}: neuron backend 'triton' runs on CUDA tensors only, got a tensor on "
            f"{x_seq.device}; use backend 'torch' or 'inductor' on the CPU"
        )
    if x_seq.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"{name}: neuron backend 'triton' takes float32/float16/bfloat16 inputs, got {x_seq.dtype}")
    cfg = config_cached(node)
    if cfg[0] == "plif":
        return _TritonPLIF.apply(x_seq, v0, node.w, cfg)
    return _TritonMultiStepNeuron.apply(x_seq, v0, cfg)
