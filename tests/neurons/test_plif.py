"""PLIF (Fang et al. 2021): gradients against the unrolled recursion, forward against SpikingJelly."""
from __future__ import annotations

import math

import pytest
import torch

from lightning_snn.backbones import create_backbone
from lightning_snn.neurons import ATan, Erf, PLIFNode, Rectangular, Sigmoid, build_neuron_factory, reset_states
from lightning_snn.neurons.backends import triton as triton_backend


def _unrolled_plif(x_seq, w, th, v_reset, decay_input, detach_reset, alpha):
    """The paper's recursion written out with autograd ops, in SpikingJelly's arithmetic order.

    1/τ = sigmoid(w); H = V + (X - (V - c))/τ (decay_input) or V - (V - c)/τ + X; the spike is the
    Heaviside step forward and has the sigmoid surrogate's derivative backward (straight-through:
    ``Θ(x) + p(x) - p(x).detach()`` with ``p = sigmoid(αx)``, exactly Θ(x) in value).
    """
    q = torch.sigmoid(w)
    c = 0.0 if v_reset is None else v_reset
    v = torch.full_like(x_seq[0], c)
    spikes = []
    for x in x_seq:
        h = v + (x - (v - c)) * q if decay_input else v - (v - c) * q + x
        p = torch.sigmoid(alpha * (h - th))
        s = (h >= th).to(h.dtype) + (p - p.detach())
        s_r = s.detach() if detach_reset else s
        v = h - s_r * th if v_reset is None else h * (1.0 - s_r) + v_reset * s_r
        spikes.append(s)
    return torch.stack(spikes), v


@pytest.mark.parametrize("v_reset", [None, 0.0, -0.2], ids=["subtract", "zero", "to-value"])
@pytest.mark.parametrize("decay_input", [True, False], ids=["decay-input", "no-decay-input"])
@pytest.mark.parametrize("step_mode", ["m", "s"])
@pytest.mark.parametrize("detach_reset", [False, True], ids=["", "detach"])
def test_gradients_match_unrolled_recursion(v_reset, decay_input, step_mode, detach_reset):
    torch.manual_seed(0)
    T, th, alpha = 6, 0.75, 4.0
    x = (torch.randn(T, 3, 5, dtype=torch.float64) * 0.8 + 0.3).requires_grad_()
    weights = torch.randn(T, 3, 5, dtype=torch.float64)
    node = PLIFNode(init_tau=1.7, decay_input=decay_input, v_threshold=th, v_reset=v_reset, step_mode=step_mode,
                    detach_reset=detach_reset, surrogate=Sigmoid(alpha)).double()
    s = node(x) if step_mode == "m" else torch.stack([node(x_t) for x_t in x])
    loss = (s * weights).sum() + 0.3 * node.v.sum()  # the final membrane too: a gradient enters V[T]
    g_x, g_w = torch.autograd.grad(loss, (x, node.w))

    x_ref = x.detach().clone().requires_grad_()
    w_ref = node.w.detach().clone().requires_grad_()  # -ln(τ0 - 1), rounded to float32 at construction
    assert w_ref.item() == pytest.approx(-math.log(1.7 - 1.0), rel=1e-6)
    s_ref, v_ref = _unrolled_plif(x_ref, w_ref, th, v_reset, decay_input, detach_reset, alpha)
    g_x_ref, g_w_ref = torch.autograd.grad((s_ref * weights).sum() + 0.3 * v_ref.sum(), (x_ref, w_ref))

    assert torch.equal(s.detach(), s_ref.detach())
    assert 0 < s.detach().sum() < s.numel(), "the test input must make some neurons fire and others not"
    torch.testing.assert_close(node.v.detach(), v_ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_x, g_x_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_w, g_w_ref, rtol=1e-10, atol=1e-12)
    assert g_w.abs() > 1e-6


