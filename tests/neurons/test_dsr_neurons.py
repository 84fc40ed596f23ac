"""DSR neurons: forward against a transcription of the paper's dynamics, backward against the gradient of the
representation mapping (and the official code's rule), SpikingJelly's DSR neurons, the threshold bound."""
from __future__ import annotations

import math

import pytest
import torch

from lightning_snn.neurons import (
    DSRIFNode,
    DSRLIFNode,
    IFNode,
    build_neuron_factory,
    lif_leak,
    representation_weights,
    spike_representation,
)


# ----------------------------------------------------------------------------- independent reference
def ref_spikes(x: torch.Tensor, vth: float, alpha: float, tau: float | None = None, dt: float | None = None):
    """The paper's discrete IF / LIF dynamics with reset by subtraction, one step at a time (float64)."""
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        if tau is None:
            u = v + x[t]
        else:
            b = math.exp(-dt / tau)
            u = b * v + (1 - b) * x[t]
        fired = (u >= alpha * vth).double()
        v = u - vth * fired
        out.append(fired * (vth if tau is None else vth / dt))
    return torch.stack(out)


def ref_weights(T: int, tau: float | None, dt: float | None) -> torch.Tensor:
    if tau is None:
        return torch.full((T,), 1.0 / T, dtype=torch.float64)
    w = torch.tensor([math.exp(-(T - t) * dt / tau) for t in range(1, T + 1)], dtype=torch.float64)
    return w / w.sum()


def mapping_grads(x, g, vth, tau=None, dt=None):
    """Autograd of the representation mapping x[1..T] -> r -> a = clamp(r/tau, 0, vth/dt), read as a at every
    step: returns (dL/dx, dL/dvth) for L = sum_t <g[t], a>."""
    x = x.detach().clone().requires_grad_(True)
    th = torch.tensor(vth, dtype=torch.float64, requires_grad=True)
    p = ref_weights(x.shape[0], tau, dt)
    r = torch.tensordot(p, x, dims=1)
    if tau is None:
        a = torch.minimum(torch.clamp(r, min=0.0), th)
    else:
        a = torch.minimum(torch.clamp(r / tau, min=0.0), th / dt)
    loss = (g * a.unsqueeze(0)).sum()
    loss.backward()
    return x.grad, th.grad


def official_lif_grads(x, g, vth, tau, dt):
    """The official code's LIF backward rule, written out: G = T * weighted_rate(g), spread evenly over T."""
    T = x.shape[0]
    p = ref_weights(T, tau, dt)
    r = torch.tensordot(p, x, dims=1)
    G = T * torch.tensordot(p, g, dims=1)
    inside = ((r > 0) & (r < vth * tau / dt)).double()
    gx = (G * inside / tau / T).unsqueeze(0).expand_as(x)
    gth = dt * (G * (r > vth * tau / dt).double()).sum()
    return gx, gth


def run_node(node, x, g):
    x = x.detach().clone().requires_grad_(True)
    out = node(x)
    (out * g).sum().backward()
    return out.detach(), x.grad, node.v_threshold.grad


def data(T=6, n=40, scale=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, n, generator=gen, dtype=torch.float64) * scale + 0.4 * scale)
    g = torch.randn(T, n, generator=gen, dtype=torch.float64)
    return x, g


# ------------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("alpha", [0.5, 1.0, 0.3])
def test_if_forward_matches_the_paper_dynamics(alpha):
    x, _ = data(T=9, scale=2.0)
    node = DSRIFNode(v_threshold=1.3, alpha=alpha, v_threshold_bound=0.01)
    torch.testing.assert_close(node(x), ref_spikes(x, 1.3, alpha))


def test_lif_forward_matches_the_paper_dynamics():
    x, _ = data(T=12, scale=8.0)
    node = DSRLIFNode(v_threshold=0.3, alpha=0.3, tau=1.0, delta_t=0.05)
    out = node(x)
    torch.testing.assert_close(out, ref_spikes(x, 0.3, 0.3, 1.0, 0.05))
    assert sorted(out.unique().tolist()) == pytest.approx([0.0, 0.3 / 0.05])


