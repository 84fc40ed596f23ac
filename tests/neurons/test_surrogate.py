"""Surrogate pseudo-derivatives equal the published formulas."""
import math

import pytest
import torch

from lightning_snn.neurons import (
    ATan, Erf, LIFNode, PiecewiseQuadratic, Rectangular, Sigmoid, build_neuron_factory, build_surrogate,
)
from lightning_snn.neurons.backends.eager import surrogate_derivative, surrogate_key
from tests.neurons.test_nodes import reference_unrolled

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


# ------------------------------------------------------------------ parametric: piecewise quadratic, erf
PARAMETRIC = [
    pytest.param("piecewise_quadratic", "PiecewiseQuadratic", 1.0, id="pq-1"),
    pytest.param("triangle", "PiecewiseQuadratic", 2.5, id="pq-2.5"),
    pytest.param("erf", "Erf", 2.0, id="erf-2"),
    pytest.param("erf", "Erf", 0.7, id="erf-0.7"),
]


@pytest.mark.parametrize("name,sj_name,alpha", PARAMETRIC)
def test_parametric_backward_equals_spikingjelly(name, sj_name, alpha):
    """Same α convention as SpikingJelly: the spike and its gradient on a float64 grid match theirs."""
    from spikingjelly.activation_based import surrogate as sj_surrogate

    ours = build_surrogate(name, alpha=alpha)
    theirs = getattr(sj_surrogate, sj_name)(alpha=alpha)
    x1, x2 = X.clone().requires_grad_(), X.clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2)
    assert torch.equal(y1, y2) and torch.equal(y1.detach(), (X >= 0).double())
    weights = torch.linspace(0.5, 1.5, X.numel(), dtype=torch.float64)
    (y1 * weights).sum().backward()
    (y2 * weights).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-14, atol=0)
    assert x1.grad.max() > 0


def test_parametric_formulas():
    """The published forms: triangle α - α²|x| on |x| <= 1/α (area 1), Gaussian α/√π·exp(-α²x²) (area 1)."""
    a = 2.5
    torch.testing.assert_close(PiecewiseQuadratic(a).derivative(X), torch.clamp(a - a * a * X.abs(), min=0.0))
    a = 2.0
    torch.testing.assert_close(Erf(a).derivative(X), a / math.sqrt(math.pi) * torch.exp(-((a * X) ** 2)))
    fine = torch.linspace(-8, 8, 160001, dtype=torch.float64)
    for sg in (PiecewiseQuadratic(2.5), Erf(0.7)):
        assert torch.trapezoid(sg.derivative(fine), fine).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("sg", [Rectangular(0.5), Sigmoid(4.0), ATan(2.0), PiecewiseQuadratic(1.5), Erf(2.0)],
                         ids=["rect", "sigmoid", "atan", "pq", "erf"])
def test_closed_forms_of_the_compiled_backends_equal_the_surrogates(sg):
    """``surrogate_derivative`` (what the inductor backend compiles) equals each surrogate's own backward."""
    kind, alpha = surrogate_key(sg)
    torch.testing.assert_close(surrogate_derivative(X, kind, alpha), sg.derivative(X), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("sg", [PiecewiseQuadratic(1.5), Erf(2.0)], ids=["pq", "erf"])
@pytest.mark.parametrize("v_reset", [None, 0.0])
def test_parametric_surrogates_through_a_neuron(sg, v_reset):
    """Through a LIF neuron: the eager backend against the unrolled reference, and the sweep the inductor
    backend compiles (closed-form derivative), run eagerly, against the eager backend."""
    from lightning_snn.neurons.backends.eager import backward_loop, forward_loop

    torch.manual_seed(0)
    x = (torch.randn(6, 4, 7, dtype=torch.float64) * 0.6 + 0.2).requires_grad_()
    w = torch.randn(6, 4, 7, dtype=torch.float64)
    node = LIFNode(decay=0.5, v_threshold=0.375, v_reset=v_reset, surrogate=sg)
    s = node(x)
    (g,) = torch.autograd.grad((s * w).sum(), x)
    x_ref = x.detach().clone().requires_grad_()
    s_ref = reference_unrolled(x_ref, 0.5, 0.375, v_reset, sg, False)  # autograd through each surrogate's primitive
    (g_ref,) = torch.autograd.grad((s_ref * w).sum(), x_ref)
    assert torch.equal(s.detach(), s_ref.detach()) and s.detach().sum() > 0
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)

    flat = x.detach().reshape(6, -1)
    th = torch.tensor(0.375, dtype=torch.float64)
    _, h, _ = forward_loop(flat, torch.full_like(flat[0], 0.0), th, T=6, decay=0.5, input_scale=1.0, v_reset=v_reset)
    kind, alpha = surrogate_key(sg)
    g_closed = backward_loop(w.reshape(6, -1), torch.zeros_like(flat[0]), h, th, T=6, decay=0.5, input_scale=1.0,
                             v_reset=v_reset, detach_reset=False, kind=kind, alpha=alpha, want_th=False)[0]
    torch.testing.assert_close(g_closed.reshape(g.shape), g, rtol=1e-12, atol=1e-14)
