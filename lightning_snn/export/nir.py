"""Export of sequential spiking backbones to NIR (the Neuromorphic Intermediate Representation) and back.

NIR describes neurons in continuous time; our neurons are its forward-Euler discretisation with
``dt = 1`` (NIR's own convention for discrete simulators):

* LIF ``τ·dv/dt = (v_leak − v) + r·I`` gives ``v[t] = (1 − 1/τ)·v + (r/τ)·I + v_leak/τ``; hence
  ``τ = 1 / (1 − λ)``, ``r = τ·k`` and ``v_leak = c`` for our ``H = c + λ(V − c) + k·X`` (``c`` = reset value).
* IF ``dv/dt = r·I`` gives ``r = k``.

NIR resets to ``v_reset``; a neuron that resets by subtraction is written with ``v_reset = 0`` and
``metadata["reset"] = "subtract"``, which :func:`from_nir` honours. NIR fires on ``v > v_threshold`` where
we fire on ``v >= v_threshold`` (they differ only when the membrane lands exactly on the threshold).
Supported layers: convolutions and linear layers (no normalisation between them: fold BatchNorm
first), average pooling, flatten and IF/LIF neurons in a :class:`SpikingBackbone` whose ``body`` is an
``nn.Sequential`` (``mnistnet``, ``cifarnet`` without BN, ...). Others raise ``NotImplementedError``.
"""
from __future__ import annotations

from collections.abc import Sequence

import nir
import numpy as np
import torch
from torch import nn

from ..backbones.layers import Flatten, SpikingBackbone, TimeDistributed
from ..neurons import BaseNode, IFNode, LIFNode