def test_learnable_threshold_and_w_together_and_carried_membrane():
    """Two multi-step calls without a reset (V carried), learnable V_th and w: gradients equal the unrolled ones."""
    torch.manual_seed(1)
    x = torch.randn(8, 4, 3, dtype=torch.float64) + 0.4
    node = PLIFNode(v_reset=None, learnable_threshold=True, v_threshold=0.5).double()
    s = torch.cat([node(x[:4]), node(x[4:])])
    g_w, g_th = torch.autograd.grad((s * torch.linspace(-1, 1, s.numel(), dtype=s.dtype).reshape(s.shape)).sum(),
                                    (node.w, node.v_threshold))
    w_ref = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)  # init_tau 2 -> w = -ln(1) = 0
    th_ref = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    s_ref, _ = _unrolled_plif(x, w_ref, th_ref, None, True, False, 4.0)
    g_ref = torch.autograd.grad((s_ref * torch.linspace(-1, 1, s.numel(), dtype=s.dtype).reshape(s.shape)).sum(),
                                (w_ref, th_ref))
    torch.testing.assert_close((g_w, g_th), g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("v_reset", [None, 0.0])
@pytest.mark.parametrize("decay_input", [True, False])
def test_forward_and_gradients_equal_spikingjelly(v_reset, decay_input):
    from spikingjelly.activation_based import functional as sj_functional
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate

    torch.manual_seed(3)
    x = torch.randn(8, 5, 6) * 1.5
    ours = PLIFNode(init_tau=2.5, decay_input=decay_input, v_reset=v_reset, surrogate=ATan(2.0))
    theirs = sj_neuron.ParametricLIFNode(init_tau=2.5, decay_input=decay_input, v_reset=v_reset,
                                         surrogate_function=sj_surrogate.ATan(alpha=2.0), step_mode="m")
    sj_functional.reset_net(theirs)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    s1, s2 = ours(x1), theirs(x2)
    assert torch.equal(s1, s2) and s1.sum() > 0
    torch.testing.assert_close(ours.v, theirs.v, rtol=1e-5, atol=1e-6)
    weights = torch.randn_like(x)
    (s1 * weights).sum().backward()
    (s2 * weights).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.w.grad, theirs.w.grad, rtol=1e-4, atol=1e-6)


def test_parametrisation_and_defaults_follow_spikingjelly():
    node = PLIFNode()
    assert node.tau == pytest.approx(2.0) and float(node.w.detach()) == 0.0  # 1/τ0 = sigmoid(0) = 1/2
    assert isinstance(node.surrogate, Sigmoid) and node.surrogate.alpha == 4.0 and node.v_reset == 0.0
    node = PLIFNode(init_tau=4.0, decay_input=False)
    assert float(torch.sigmoid(node.w.detach())) == pytest.approx(0.25)
    assert float(node.decay.detach()) == pytest.approx(0.75) and node.input_scale == 1.0
    assert [n for n, _ in node.named_parameters()] == ["w"]
    assert "tau=4" in repr(node)


@pytest.mark.parametrize("init_tau", [1.0, 0.5, float("nan"), float("inf")])
def test_bad_init_tau_is_rejected_naming_the_field(init_tau):
    with pytest.raises(ValueError, match="init_tau"):
        PLIFNode(init_tau=init_tau)


def test_no_grad_forward_equals_the_differentiable_one():
    torch.manual_seed(4)
    x = torch.randn(5, 2, 7) + 0.5
    node = PLIFNode(v_reset=None)
    with torch.no_grad():
        s0 = node(x)
        v0 = node.v
    reset_states(node)
    s1 = node(x.clone().requires_grad_())
    assert torch.equal(s0, s1.detach()) and torch.equal(v0, node.v.detach())


def test_selectable_by_name_in_specs_and_backbones():
    factory = build_neuron_factory({"type": "plif", "init_tau": 3.0, "v_reset": None, "surrogate": {"name": "atan"}})
    a, b = factory(), factory()
    assert isinstance(a, PLIFNode) and a.tau == pytest.approx(3.0) and isinstance(a.surrogate, ATan)
    assert a.w is not b.w, "every neuron of a network learns its own time constant"
    with pytest.raises(ValueError, match="neuron: invalid arguments for 'plif'.*tau"):
        build_neuron_factory({"type": "plif", "tau": 2.0})
    with pytest.raises(ValueError, match="init_tau"):
        build_neuron_factory({"type": "plif", "init_tau": 0.5})
    net = create_backbone("mnistnet", num_classes=10, neuron={"type": "plif"})
    plifs = [m for m in net.modules() if isinstance(m, PLIFNode)]
    ws = [n for n, _ in net.named_parameters() if n.endswith(".w")]
    assert plifs and len(ws) == len(plifs)