def official_lif_forward_float32(x: torch.Tensor, vth: float, alpha: float, tau: float, dt: float) -> torch.Tensor:
    """The official LIFFunction.forward (cifar/modules/neuron.py) transcribed: tau is a float32 tensor, the leak
    and the input factor are the tensor expressions exp(-dt/tau) and 1 - beta."""
    tau_t = torch.tensor(tau)
    vth_t = torch.tensor(vth)
    beta = torch.exp(-dt / tau_t)
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        v = beta * v + (1 - beta) * x[t]
        spike = (v >= alpha * vth_t).float() * vth_t
        v = v - spike
        out.append(spike / dt)
    return torch.stack(out)


def test_lif_leak_is_the_official_float32_expression():
    beta, scale = lif_leak(1.0, 0.05)
    official_beta = torch.exp(-0.05 / torch.tensor(1.0))
    assert beta.dtype == scale.dtype == torch.float32
    assert beta.item() == official_beta.item() and scale.item() == (1 - official_beta).item()
    # the float64 value rounded to float32 is one ulp away: the case the official expression settles
    assert scale.item() != torch.tensor(1.0 - math.exp(-0.05), dtype=torch.float32).item()
    b64, s64 = lif_leak(1.0, 0.05, torch.float64)
    assert b64.dtype == torch.float64 and s64.item() == pytest.approx(1.0 - math.exp(-0.05), rel=1e-15)


def test_lif_float32_spikes_equal_the_official_forward():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(20, 4000, generator=gen) * 6.0 + 2.0
    node = DSRLIFNode(v_threshold=0.3, alpha=0.3, tau=1.0, delta_t=0.05)
    assert torch.equal(node(x), official_lif_forward_float32(x, 0.3, 0.3, 1.0, 0.05))
    # an input whose membrane reaches the firing level with the float64-rounded factor but not with the official one
    fire_at = torch.tensor(0.3 * 0.3, dtype=torch.float32)
    official = (1 - torch.exp(-0.05 / torch.tensor(1.0)))
    rounded = torch.tensor(1.0 - math.exp(-0.05), dtype=torch.float32)
    xs = fire_at / official * (1 + torch.linspace(-4e-7, 4e-7, 2001))
    edge = xs[(official * xs < fire_at) & (rounded * xs >= fire_at)]
    assert edge.numel() > 0
    assert not node(edge[:1].view(1, 1)).any()


def test_if_firing_rate_approximates_the_clamped_input_within_vth_over_T():
    """For a constant input the firing rate is clamp(x, 0, V_th) up to max(alpha, 1-alpha) V_th / T."""
    T, vth, alpha = 20, 2.0, 0.5
    x = torch.linspace(-1.0, 3.0, 401, dtype=torch.float64)
    rate = DSRIFNode(v_threshold=vth, alpha=alpha)(x.expand(T, -1)).mean(0)
    err = (rate - x.clamp(0.0, vth)).abs().max()
    assert err <= max(alpha, 1 - alpha) * vth / T + 1e-12


def test_spike_representation_weights():
    torch.testing.assert_close(representation_weights(4), torch.full((4,), 0.25))
    p = representation_weights(5, tau=1.0, delta_t=0.05, dtype=torch.float64)
    torch.testing.assert_close(p, ref_weights(5, 1.0, 0.05))
    assert p[-1] > p[0] and abs(float(p.sum()) - 1.0) < 1e-12
    seq = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(spike_representation(seq, 1.0, 0.05), torch.tensordot(p, seq, dims=1))


# ------------------------------------------------------------------------------------------ backward
@pytest.mark.parametrize("grad_mode", ["official", "exact"])
def test_if_backward_is_the_gradient_of_the_clamped_rate_mapping(grad_mode):
    x, g = data(T=7, scale=2.0)
    node = DSRIFNode(v_threshold=1.1, alpha=0.5, grad_mode=grad_mode).double()
    _, gx, gth = run_node(node, x, g)
    ref_x, ref_th = mapping_grads(x, g, 1.1)
    torch.testing.assert_close(gx, ref_x)
    torch.testing.assert_close(gth, ref_th)
    assert gth != 0 and (gx == 0).any() and (gx != 0).any()  # both clamp sides and the linear part are hit


