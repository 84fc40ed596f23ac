"""Temporally cut neurons (SLTT / OTTT): multi-step == single-step == SpikingJelly's SLTTLIFNode."""
from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import surrogate as sj_surrogate
from spikingjelly.activation_based.neuron import SLTTLIFNode

from lightning_snn.neurons import LIFNode, OnlineIFNode, OnlineLIFNode, Sigmoid, build_neuron_factory


def _x(T=6, requires_grad=True):
    torch.manual_seed(0)
    return (torch.rand(T, 3, 5, dtype=torch.float64) * 1.5).requires_grad_(requires_grad)


@pytest.mark.parametrize("kw", [dict(tau=2.0, v_reset=None), dict(tau=1.1, v_reset=0.0, decay_input=True),
                                dict(decay=0.5, v_reset=None, learnable_threshold=True)])
def test_multi_step_equals_single_step(kw):
    x = _x()
    weights = torch.randn_like(x)
    grads = []
    outs = []
    for mode in ("m", "s"):
        node = OnlineLIFNode(step_mode=mode, surrogate=Sigmoid(4.0), **kw).double()
        xi = x.detach().clone().requires_grad_(True)
        out = node(xi) if mode == "m" else torch.stack([node(xt) for xt in xi])
        (out * weights).sum().backward()
        outs.append(out.detach())
        grads.append((xi.grad, node.v_threshold.grad if kw.get("learnable_threshold") else None))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-14)
    if kw.get("learnable_threshold"):
        torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-12, atol=1e-14)


def test_forward_equals_bptt_neuron_and_gradient_is_spatial_only():
    x = _x()
    cut, full = OnlineLIFNode(tau=2.0, v_reset=None).double(), LIFNode(tau=2.0, v_reset=None).double()
    torch.testing.assert_close(cut(x), full(x))
    xi = x.detach().clone().requires_grad_(True)
    s = cut(xi)
    s[-1].sum().backward()  # only the last step's spikes reach the loss: earlier inputs get nothing
    assert float(xi.grad[:-1].abs().sum()) == 0.0 and float(xi.grad[-1].abs().sum()) > 0


def test_matches_spikingjelly_sltt_lif_node():
    """SpikingJelly 2.0's SLTTLIFNode (single-step, v detached in training) computes what ours does for the same
    configuration (its defaults: τ=2, decay_input, hard reset to 0, sigmoid α=4)."""
    x = _x()
    sj = SLTTLIFNode(tau=2.0, decay_input=True, v_reset=0.0, surrogate_function=sj_surrogate.Sigmoid(alpha=4.0))
    sj.train()
    ours = OnlineLIFNode(tau=2.0, decay_input=True, v_reset=0.0, surrogate=Sigmoid(4.0), detach_reset=True).double()
    x_sj, x_ours = x.detach().clone().requires_grad_(True), x.detach().clone().requires_grad_(True)
    w = torch.randn_like(x)
    out_sj = torch.stack([sj(xt) for xt in x_sj])
    (out_sj * w).sum().backward()
    sj_functional.reset_net(sj)
    out_ours = ours(x_ours)
    (out_ours * w).sum().backward()
    torch.testing.assert_close(out_ours, out_sj.detach(), rtol=0, atol=0)
    torch.testing.assert_close(x_ours.grad, x_sj.grad, rtol=1e-12, atol=1e-14)


def test_factory_and_if_variant():
    node = build_neuron_factory({"type": "online_if", "v_threshold": 0.5})()
    assert isinstance(node, OnlineIFNode) and node.decay == 1.0
    with pytest.raises(ValueError, match="triton"):
        OnlineLIFNode(tau=2.0, backend="triton")
