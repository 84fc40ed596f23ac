"""The BPTT neuron against an independent unrolled autograd reference and against SpikingJelly."""
from __future__ import annotations

import math

import pytest
import torch

from lightning_snn.neurons import (
    ATan, Erf, IFNode, LIFNode, PiecewiseQuadratic, Rectangular, Sigmoid, build_neuron_factory, reset_states,
)


def _primitive(surrogate):
    """A smooth function whose derivative is the surrogate's pseudo-derivative (written from the papers)."""
    if isinstance(surrogate, Rectangular):
        a = surrogate.width
        return lambda x: torch.clamp(x / a + 0.5, 0.0, 1.0)
    if isinstance(surrogate, Sigmoid):
        return lambda x: torch.sigmoid(surrogate.alpha * x)
    if isinstance(surrogate, ATan):
        return lambda x: torch.atan(math.pi / 2 * surrogate.alpha * x) / math.pi + 0.5
    if isinstance(surrogate, PiecewiseQuadratic):  # piecewise quadratic, flat beyond |x| = 1/α
        a = surrogate.alpha
        return lambda x: (lambda u: a * u - 0.5 * a * a * u * u.abs())(torch.clamp(x, -1 / a, 1 / a))
    if isinstance(surrogate, Erf):
        return lambda x: torch.erfc(-surrogate.alpha * x) / 2
    raise AssertionError(surrogate)


class _StraightThrough(torch.autograd.Function):
    """Heaviside forward; backward multiplies by d/dx of the given primitive (differentiated by autograd)."""

    @staticmethod
    def forward(ctx, x, primitive):
        ctx.save_for_backward(x)
        ctx.primitive = primitive
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xx = x.detach().requires_grad_()
            (d,) = torch.autograd.grad(ctx.primitive(xx).sum(), xx)
        return grad * d, None


def reference_unrolled(x_seq, decay, v_th, v_reset, surrogate, detach_reset, input_scale=1.0):
    """Plain unrolled STBP dynamics with autograd ops; Heaviside forward, surrogate derivative backward."""
    g = _primitive(surrogate)
    c = 0.0 if v_reset is None else v_reset
    v = torch.full_like(x_seq[0], c)
    out = []
    for x in x_seq:
        h = c + decay * (v - c) + input_scale * x
        s = _StraightThrough.apply(h - v_th, g)
        s_r = s.detach() if detach_reset else s
        v = h - s_r * v_th if v_reset is None else h * (1 - s_r) + v_reset * s_r
        out.append(s)
    return torch.stack(out)


CASES = [
    pytest.param(1.0, None, id="IF-subtract"),
    pytest.param(1.0, 0.0, id="IF-zero"),
    pytest.param(0.25, 0.0, id="LIF-zero(STBP)"),
    pytest.param(0.5, None, id="LIF-subtract"),
    pytest.param(0.8, -0.1, id="LIF-reset-to-value"),
]


@pytest.mark.parametrize("decay,v_reset", CASES)
@pytest.mark.parametrize("step_mode", ["m", "s"])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("surrogate", [Rectangular(1.0), Sigmoid(4.0), ATan(2.0)], ids=["rect", "sigmoid", "atan"])
def test_gradients_match_unrolled_reference(decay, v_reset, step_mode, detach_reset, surrogate):
    torch.manual_seed(0)
    T, shape, v_th = 6, (4, 7), 0.375  # exactly representable in float32 (threshold buffer)
    x = (torch.randn(T, *shape, dtype=torch.float64) * 0.6).requires_grad_()
    w = torch.randn(T, *shape, dtype=torch.float64)  # random upstream gradient
    node = (IFNode if decay == 1.0 else LIFNode)(
        **({} if decay == 1.0 else {"decay": decay}),
        v_threshold=v_th, v_reset=v_reset, surrogate=surrogate, detach_reset=detach_reset, step_mode=step_mode,
    )
    if step_mode == "m":
        s = node(x)
    else:
        s = torch.stack([node(x_t) for x_t in x])
    (g,) = torch.autograd.grad((s * w).sum(), x)

    x_ref = x.detach().clone().requires_grad_()
    s_ref = reference_unrolled(x_ref, decay, v_th, v_reset, surrogate, detach_reset)
    (g_ref,) = torch.autograd.grad((s_ref * w).sum(), x_ref)

    assert torch.equal(s.detach(), s_ref.detach())
    assert s.detach().sum() > 0, "the test input must make the neuron fire"
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("v_reset", [None, 0.0])
@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_learnable_threshold_gradient(v_reset, step_mode):
    torch.manual_seed(1)
    x = torch.randn(5, 3, 8, dtype=torch.float64)
    w = torch.randn(5, 3, 8, dtype=torch.float64)
    node = LIFNode(decay=0.5, v_threshold=0.375, v_reset=v_reset, surrogate=Sigmoid(4.0), learnable_threshold=True,
                   step_mode=step_mode).double()
    s = node(x) if step_mode == "m" else torch.stack([node(x_t) for x_t in x])
    (g,) = torch.autograd.grad((s * w).sum(), node.v_threshold)

    th = torch.tensor(0.375, dtype=torch.float64, requires_grad=True)
    s_ref = reference_unrolled(x, 0.5, th, v_reset, Sigmoid(4.0), False)
    (g_ref,) = torch.autograd.grad((s_ref * w).sum(), th)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    assert g.abs() > 0


