"""Surrogate pseudo-derivatives equal the published formulas."""
import math

import pytest
import torch

from lightning_snn.neurons import ATan, LIFNode, Rectangular, Sigmoid, build_neuron_factory, build_surrogate

X = torch.linspace(-2, 2, 401, dtype=torch.float64)


def test_rectangular_is_stbp_window():
    # STBP repository: |u - Vth| < aa with aa = 0.5, height 1 / (2 aa)
    aa = 0.5
    expected = (X.abs() < aa).double() / (2 * aa)
    torch.testing.assert_close(Rectangular(width=2 * aa).derivative(X), expected)
    narrow = Rectangular(width=0.5).derivative(X)
    torch.testing.assert_close(narrow, (X.abs() < 0.25).double() * 2.0)


def test_sigmoid_and_atan_formulas():
    a = 4.0
    sg = torch.sigmoid(a * X)
    torch.testing.assert_close(Sigmoid(a).derivative(X), a * sg * (1 - sg))
    a = 2.0
    torch.testing.assert_close(ATan(a).derivative(X), a / 2 / (1 + (math.pi / 2 * a * X) ** 2))


def test_rectangular_center_moves_the_window():
    """center = -V_th gives the STBP repository's HEAD window |u| < 0.5 (u = x + V_th), height 1."""
    vth, aa = 0.4, 0.5
    u = X + vth
    torch.testing.assert_close(Rectangular(width=1.0, center=-vth).derivative(X), (u.abs() < aa).double() / (2 * aa))
    torch.testing.assert_close(Rectangular(width=0.5, center=0.3).derivative(X), ((X - 0.3).abs() < 0.25).double() * 2.0)


@pytest.mark.parametrize("sg", [Rectangular(), Rectangular(center=-0.4), Sigmoid(), ATan()])
def test_forward_is_heaviside_and_backward_uses_derivative(sg):
    x = X.clone().requires_grad_()
    y = sg(x)
    assert torch.equal(y.detach(), (X >= 0).double())
    y.sum().backward()
    torch.testing.assert_close(x.grad, sg.derivative(X))


def test_build_surrogate_by_name():
    assert isinstance(build_surrogate("atan", alpha=3.0), ATan)
    with pytest.raises(ValueError, match="unknown surrogate 'nope'"):
        build_surrogate("nope")


class _HeadSpikeAct(torch.autograd.Function):
    """models/layers.py of the STBP repository at HEAD 5499679/8769231: fires at u > Vth, window |u| < 0.5."""

    @staticmethod
    def forward(ctx, u, vth):
        ctx.save_for_backward(u)
        return (u > vth).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * (u.abs() < 0.5).to(u.dtype) / (2 * 0.5), None


def head_lif(x, vth=0.4, tau=0.25):
    """HEAD's LIFSpike unrolled: u = tau * u * (1 - o) + x[t]; o = SpikeAct(u); gradient through the reset too."""
    u = torch.zeros_like(x[0])
    o = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        u = tau * u * (1 - o) + x[t]
        o = _HeadSpikeAct.apply(u, vth)
        out.append(o)
    return torch.stack(out)


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_lif_with_centred_window_reproduces_the_stbp_head_gradient(step_mode):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 64, generator=gen, dtype=torch.float64) * 0.6
    g = torch.randn(4, 64, generator=gen, dtype=torch.float64)
    spec = {"type": "lif", "decay": 0.25, "v_threshold": 0.4, "v_reset": 0.0,
            "surrogate": {"name": "rectangular", "width": 1.0, "center": -0.4}}
    node = build_neuron_factory(spec)()
    assert isinstance(node, LIFNode) and node.surrogate.center == -0.4
    node.step_mode = step_mode
    xa = x.clone().requires_grad_()
    out = node(xa) if step_mode == "m" else torch.stack([node(xt) for xt in xa])
    (out * g).sum().backward()
    xr = x.clone().requires_grad_()
    ref = head_lif(xr)
    (ref * g).sum().backward()
    assert torch.equal(out.detach(), ref.detach())
    torch.testing.assert_close(xa.grad, xr.grad, rtol=1e-12, atol=1e-12)
    # the README-era window (centred at V_th) gives a different gradient on the same data
    node2 = build_neuron_factory({**spec, "surrogate": {"name": "rectangular", "width": 1.0}})()
    xb = x.clone().requires_grad_()
    (node2(xb) * g).sum().backward()
    assert not torch.allclose(xb.grad, xr.grad)