def test_triton_refuses_what_the_plif_kernels_do_not_implement():
    with pytest.raises(ValueError, match="surrogate Rectangular"):
        PLIFNode(backend="triton", surrogate=Rectangular(1.0))
    with pytest.raises(ValueError, match="learnable_threshold"):
        PLIFNode(backend="triton", learnable_threshold=True)
    assert triton_backend.config(PLIFNode(backend="triton", decay_input=False))[:2] == ("plif", False)


@pytest.mark.parametrize("v_reset", [None, -0.1])
@pytest.mark.parametrize("decay_input", [True, False])
def test_triton_plif_plumbing_with_spikingjelly_cpu_operators(monkeypatch, v_reset, decay_input):
    """The Triton PLIF Function and the neuron -> kernel mapping, run on the CPU by substituting
    SpikingJelly's CPU implementation of the same operator (same signature and equations)."""
    from spikingjelly._ops.plif import cpu as plif_cpu

    monkeypatch.setattr(triton_backend, "_plif_kernels", lambda: plif_cpu)
    torch.manual_seed(6)
    x = torch.randn(6, 4, 5) + 0.4
    kw = dict(init_tau=1.5, decay_input=decay_input, v_reset=v_reset, surrogate=Erf(2.0))
    node, ref = PLIFNode(backend="triton", **kw), PLIFNode(**kw)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    v0 = torch.full_like(x[0], 0.0 if v_reset is None else v_reset)
    s, v = triton_backend._TritonPLIF.apply(xa, v0, node.w, triton_backend.config_cached(node))
    s_ref = ref(xb)
    weights = torch.linspace(-1.0, 1.0, s.numel()).reshape(s.shape)
    ((s * weights).sum() + 0.3 * v.sum()).backward()
    ((s_ref * weights).sum() + 0.3 * ref.v.sum()).backward()
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(v, ref.v, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(node.w.grad, ref.w.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["inductor", "triton"])
@pytest.mark.parametrize("v_reset", [None, 0.0])
def test_gpu_backends_match_torch(backend, v_reset):
    torch.manual_seed(7)
    x = torch.randn(8, 4, 300, device="cuda") + 0.4
    out = []
    for name in ("torch", backend):
        node = PLIFNode(v_reset=v_reset, surrogate=ATan(2.0), backend=name).cuda()
        xi = x.clone().requires_grad_()
        s = node(xi)
        ((s * torch.linspace(-1, 1, s.numel(), device="cuda").reshape(s.shape)).sum() + node.v.sum()).backward()
        out.append((s.detach(), node.v.detach(), xi.grad, node.w.grad))
    assert torch.equal(out[0][0], out[1][0])
    for a, b in zip(out[0][1:], out[1][1:]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("v_reset", [None, 0.0])
@pytest.mark.parametrize("decay_input", [True, False])
def test_inductor_matches_torch(v_reset, decay_input):
    torch.manual_seed(5)
    x = torch.randn(4, 3, 5) + 0.5
    grads = []
    for backend in ("torch", "inductor"):
        node = PLIFNode(v_reset=v_reset, decay_input=decay_input, backend=backend, learnable_threshold=True)
        xi = x.clone().requires_grad_()
        s = torch.cat([node(xi), node(xi * 0.5)])  # two calls: the carried membrane gets a gradient too
        ((s * torch.linspace(-1, 1, s.numel()).reshape(s.shape)).sum() + node.v.sum()).backward()
        grads.append((s.detach(), node.v.detach(), xi.grad, node.w.grad, node.v_threshold.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1:], grads[1][1:]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