def test_tau_form_and_decay_input():
    torch.manual_seed(2)
    x = torch.randn(4, 10, dtype=torch.float64, requires_grad=True)
    node = LIFNode(tau=2.0, decay_input=True, v_threshold=0.5, v_reset=0.0, surrogate=ATan())
    assert node.decay == pytest.approx(0.5) and node.input_scale == pytest.approx(0.5)
    s = node(x)
    (g,) = torch.autograd.grad(s.sum(), x)
    x_ref = x.detach().clone().requires_grad_()
    s_ref = reference_unrolled(x_ref, 0.5, 0.5, 0.0, ATan(), False, input_scale=0.5)
    (g_ref,) = torch.autograd.grad(s_ref.sum(), x_ref)
    assert torch.equal(s, s_ref.detach())
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("v_reset", [None, 0.0])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_matches_spikingjelly_lif(v_reset, detach_reset):
    """Where SpikingJelly implements the same rule (τ-form LIF), spikes and gradients agree."""
    from spikingjelly.activation_based import functional as sj_functional
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate

    torch.manual_seed(3)
    x = torch.randn(8, 5, 6) * 1.5
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = LIFNode(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=v_reset, surrogate=Sigmoid(4.0),
                   detach_reset=detach_reset)
    theirs = sj_neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=v_reset,
                               surrogate_function=sj_surrogate.Sigmoid(alpha=4.0), detach_reset=detach_reset,
                               step_mode="m")
    s1, s2 = ours(x1), theirs(x2)
    s1.sum().backward()
    s2.sum().backward()
    sj_functional.reset_net(theirs)
    assert torch.equal(s1, s2)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-6)


def test_state_persists_in_single_step_and_resets():
    node = IFNode(v_threshold=1.0, step_mode="s")
    x = torch.full((2, 3), 0.6)
    assert node(x).sum() == 0  # v = 0.6
    assert node(x).sum() == 6  # v = 1.2 -> spike
    reset_states(node)
    assert node.v is None
    assert node(x).sum() == 0


def test_multi_step_equals_single_step_forward():
    torch.manual_seed(4)
    x = torch.randn(7, 3, 4)
    m = LIFNode(decay=0.3, v_threshold=0.2)
    s = LIFNode(decay=0.3, v_threshold=0.2, step_mode="s")
    assert torch.equal(m(x), torch.stack([s(x_t) for x_t in x]))
    torch.testing.assert_close(m.v, s.v)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="exactly one of"):
        LIFNode()
    with pytest.raises(ValueError, match="exactly one of"):
        LIFNode(decay=0.5, tau=2.0)
    with pytest.raises(ValueError, match="decay .* must lie in"):
        LIFNode(decay=1.5)
    with pytest.raises(ValueError, match="step_mode"):
        IFNode(step_mode="x")
    node = IFNode(step_mode="s")
    node(torch.zeros(2, 3))
    with pytest.raises(RuntimeError, match="reset_states"):
        node(torch.zeros(4, 3))


@pytest.mark.parametrize("v_threshold", [-0.2, 0.0, float("nan"), float("inf")])
def test_non_positive_threshold_is_rejected_naming_the_field(v_threshold):
    """V_th <= 0 fires at rest and trains to chance: rejected at construction, as decay 1.5 is."""
    with pytest.raises(ValueError, match=r"LIFNode: v_threshold \(firing threshold\) must be a finite number > 0"):
        LIFNode(decay=0.5, v_threshold=v_threshold)
    with pytest.raises(ValueError, match=r"IFNode: v_threshold"):
        IFNode(v_threshold=v_threshold, learnable_threshold=True)
    with pytest.raises(ValueError, match=rf"v_threshold .* got {v_threshold}"):
        build_neuron_factory({"type": "lif", "decay": 0.25, "v_threshold": v_threshold})  # a config's neuron spec


def test_bf16_inputs_keep_fp32_membrane():
    node = LIFNode(decay=0.5, v_threshold=0.3)
    x = torch.randn(4, 2, 5, dtype=torch.bfloat16, requires_grad=True)
    s = node(x)
    assert s.dtype == torch.bfloat16 and node.v.dtype == torch.float32
    s.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("v_reset", [None, 0.0, -0.2])
@pytest.mark.parametrize("kind", ["if", "lif", "lif_tau_decay_input"])
def test_no_grad_sweep_equals_the_differentiable_one(kind, v_reset):
    """Without a gradient to compute, the forward keeps one H buffer instead of [T, ...]: same S and V."""
    torch.manual_seed(5)
    make = {
        "if": lambda: IFNode(v_threshold=0.4, v_reset=v_reset),
        "lif": lambda: LIFNode(decay=0.3, v_threshold=0.2, v_reset=v_reset),
        "lif_tau_decay_input": lambda: LIFNode(tau=2.0, decay_input=True, v_threshold=0.2, v_reset=v_reset),
    }[kind]
    x = torch.randn(6, 3, 5) * 0.7
    a, b = make(), make()
    s_grad = a(x.clone().requires_grad_())
    s_grad2 = a(x.flip(0).clone().requires_grad_())  # a second call starts from the stored V
    with torch.no_grad():
        s_free, s_free2 = b(x), b(x.flip(0))
    assert s_free.grad_fn is None
    assert torch.equal(s_grad.detach(), s_free) and torch.equal(s_grad2.detach(), s_free2)
    assert torch.equal(a.v.detach(), b.v) and a.v.dtype == b.v.dtype