__all__ = ["to_nir", "from_nir", "NIRSequential"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def _feature_shapes(body: nn.Sequential, input_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Output shape (without T, B) of every layer of ``body`` for one sample."""
    shapes: list[tuple[int, ...]] = []
    x = torch.zeros(1, 1, *input_shape)
    was = body.training
    body.eval()
    with torch.no_grad():
        for layer in body:
            x = layer(x)
            shapes.append(tuple(x.shape[2:]))
    body.train(was)
    for m in body.modules():
        if isinstance(m, BaseNode):
            m.reset()
    return shapes


def to_nir(backbone: SpikingBackbone, input_shape: Sequence[int]) -> nir.NIRGraph:
    """A NIR graph (a chain ``input -> layers -> output``) equivalent to ``backbone`` for one frame shape."""
    body = getattr(backbone, "body", None)
    if not isinstance(body, nn.Sequential) or backbone.step_mode != "m":
        raise NotImplementedError("to_nir supports multi-step backbones whose `body` is an nn.Sequential")
    shapes = _feature_shapes(body, input_shape)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array(input_shape)})}
    prev_shape = tuple(input_shape)
    order = ["input"]
    for i, (layer, shape) in enumerate(zip(body, shapes)):
        mod = layer.module if isinstance(layer, TimeDistributed) else layer
        name = f"{i}"
        if isinstance(mod, nn.Conv2d):
            bias = _np(mod.bias) if mod.bias is not None else np.zeros(mod.out_channels, dtype=np.float32)
            node = nir.Conv2d(input_shape=prev_shape[1:], weight=_np(mod.weight), stride=mod.stride, padding=mod.padding,
                              dilation=mod.dilation, groups=mod.groups, bias=bias)
        elif isinstance(mod, nn.Linear):
            node = nir.Affine(weight=_np(mod.weight), bias=_np(mod.bias)) if mod.bias is not None else nir.Linear(weight=_np(mod.weight))
        elif isinstance(mod, nn.AvgPool2d):
            node = nir.AvgPool2d(kernel_size=np.array(_pair(mod.kernel_size)), stride=np.array(_pair(mod.stride or mod.kernel_size)),
                                 padding=np.array(_pair(mod.padding)))
        elif isinstance(mod, Flatten):
            node = nir.Flatten(input_type={"input": np.array(prev_shape)}, start_dim=0, end_dim=-1)
        elif isinstance(mod, BaseNode):
            node = _neuron_to_nir(mod, shape)
        else:
            raise NotImplementedError(f"to_nir: layer {i} ({type(mod).__name__}) has no NIR equivalent here")
        nodes[name] = node
        order.append(name)
        prev_shape = shape
    nodes["output"] = nir.Output(output_type={"output": np.array(prev_shape)})
    order.append("output")
    edges = list(zip(order[:-1], order[1:]))
    meta = {"producer": "lightning-snn", "num_classes": backbone.num_classes, "time_step": 1.0}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _neuron_to_nir(node: BaseNode, shape: tuple[int, ...]) -> nir.NIRNode:
    full = lambda v: np.full(shape, v, dtype=np.float32)  # noqa: E731
    c = 0.0 if node.v_reset is None else node.v_reset
    meta = {"reset": "subtract" if node.v_reset is None else "to_value", "detach_reset": node.detach_reset,
            "fires_on": "v >= v_threshold"}
    vth = float(node.v_threshold)
    # a learned leak (PLIF: decay and input scale are functions of a parameter) is exported at its current value
    decay, scale = (float(torch.as_tensor(v).detach()) for v in (node.decay, node.input_scale))
    if decay == 1.0:
        return nir.IF(r=full(scale), v_threshold=full(vth), v_reset=full(c), metadata=meta)
    tau = 1.0 / (1.0 - decay)
    return nir.LIF(tau=full(tau), r=full(tau * scale), v_leak=full(c), v_threshold=full(vth),
                   v_reset=full(c), metadata=meta)


def _scalar(a: np.ndarray, what: str) -> float:
    a = np.asarray(a, dtype=np.float64)
    if not np.allclose(a, a.flat[0]):
        raise NotImplementedError(f"from_nir: per-neuron {what} values are not supported (got a non-uniform array)")
    return float(a.flat[0])


def _neuron_from_nir(node: nir.NIRNode) -> BaseNode:
    subtract = node.metadata.get("reset") == "subtract"
    v_reset = None if subtract else _scalar(node.v_reset if node.v_reset is not None else np.zeros(1), "v_reset")
    vth = _scalar(node.v_threshold, "v_threshold")
    detach = bool(node.metadata.get("detach_reset", False))
    if isinstance(node, nir.IF):
        if not np.isclose(_scalar(node.r, "r"), 1.0):
            raise NotImplementedError("from_nir: IF neurons with r != 1 are not supported")
        return IFNode(v_threshold=vth, v_reset=v_reset, detach_reset=detach)
    tau, r = _scalar(node.tau, "tau"), _scalar(node.r, "r")
    if np.isclose(r, tau):  # k = 1: leak-factor form
        return LIFNode(decay=1.0 - 1.0 / tau, v_threshold=vth, v_reset=v_reset, detach_reset=detach)
    if np.isclose(r, 1.0):  # k = 1/τ: SpikingJelly's decay_input form
        return LIFNode(tau=tau, decay_input=True, v_threshold=vth, v_reset=v_reset, detach_reset=detach)
    raise NotImplementedError(f"from_nir: LIF with r={r}, tau={tau} (input scale {r / tau}) is not supported")


class NIRSequential(SpikingBackbone):
    """A backbone rebuilt from a chain-shaped NIR graph."""

    def __init__(self, body: nn.Sequential, num_classes: int) -> None:
        super().__init__(num_classes, neuron=lambda: nn.Identity(), step_mode="m")
        self.body = body
        self.finalize()


def from_nir(graph: nir.NIRGraph) -> NIRSequential:
    """Rebuild a backbone from a graph written by :func:`to_nir` (or any chain of the supported nodes)."""
    succ = dict(graph.edges)
    if len(succ) != len(graph.edges):
        raise NotImplementedError("from_nir supports chain graphs only (each node feeds exactly one node)")
    name = next(n for n, node in graph.nodes.items() if isinstance(node, nir.Input))
    layers: list[nn.Module] = []
    while name in succ:
        name = succ[name]
        node = graph.nodes[name]
        if isinstance(node, nir.Output):
            break
        if isinstance(node, nir.Conv2d):
            w = torch.from_numpy(np.asarray(node.weight, dtype=np.float32))
            conv = nn.Conv2d(w.shape[1] * node.groups, w.shape[0], tuple(w.shape[2:]), stride=tuple(node.stride),
                             padding=tuple(node.padding), dilation=tuple(node.dilation), groups=node.groups,
                             bias=node.bias is not None and np.any(node.bias != 0))
            with torch.no_grad():
                conv.weight.copy_(w)
                if conv.bias is not None:
                    conv.bias.copy_(torch.from_numpy(np.asarray(node.bias, dtype=np.float32)))
            layers.append(TimeDistributed(conv))
        elif isinstance(node, (nir.Affine, nir.Linear)):
            w = torch.from_numpy(np.asarray(node.weight, dtype=np.float32))
            lin = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
            with torch.no_grad():
                lin.weight.copy_(w)
                if isinstance(node, nir.Affine):
                    lin.bias.copy_(torch.from_numpy(np.asarray(node.bias, dtype=np.float32)))
            layers.append(TimeDistributed(lin))
        elif isinstance(node, nir.AvgPool2d):
            layers.append(TimeDistributed(nn.AvgPool2d(tuple(int(k) for k in node.kernel_size), tuple(int(s) for s in node.stride),
                                                       tuple(int(p) for p in node.padding))))
        elif isinstance(node, nir.Flatten):
            layers.append(Flatten())
        elif isinstance(node, (nir.IF, nir.LIF)):
            layers.append(_neuron_from_nir(node))
        else:
            raise NotImplementedError(f"from_nir: node {name!r} of type {type(node).__name__} is not supported")
    out_features = next((m.module.out_features for m in reversed(layers)
                         if isinstance(m, TimeDistributed) and isinstance(m.module, nn.Linear)), 0)
    return NIRSequential(nn.Sequential(*layers), int(graph.metadata.get("num_classes", out_features)))
