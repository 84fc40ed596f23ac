"""Neuron factories: a plain-dict neuron specification (YAML- and checkpoint-friendly) -> a callable.

Backbones take a *neuron factory*, a zero-argument callable returning a fresh neuron module, so that a
method can swap the neuron (ARCHITECTURE.md, mechanism 1). In configs the factory is written as a
dict, e.g. the LIF neuron of the STBP repository::

    neuron: {type: lif, decay: 0.25, v_threshold: 0.2, v_reset: 0.0, surrogate: {name: rectangular, width: 1.0}}

PLIF (a LIF with a learned time constant, Fang et al. 2021) is ``{type: plif, init_tau: 2.0, decay_input: true}``.
Every IF/LIF/PLIF spec takes ``backend`` (``torch``, ``inductor`` or ``triton``; see ``backends/``), e.g.
``{type: lif, decay: 0.25, backend: inductor}``; a backend that cannot run the neuron as specified fails
here, at configuration time, with a ``ValueError`` naming the unsupported combination.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .nodes import BaseNode, IFNode, LIFNode
from .plif import PLIFNode
from .surrogate import build_surrogate

__all__ = ["NeuronFactory", "build_neuron_factory", "STBP_LIF", "register_neuron", "NEURONS"]

NeuronFactory = Callable[[], nn.Module]

NEURONS: dict[str, Callable[..., nn.Module]] = {"lif": LIFNode, "if": IFNode, "plif": PLIFNode}

#: The LIF neuron of the STBP quantization repository: u = 0.25·u·(1 - o) + x, V_th = 0.2, rectangular
#: surrogate of width 1 (|u - V_th| < 0.5).
STBP_LIF: dict[str, Any] = {
    "type": "lif",
    "decay": 0.25,
    "v_threshold": 0.2,
    "v_reset": 0.0,
    "surrogate": {"name": "rectangular", "width": 1.0},
}


def register_neuron(name: str, cls: Callable[..., nn.Module]) -> None:
    """Make a neuron class available to ``neuron: {type: name, ...}`` specs."""
    NEURONS[name.lower()] = cls


def _make(cls: Callable[..., nn.Module], surrogate: Any, kwargs: dict[str, Any]) -> nn.Module:
    if surrogate is not None:
        if isinstance(surrogate, Mapping):
            surrogate = dict(surrogate)
            name = surrogate.pop("name", "rectangular")
            kwargs = {**kwargs, "surrogate": build_surrogate(name, **surrogate)}
        else:
            kwargs = {**kwargs, "surrogate": build_surrogate(surrogate)}
    return cls(**kwargs)


def build_neuron_factory(spec: Mapping[str, Any] | NeuronFactory | None, default: Mapping[str, Any] = STBP_LIF) -> NeuronFactory:
    """Turn a neuron spec into a factory. ``None`` uses ``default``; a callable is returned as is.

    Raises ``ValueError`` naming the bad field for an unknown ``type`` or argument.
    """
    if spec is None:
        spec = default
    if callable(spec) and not isinstance(spec, Mapping):
        return spec
    spec = dict(spec)
    kind = str(spec.pop("type", "lif")).lower()
    if kind not in NEURONS:
        raise ValueError(f"neuron.type: unknown neuron {kind!r}; available: {sorted(NEURONS)}")
    cls = NEURONS[kind]
    surrogate = spec.pop("surrogate", None)
    try:  # build one now so that a bad field fails at configuration time, naming the field
        _make(cls, surrogate, spec)
    except TypeError as err:
        raise ValueError(f"neuron: invalid arguments for {kind!r} neuron {spec}: {err}") from None
    return functools.partial(_make, cls, surrogate, spec)


def threshold_of(neuron: nn.Module, default: float = 1.0) -> float:
    """The firing threshold of a neuron module (used by tdBN to scale its output by α·V_th)."""
    value = neuron.v_threshold if isinstance(neuron, BaseNode) else getattr(neuron, "v_threshold", default)
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