def test_lif_exact_backward_is_the_gradient_of_the_weighted_rate_mapping():
    x, g = data(T=8, scale=8.0)
    node = DSRLIFNode(v_threshold=0.2, alpha=0.3, tau=1.0, delta_t=0.05, grad_mode="exact").double()
    _, gx, gth = run_node(node, x, g)
    ref_x, ref_th = mapping_grads(x, g, 0.2, 1.0, 0.05)
    torch.testing.assert_close(gx, ref_x)
    torch.testing.assert_close(gth, ref_th)
    assert gth != 0


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_lif_official_backward_is_the_official_rule(tau):
    x, g = data(T=8, scale=8.0)
    node = DSRLIFNode(v_threshold=0.2, alpha=0.3, tau=tau, delta_t=0.05).double()
    _, gx, gth = run_node(node, x, g)
    ref_x, ref_th = official_lif_grads(x, g, 0.2, tau, 0.05)
    torch.testing.assert_close(gx, ref_x)
    torch.testing.assert_close(gth, ref_th)
    exact_x, _ = mapping_grads(x, g, 0.2, tau, 0.05)
    assert not torch.allclose(gx, exact_x)  # the official rule spreads evenly over T, the exact one by weight


def test_backward_has_no_temporal_credit_and_differs_from_bptt():
    """DSR's input gradient is the same at every step (IF); BPTT's varies with the membrane trajectory."""
    x, g = data(T=6, scale=2.0)
    _, gx, _ = run_node(DSRIFNode(v_threshold=1.0, alpha=1.0).double(), x, g)
    assert torch.allclose(gx, gx[:1].expand_as(gx))
    bptt = IFNode(v_threshold=1.0, v_reset=None).double()
    xb = x.clone().requires_grad_(True)
    (bptt(xb) * g).sum().backward()
    assert not torch.allclose(xb.grad, gx, atol=1e-3)


def test_threshold_grad_scale_multiplies_the_threshold_gradient():
    x, g = data(T=5, scale=3.0)
    _, _, g1 = run_node(DSRIFNode(v_threshold=1.0).double(), x, g)
    _, _, g2 = run_node(DSRIFNode(v_threshold=1.0, threshold_grad_scale=0.001).double(), x, g)
    torch.testing.assert_close(g2, g1 * 0.001)


