"""Backend ``"inductor"``: the recursion of :mod:`.eager` compiled by ``torch.compile`` (CPU and GPU).

:func:`~.eager.forward_loop` and :func:`~.eager.backward_loop` are compiled as they are, T and the
neuron configuration specialised, the neuron count dynamic; compiled functions are cached per
configuration. A learnable leak or input scale (PLIF) enters as a 0-d tensor argument, so training it
does not recompile. Where ``torch.compile`` is unsupported it warns once and runs the reference; a
user-defined surrogate (not Rectangular / Sigmoid / ATan / PiecewiseQuadratic / Erf) also runs the
reference.
"""
from __future__ import annotations

import types
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from . import eager
from .eager import backward_loop, forward_loop, surrogate_key

if TYPE_CHECKING:  # pragma: no cover
    from ..nodes import BaseNode

__all__ = ["check", "multi_step"]

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


def _run_compiled(
    name: str, fn: Callable[..., Any], args: tuple[Any, ...], static: dict[str, Any], tensors: dict[str, Any]
) -> Any:
    """Run the compiled ``fn`` (``static`` keywords fixed, ``tensors`` keywords passed); on a compilation
    failure warn once, remember it and run ``fn`` eagerly."""
    compiled = _compiled(name, fn, **static)
    if compiled is not None:
        # detach() gives non-view aliases: dynamo guards on the base of view inputs, which would recompile
        # for every differently shaped producer of the same [T, N] tensor
        flat = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
        kw = {k: (a.detach() if isinstance(a, torch.Tensor) else a) for k, a in tensors.items()}
        try:
            return compiled(*flat, **kw)
        except Exception as err:
            if not _is_compile_error(err):
                raise
            _warn_fallback(err)
            _COMPILED[(name, tuple(sorted(static.items())))] = None
    return fn(*args, **static, **tensors)


def _is_compile_error(err: BaseException) -> bool:
    """Errors raised by dynamo / inductor / the C++ toolchain (as opposed to errors of the inputs)."""
    mod = type(err).__module__ or ""
    return mod.startswith(("torch._dynamo", "torch._inductor")) or type(err).__name__ in (
        "BackendCompilerFailed", "CppCompileError", "InductorError", "Unsupported",
    )


def _split(dtype: torch.dtype, **values: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Floats (and None) become compile-time constants; tensors (a learnable λ or k) stay arguments."""
    static, tensors = {}, {}
    for k, v in values.items():
        if isinstance(v, torch.Tensor):
            tensors[k] = v.to(dtype)
        else:
            static[k] = v if v is None else float(v)
    return static, tensors


class _InductorMultiStepNeuron(torch.autograd.Function):
    """:class:`~.eager._MultiStepNeuron` with its forward loop and backward sweep compiled.

    Only the pure tensor functions are compiled; the autograd Function itself stays eager, saves only
    what the reference saves, and computes the same gradients (to float round-off).
    """

    @staticmethod
    def forward(ctx, x_seq, v_init, v_threshold, decay, input_scale, v_reset, surrogate, detach_reset):
        compute_dtype = torch.promote_types(x_seq.dtype, torch.float32)
        T = x_seq.shape[0]
        x = x_seq.to(compute_dtype).reshape(T, -1)
        th = v_threshold.to(compute_dtype)
        v0 = v_init.to(compute_dtype).reshape(-1)
        leak, leak_t = _split(compute_dtype, decay=decay, input_scale=input_scale)
        static = dict(T=T, v_reset=v_reset, keep_h=True, **leak)
        s_seq, h_seq, v = _run_compiled("forward", forward_loop, (x, v0, th), static, leak_t)
        need = ctx.needs_input_grad
        ctx.save_for_backward(h_seq, v_threshold, x if need[4] else None, v0 if need[3] else None)
        ctx.cfg = (decay, input_scale, v_reset, surrogate, detach_reset, x_seq.dtype, v_init.dtype, x_seq.shape)
        return s_seq.reshape(x_seq.shape).to(x_seq.dtype).detach(), v.reshape(v_init.shape)

    @staticmethod
    def backward(ctx, grad_s_seq, grad_v_last):
        h_seq, v_threshold, x, v0 = ctx.saved_tensors
        decay, input_scale, v_reset, surrogate, detach_reset, x_dtype, v_dtype, shape = ctx.cfg
        T = h_seq.shape[0]
        dtype = h_seq.dtype
        g_s = grad_s_seq.to(dtype).reshape(T, -1)
        g_v = torch.zeros_like(h_seq[0]) if grad_v_last is None else grad_v_last.to(dtype).reshape(-1)
        kind, alpha = surrogate_key(surrogate)
        leak, leak_t = _split(dtype, decay=decay, input_scale=input_scale)
        if x is not None:
            leak_t["x"] = x
        if v0 is not None:
            leak_t["v_init"] = v0
        static = dict(
            T=T, v_reset=v_reset, detach_reset=bool(detach_reset), kind=kind, alpha=alpha,
            want_th=bool(ctx.needs_input_grad[2]), **leak,
        )
        grad_x, g_v0, g_th, g_decay, g_scale = _run_compiled(
            "backward", backward_loop, (g_s, g_v, h_seq, v_threshold.to(dtype)), static, leak_t
        )
        return (
            grad_x.reshape(shape).to(x_dtype), g_v0.reshape(shape[1:]).to(v_dtype), eager._grad_of(v_threshold, g_th),
            eager._grad_of(decay, g_decay), eager._grad_of(input_scale, g_scale), None, None, None,
        )


def check(node: BaseNode) -> None:
    """Every configuration runs (a surrogate without a closed form runs the reference, see module docstring)."""


def multi_step(node: BaseNode, x_seq: torch.Tensor, v0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes, V[T])`` through the compiled sweep; the no-gradient case and custom surrogates run the reference."""
    if surrogate_key(node.surrogate)[0] == "other":
        return eager.multi_step(node, x_seq, v0)
    if not eager.needs_graph(node, x_seq, v0):  # the compiled forward without keeping H
        compute_dtype = torch.promote_types(x_seq.dtype, torch.float32)
        T = x_seq.shape[0]
        leak, leak_t = _split(compute_dtype, decay=node.decay, input_scale=node.input_scale)
        args = (x_seq.to(compute_dtype).reshape(T, -1), v0.to(compute_dtype).reshape(-1), node.v_threshold.to(compute_dtype))
        with torch.no_grad():
            s, _, v = _run_compiled("forward", forward_loop, args, dict(T=T, v_reset=node.v_reset, keep_h=False, **leak), leak_t)
        return s.reshape(x_seq.shape).to(x_seq.dtype).detach(), v.reshape(v0.shape)
    return _InductorMultiStepNeuron.apply(
        x_seq, v0, node.v_threshold, node.decay, node.input_scale, node.v_reset, node.surrogate, node.detach_reset
    )
