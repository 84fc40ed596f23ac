"""Backends of the multi-step neuron path: a registry ``name -> module`` (the single-step path is plain
autograd in every case).

* ``"torch"`` (:mod:`.eager`): the pure-PyTorch reference, and the one statement of the recursion.
* ``"inductor"`` (:mod:`.inductor`): the same recursion compiled by ``torch.compile`` (CPU and GPU).
* ``"triton"`` (:mod:`.triton`): SpikingJelly's fused Triton kernels (CUDA only, where they compute
  exactly this neuron).

A backend module provides ``check(node)`` (raise ``ValueError`` naming a configuration it cannot run;
called when the neuron is built) and ``multi_step(node, x_seq, v0) -> (spikes, V[T])``. Modules are
imported on first use, so a backend whose dependencies are missing fails only when selected. A new
backend is one module plus one line in :data:`_REGISTRY`.
"""
from __future__ import annotations

import importlib
import types
from typing import Literal

__all__ = ["BACKENDS", "Backend", "get_backend"]

Backend = Literal["torch", "inductor", "triton"]

#: backend name -> module implementing it (relative names are resolved in this package)
_REGISTRY: dict[str, str] = {
    "torch": ".eager",
    "inductor": ".inductor",
    "triton": ".triton",
}

#: names of the registered backends; "torch" is the reference the tests compare the others against
BACKENDS: tuple[str, ...] = tuple(_REGISTRY)


def get_backend(name: str) -> types.ModuleType:
    """The module of backend ``name``; ``ValueError`` naming the choices for an unknown one."""
    if name == "cupy":
        raise ValueError(
            "neuron backend 'cupy' is not available: SpikingJelly 2.x replaced its CuPy kernels by Triton "
            "kernels; use backend 'triton' (CUDA) or 'inductor' (CPU or CUDA)"
        )
    try:
        target = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown neuron backend {name!r}; available: {', '.join(repr(b) for b in _REGISTRY)}"
        ) from None
    return importlib.import_module(target, __name__) if target.startswith(".") else importlib.import_module(target)