def test_function_saves_one_step_of_memory_independent_of_T():
    def saved_bytes(node, T):
        total = []

        def pack(t):
            total.append(t.numel() * t.element_size())
            return t

        x = torch.randn(T, 4, 64, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            node(x)
        return sum(total)

    assert saved_bytes(DSRIFNode(), 4) == saved_bytes(DSRIFNode(), 32) == 4 * 64 * 4
    assert saved_bytes(DSRLIFNode(), 32) == 4 * 64 * 4
    assert saved_bytes(IFNode(v_reset=None), 32) > saved_bytes(IFNode(v_reset=None), 4)  # BPTT keeps every step


# ---------------------------------------------------------------------------------- threshold bound
def test_threshold_is_projected_onto_the_bound_and_keeps_learning():
    node = DSRIFNode(v_threshold=1.0, alpha=0.5, v_threshold_bound=0.3)
    with torch.no_grad():
        node.v_threshold.fill_(0.05)  # e.g. after an optimiser step
    x = torch.full((4, 8), 2.0)
    out = node(x)
    assert float(node.v_threshold.detach()) == pytest.approx(0.3)  # projected in place, as the official code
    assert sorted(out.unique().tolist()) == pytest.approx([0.3])
    out.sum().backward()
    assert node.v_threshold.grad is not None and float(node.v_threshold.grad) > 0  # still trainable


def test_sgd_never_uses_a_threshold_below_the_bound():
    """Minimising the (saturated) output drives V_th down; steps overshoot the bound, forwards never use less."""
    node = DSRIFNode(v_threshold=1.0, alpha=0.5, v_threshold_bound=0.2)
    opt = torch.optim.SGD(node.parameters(), lr=0.4)
    x = torch.full((5, 16), 3.0)  # r > V_th: the output rate saturates at V_th, dL/dV_th > 0
    overshoot = False
    for _ in range(10):
        opt.zero_grad()
        out = node(x)
        assert out.max() >= 0.2 - 1e-7 and float(node.v_threshold.detach()) >= 0.2 - 1e-7
        out.mean().backward()
        assert float(node.v_threshold.grad) > 0
        opt.step()
        overshoot |= float(node.v_threshold.detach()) < 0.2
    assert overshoot and float(node(x).detach().max()) == pytest.approx(0.2)


def test_spikingjelly_dsr_loses_the_threshold_gradient_below_the_bound():
    """SpikingJelly clamps inside the graph: below the bound the threshold gets no gradient (it stays stuck);
    the official code (and ours) project the parameter and keep the gradient."""
    from spikingjelly.activation_based.neuron import DSRIFNode as SJDSRIFNode

    sj = SJDSRIFNode(T=4, v_threshold=1.0, alpha=0.5, v_threshold_lower_bound=0.3)
    with torch.no_grad():
        sj.v_threshold.fill_(0.05)
    sj(torch.full((4, 8), 2.0)).sum().backward()
    assert float(sj.v_threshold.grad) == 0.0 and float(sj.v_threshold.detach()) == pytest.approx(0.05)


# ---------------------------------------------------------------------------------- SpikingJelly 2.0
@pytest.mark.parametrize("scale", [1.0, 0.001])
def test_if_matches_spikingjelly_dsr_if_above_the_bound(scale):
    from spikingjelly.activation_based.neuron import DSRIFNode as SJDSRIFNode

    x, g = data(T=6, scale=8.0)
    x, g = x.float(), g.float()
    ours = DSRIFNode(v_threshold=6.0, alpha=0.5, v_threshold_bound=0.01, threshold_grad_scale=scale)
    sj = SJDSRIFNode(T=6, v_threshold=6.0, alpha=0.5, v_threshold_lower_bound=0.01, v_threshold_grad_scaling=scale)
    for a, b in zip(run_node(ours, x, g), run_node(sj, x, g)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_lif_matches_spikingjelly_dsr_lif_above_the_bound(tau):
    from spikingjelly.activation_based.neuron import DSRLIFNode as SJDSRLIFNode

    x, g = data(T=8, scale=8.0)
    x, g = x.float(), g.float()
    ours = DSRLIFNode(v_threshold=0.3, alpha=0.3, v_threshold_bound=0.0005, tau=tau, delta_t=0.05)
    sj = SJDSRLIFNode(T=8, v_threshold=0.3, alpha=0.3, v_threshold_lower_bound=0.0005, tau=tau, delta_t=0.05)
    for a, b in zip(run_node(ours, x, g), run_node(sj, x, g)):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------------- integration
def test_factory_names_and_firing_rate_counting():
    node = build_neuron_factory({"type": "dsr_lif", "v_threshold": 0.4})()
    assert isinstance(node, DSRLIFNode) and float(node.v_threshold.detach()) == pytest.approx(0.4)
    ann = build_neuron_factory({"type": "ann_relu"})()
    torch.testing.assert_close(ann(torch.tensor([-1.0, 2.0])), torch.tensor([0.0, 2.0]))
    node.record_rate = True
    out = node(torch.rand(5, 10) * 20)
    spikes, n = node.spike_count.tolist()
    assert n == 50 and spikes == float((out != 0).sum())  # events are counted, not spike values (V_th/dt)


def test_fixed_thresholds_are_kept_in_the_state_dict():
    node = DSRIFNode(v_threshold=2.5, learnable_threshold=False)
    assert not list(node.parameters()) and float(node.state_dict()["v_threshold"]) == 2.5
    other = DSRIFNode(v_threshold=1.0, learnable_threshold=False)
    other.load_state_dict(node.state_dict())
    assert float(other.v_threshold) == 2.5


def test_invalid_arguments_and_single_step_are_rejected():
    with pytest.raises(ValueError, match="multi-step"):
        DSRIFNode(step_mode="s")
    with pytest.raises(ValueError, match="alpha"):
        DSRIFNode(alpha=0.0)
    with pytest.raises(ValueError, match="grad_mode"):
        DSRLIFNode(grad_mode="bptt")
    node = DSRIFNode()
    node.step_mode = "s"  # e.g. set_step_mode(model, "s")
    with pytest.raises(RuntimeError, match="single-step"):
        node(torch.zeros(3, 2))
