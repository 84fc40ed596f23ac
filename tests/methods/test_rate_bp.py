"""Rate-BP: T = 1 equals BPTT, T > 1 equals an independent rate-gradient reference, nothing O(T) is saved.

The reference below is written from the paper's equations (methods/rev_rate.md B1) with plain tensor ops:
an explicit spike pass over all T steps (own LIF, own BN, own sigmoid surrogate) accumulating r, e and
the BN statistics, then an explicit rate graph on the mean input where each LIF is
``r.detach() + x·e − (x·e).detach()``, each BN is the straight-through ``calcu_rate`` and the loss gradient
is scaled by 1/T as ``loss.detach() + loss/T − (loss/T).detach()``. It shares no code with
``lightning_snn.methods._rate_graph`` (it only reads the weights of the modules).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_snn.backbones import Flatten, RateBPVGG, SpikingBasicBlock, SpikingResNet, TimeDistributed
from lightning_snn.methods import BPTT, RateBP
from lightning_snn.methods._rate_graph import RATE_BP_LIF, RATE_INPUTS, RateGraph, rate_bp_forward
from lightning_snn.neurons import BaseNode, BatchNormThroughTime, LIFNode, build_neuron_factory, reset_states

PAPER = dict(RATE_BP_LIF)
SOFT_NO_DETACH = {**RATE_BP_LIF, "detach_reset": False, "decay": 0.5}
HARD_RESET = {**RATE_BP_LIF, "v_reset": 0.0, "detach_reset": False, "decay": 0.3}
NEURONS = [pytest.param(PAPER, id="paper"), pytest.param(SOFT_NO_DETACH, id="soft-nodetach"), pytest.param(HARD_RESET, id="hard")]


def tiny_resnet(neuron: dict, step_mode: str, num_classes: int = 3, in_channels: int = 2) -> SpikingResNet:
    """Stem + two post-activation basic blocks (one with a conv shortcut) + FC-LIF head, BN through time."""
    return SpikingResNet(
        stages=[(4, 1, 1), (6, 1, 2)], num_classes=num_classes, in_channels=in_channels, input_size=8,
        neuron=build_neuron_factory(neuron), step_mode=step_mode, stem_channels=4, hidden=5, norm="bn",
    )


def make_pair(neuron: dict, step_mode: str, T: int, **kwargs):
    torch.manual_seed(0)
    rate = RateBP(backbone=tiny_resnet(neuron, step_mode), num_classes=3, input_shape=(2, 8, 8), T=T,
                  step_mode=step_mode, neuron=neuron, **kwargs).double()
    torch.manual_seed(0)
    bptt = BPTT(backbone=tiny_resnet(neuron, step_mode), num_classes=3, input_shape=(2, 8, 8), T=T,
                step_mode=step_mode, neuron=neuron).double()
    bptt.load_state_dict(rate.state_dict())
    with torch.no_grad():  # larger BN gains so that every neuron fires sometimes and sits near threshold
        for (name, p), q in zip(rate.named_parameters(), bptt.parameters()):
            if "weight" in name and p.dim() == 1:
                p.uniform_(0.8, 2.0)
                q.copy_(p)
    return rate, bptt


def grads_of(model, x, y):
    model.train()
    model.zero_grad(set_to_none=True)
    outputs = model(x)
    loss = model.compute_loss(outputs, y)
    loss.backward()
    return loss.detach(), outputs.detach(), [p.grad.clone() for p in model.parameters()]


# ------------------------------------------------------------------------------------ reference
def _psi(h, th, alpha):
    sg = torch.sigmoid(alpha * (h - th))
    return alpha * sg * (1.0 - sg)


class Reference:
    """Rate-BP written out from the paper's equations for the module tree of :func:`tiny_resnet`."""

    def __init__(self, model: nn.Module, bn_per_step: bool, official_single_step: bool = False):
        self.model = model
        self.bn_per_step = bn_per_step
        self.official = official_single_step  # the repository's single-step BN hook and rate input, literally
        self.neuron = {}  # module -> (r, e)
        self.bn = {}  # module -> (mean, var)

    # spike pass: whole sequences [T, B, ...], layer by layer
    def spike(self, m, x):
        if isinstance(m, nn.Sequential):
            for sub in m:
                x = self.spike(sub, x)
            return x
        if isinstance(m, SpikingBasicBlock):
            out = self.spike(m.conv2, self.spike(m.sn1, self.spike(m.conv1, x)))
            return self.spike(m.sn2, out + self.spike(m.shortcut, x))
        if isinstance(m, nn.Identity):
            return x
        if isinstance(m, TimeDistributed):
            return m.module(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        if isinstance(m, Flatten):
            return x.flatten(2)
        if isinstance(m, BatchNormThroughTime):
            return self._spike_bn(m, x)
        if isinstance(m, BaseNode):
            return self._spike_lif(m, x)
        raise AssertionError(type(m))

    def _spike_bn(self, bn, x):
        T = x.shape[0]
        dims = [0, *range(2, x.dim() - 1)]  # per step: over B and spatial dims (x[t] is [B, C, ...])
        shape = (1, -1) + (1,) * (x.dim() - 3)
        if self.bn_per_step:
            means = [x[t].mean(dims) for t in range(T)]
            vars_ = [((x[t] - mu.view(shape)) ** 2).mean(dims) for t, mu in enumerate(means)]
            out = torch.stack([
                (x[t] - means[t].view(shape)) / torch.sqrt(vars_[t].view(shape) + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)
                for t in range(T)
            ])
            mean = sum(means) / T
            var = T / sum(1.0 / (v + bn.eps) for v in vars_) - bn.eps
            if self.official:  # model_setting.py: bn_forward_hook, spike stage, step_mode 's', step by step
                curr_t = 0  # the BN module's curr_time_step: set to 0 by init_model and never advanced
                in_mean = in_recip = None
                for t in range(T):
                    in_mean = means[t] if in_mean is None else (curr_t * in_mean + means[t]) / (curr_t + 1)
                    var_eps = vars_[t] + bn.eps
                    in_var = None  # `module.in_spikes_var` is only set in multi-step mode
                    in_recip = (curr_t * in_recip + 1.0 / var_eps) / (curr_t + 1) if in_var is not None else 1.0 / var_eps
                mean, var = in_mean, 1.0 / in_recip  # handed to calcu_rate, which adds eps again
        else:
            z = x.flatten(0, 1)
            mean = z.mean(dims)
            var = ((z - mean.view(shape)) ** 2).mean(dims)
            out = ((z - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)).unflatten(0, x.shape[:2])
        self.bn[bn] = (mean, var)
        return out

    def _spike_lif(self, node, x):
        lam, th, alpha, vr = node.decay, float(node.v_threshold), node.surrogate.alpha, node.v_reset
        v = torch.zeros_like(x[0]) if vr is None else torch.full_like(x[0], vr)
        eps = torch.ones_like(x[0])
        e = torch.zeros_like(x[0])
        spikes = []
        for t in range(x.shape[0]):
            h = lam * v + x[t] if vr is None else vr + lam * (v - vr) + x[t]
            s = (h >= th).to(x.dtype)
            psi = _psi(h, th, alpha)
            e = e + psi * eps
            if vr is None and node.detach_reset:  # the paper's eligibility recursions
                eps = 1.0 + lam * eps
            elif vr is None:
                eps = 1.0 + eps * (lam - lam * th * psi)
            else:
                assert vr == 0.0 and not node.detach_reset
                eps = 1.0 + eps * (lam * (1.0 - s) - lam * h * psi)
            v = h - th * s if vr is None else h * (1.0 - s) + vr * s
            spikes.append(s)
        spikes = torch.stack(spikes)
        self.neuron[node] = (spikes.mean(0), e / x.shape[0])
        return spikes

    # rate pass: [B, ...] with autograd
    def rate(self, m, x):
        if isinstance(m, nn.Sequential):
            for sub in m:
                x = self.rate(sub, x)
            return x
        if isinstance(m, SpikingBasicBlock):
            out = self.rate(m.conv2, self.rate(m.sn1, self.rate(m.conv1, x)))
            return self.rate(m.sn2, out + self.rate(m.shortcut, x))
        if isinstance(m, nn.Identity):
            return x
        if isinstance(m, TimeDistributed):
            mod = m.module
            if isinstance(mod, nn.Conv2d):
                return F.conv2d(x, mod.weight, mod.bias, mod.stride, mod.padding)
            if isinstance(mod, nn.Linear):
                return F.linear(x, mod.weight, mod.bias)
            if isinstance(mod, nn.AdaptiveAvgPool2d):
                return F.adaptive_avg_pool2d(x, mod.output_size)
            raise AssertionError(type(mod))
        if isinstance(m, Flatten):
            return x.flatten(1)
        if isinstance(m, BatchNormThroughTime):  # calcu_rate of the paper's code
            mean_s, var_s = self.bn[m]
            dims = [0, *range(2, x.dim())]
            shape = (1, -1) + (1,) * (x.dim() - 2)
            rate_mean = x.mean(dims, keepdim=True)
            rate_mean = mean_s.view(shape).detach() + (rate_mean - rate_mean.detach())
            rate_var = ((x - rate_mean) ** 2).mean(dims, keepdim=True)
            rate_var = F.relu(var_s.view(shape).detach() + (rate_var - rate_var.detach()))
            return m.weight.view(shape) * (x - rate_mean) / torch.sqrt(rate_var + m.eps) + m.bias.view(shape)
        if isinstance(m, BaseNode):
            r, e = self.neuron[m]
            return r.detach() + x * e - (x * e).detach()
        raise AssertionError(type(m))

    def grads(self, x_seq, y):
        T = x_seq.shape[0]
        with torch.no_grad():
            spike_out = self.spike(self.model.body, x_seq)
        # the repository's single-step model hook runs the rate pass on the last step's input (args[0])
        out = self.rate(self.model.body, x_seq[-1] if self.official else x_seq.mean(0))
        loss = F.cross_entropy(out, y)
        loss = loss.detach() + (loss / T - (loss / T).detach())
        params = list(self.model.parameters())
        return loss.detach(), spike_out.mean(0), torch.autograd.grad(loss, params)


# ------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("step_mode", ["m", "s"])
@pytest.mark.parametrize("neuron", NEURONS)
def test_t1_gradients_equal_bptt(step_mode, neuron):
    """At T = 1 the rate graph is the temporal graph and the 1/T scale is 1: the gradients are BPTT's."""
    rate, bptt = make_pair(neuron, step_mode, T=1)
    torch.manual_seed(1)
    x = torch.randn(6, 2, 8, 8, dtype=torch.float64) * 2
    y = torch.randint(0, 3, (6,))
    loss_r, out_r, g_r = grads_of(rate, x, y)
    loss_b, out_b, g_b = grads_of(bptt, x, y)
    assert torch.equal(loss_r, loss_b) and torch.equal(out_r, out_b)
    assert any(g.abs().sum() > 0 for g in g_b[:1])
    for a, b in zip(g_r, g_b):  # BN backward is autograd-composed vs. native: equal to float64 round-off
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * float(b.abs().max() + 1))


def test_t1_bitwise_equal_bptt_without_bn():
    """Without BN (the only layer whose rate backward is a different formula) T = 1 is bit-for-bit BPTT."""
    kw = dict(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=1,
              backbone_kwargs=dict(channels=[4, 6], hidden=16, spiking_output=False))
    torch.manual_seed(0)
    rate = RateBP(**kw)
    bptt = BPTT(neuron=RATE_BP_LIF, **kw)
    bptt.load_state_dict(rate.state_dict())
    x, y = torch.randn(8, 1, 8, 8) * 2, torch.randint(0, 10, (8,))
    _, _, g_r = grads_of(rate, x, y)
    _, _, g_b = grads_of(bptt, x, y)
    assert all(torch.equal(a, b) for a, b in zip(g_r, g_b))
    assert sum(float(g.abs().sum()) for g in g_b) > 0


@pytest.mark.parametrize("step_mode", ["m", "s"])
@pytest.mark.parametrize("neuron", NEURONS)
def test_gradients_match_reference(step_mode, neuron):
    T = 4
    rate, _ = make_pair(neuron, step_mode, T=T)
    torch.manual_seed(2)
    frames = torch.rand(6, T, 2, 8, 8, dtype=torch.float64) * 3  # event-like input: the mean frame is a real mean
    y = torch.randint(0, 3, (6,))
    loss, out, g = grads_of(rate, frames, y)
    ref = Reference(rate.backbone, bn_per_step=step_mode == "s")
    ref_loss, ref_out, g_ref = ref.grads(frames.transpose(0, 1), y)
    torch.testing.assert_close(out[0], ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    assert sum(float(r.abs().sum()) for r in g_ref) > 0
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11 * float(b.abs().max() + 1))


@pytest.mark.parametrize("neuron", [pytest.param(PAPER, id="paper"), pytest.param(HARD_RESET, id="hard")])
def test_single_step_official_options_match_the_repository(neuron):
    """rate_bn_stats: official_last_step + rate_input: last_frame = the repository's single-step computation
    (last step's BN statistics with eps twice, last frame), written out literally in the reference; the
    library's defaults stay equal to their own reference, and the two differ (the check is sensitive)."""
    T = 4
    official, _ = make_pair(neuron, "s", T=T, rate_bn_stats="official_last_step", rate_input="last_frame")
    library, _ = make_pair(neuron, "s", T=T)
    torch.manual_seed(2)
    frames = torch.rand(6, T, 2, 8, 8, dtype=torch.float64) * 3
    y = torch.randint(0, 3, (6,))
    loss, out, g = grads_of(official, frames, y)
    ref_loss, ref_out, g_ref = Reference(official.backbone, bn_per_step=True, official_single_step=True).grads(
        frames.transpose(0, 1), y
    )
    torch.testing.assert_close(out[0], ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    assert sum(float(r.abs().sum()) for r in g_ref) > 0
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11 * float(b.abs().max() + 1))
    lib_loss, lib_out, g_lib = grads_of(library, frames, y)
    assert torch.equal(lib_out, out) and torch.equal(lib_loss, loss)  # same forward: only gradients differ
    _, _, g_lib_ref = Reference(library.backbone, bn_per_step=True).grads(frames.transpose(0, 1), y)
    for a, b in zip(g_lib, g_lib_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11 * float(b.abs().max() + 1))
    first_conv = 0  # the stem conv sees the rate input directly
    assert (g[first_conv] - g_lib[first_conv]).norm() > 1e-3 * g_lib[first_conv].norm()


@pytest.mark.parametrize("rate_bn_stats", ["time_average", "official_last_step"])
def test_single_step_options_one_at_a_time_and_multi_step_unaffected(rate_bn_stats):
    """Each single-step option acts alone (static images: last frame = mean frame, so only the BN choice
    matters); in multi-step mode the options do not apply (one BN call, eps once, the mean frame)."""
    x, y = torch.randn(5, 2, 8, 8, dtype=torch.float64) * 2, torch.randint(0, 3, (5,))
    frame_choice = [make_pair(PAPER, "s", T=3, rate_bn_stats=rate_bn_stats, rate_input=r)[0] for r in RATE_INPUTS]
    g_mean, g_last = (grads_of(m, x, y)[2] for m in frame_choice)
    assert all(torch.equal(a, b) for a, b in zip(g_mean, g_last))
    ref = Reference(frame_choice[0].backbone, bn_per_step=True, official_single_step=rate_bn_stats != "time_average")
    _, _, g_ref = ref.grads(frame_choice[0].encode(x), y)
    for a, b in zip(g_mean, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11 * float(b.abs().max() + 1))
    frames = torch.rand(4, 3, 2, 8, 8, dtype=torch.float64) * 3
    multi = [make_pair(PAPER, "m", T=3, rate_bn_stats=rate_bn_stats, rate_input=r)[0] for r in RATE_INPUTS]
    plain, _ = make_pair(PAPER, "m", T=3)
    g_plain = grads_of(plain, frames, y[:4])[2]
    for model in multi:
        assert all(torch.equal(a, b) for a, b in zip(grads_of(model, frames, y[:4])[2], g_plain))


@pytest.mark.parametrize("step_mode", ["m", "s"])
@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(PAPER, id="paper"),
        pytest.param({**PAPER, "detach_reset": False, "v_threshold": 0.75}, id="soft-nodetach"),
        pytest.param({**PAPER, "v_reset": -0.1, "detach_reset": True}, id="hard-detach"),
        pytest.param({**PAPER, "v_reset": 0.0, "detach_reset": False}, id="hard-nodetach"),
        pytest.param({"type": "if", "v_reset": None, "detach_reset": True, "surrogate": {"name": "atan"}}, id="IF-atan"),
        pytest.param({"type": "lif", "tau": 2.0, "decay_input": True, "v_reset": None, "surrogate": "sigmoid"}, id="tau-decay_input"),
    ],
)
def test_eligibility_is_bptt_gradient_for_constant_input(step_mode, spec):
    """For a constant input current, e = ∂r/∂c is exactly what BPTT computes for the mean spike count."""
    T = 7
    torch.manual_seed(3)
    node = build_neuron_factory(spec)()
    node.step_mode = step_mode
    model = _Seq(node, step_mode).double()
    c = (torch.rand(50, dtype=torch.float64) * 3 - 0.5).requires_grad_()
    g_out = torch.randn(50, dtype=torch.float64)

    graph = RateGraph(model)
    reset_states(model)
    spikes = graph.spike_pass(c.detach().expand(T, 1, 50))
    reset_states(model)
    rate_out = graph.rate_pass(c.view(1, 1, 50))
    torch.testing.assert_close(rate_out[0, 0], spikes.mean(0)[0], rtol=0, atol=0)
    (g_rate,) = torch.autograd.grad(rate_out[0, 0], c, g_out)

    reset_states(model)
    bptt_out = model(c.expand(T, 1, 50))
    (g_bptt,) = torch.autograd.grad(bptt_out.mean(0)[0], c, g_out)
    assert g_bptt.abs().sum() > 0
    torch.testing.assert_close(g_rate, g_bptt, rtol=1e-12, atol=1e-14)


class _Seq(nn.Module):
    """[T, B, N] -> neuron, in either step mode (the T loop outside in single-step mode)."""

    def __init__(self, node, step_mode):
        super().__init__()
        self.node, self.step_mode = node, step_mode

    def forward(self, x):
        if self.step_mode == "m":
            return self.node(x)
        return torch.stack([self.node(x_t) for x_t in x.unbind(0)])


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_nothing_proportional_to_T_is_saved(step_mode):
    def saved_shapes(model, T):
        model.T = T
        shapes = []

        def pack(t):
            shapes.append(tuple(t.shape))
            return t

        model.train()
        x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model.compute_loss(model(x), torch.tensor([0, 1, 2]))
        loss.backward()
        return sorted(shapes)

    rate, bptt = make_pair(PAPER, step_mode, T=2)
    params = {tuple(p.shape) for p in rate.parameters()} | {tuple(p.t().shape) for p in rate.parameters() if p.dim() == 2}
    short, long = saved_shapes(rate, 2), saved_shapes(rate, 6)
    assert short == long  # the very same saved tensors whatever T is
    batch_sized = [s for s in long if s and s not in params]
    assert batch_sized and all(s[0] in (1, 3) for s in batch_sized)  # [B, ...] or [1, B, ...], never T·B
    # the check is sensitive: BPTT's saved tensors grow with T
    b_short, b_long = saved_shapes(bptt, 2), saved_shapes(bptt, 6)
    assert sum(math.prod(s) for s in b_long) > 2 * sum(math.prod(s) for s in b_short)


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_forward_values_running_stats_and_hooks(step_mode):
    T = 3
    rate, bptt = make_pair(PAPER, step_mode, T=T)
    x, y = torch.randn(5, 2, 8, 8, dtype=torch.float64), torch.randint(0, 3, (5,))
    loss_r, out_r, _ = grads_of(rate, x, y)
    loss_b, out_b, _ = grads_of(bptt, x, y)
    # the loss value is the spiking network's (BPTT forward), BN running statistics updated as in BPTT
    assert torch.equal(out_r[0], out_b.mean(0)) and torch.equal(loss_r, loss_b)
    for a, b in zip(rate.buffers(), bptt.buffers()):
        assert torch.equal(a, b)
    # nothing is left on the backbone: no hooks, no overridden forward
    for m in rate.backbone.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and "forward" not in m.__dict__
    # evaluation is the ordinary spiking forward
    rate.eval(), bptt.eval()
    with torch.no_grad():
        assert torch.equal(rate(x), bptt(x))


def test_rate_graph_values_are_time_means():
    """Multi-step: conv/BN/pool/linear are linear in the rate graph, so its logits are the T-mean logits."""
    rate, _ = make_pair(PAPER, "m", T=5)
    frames = torch.rand(4, 5, 2, 8, 8, dtype=torch.float64) * 3
    x_seq = frames.transpose(0, 1)
    graph = RateGraph(rate.backbone)
    reset_states(rate.backbone)
    spikes = graph.spike_pass(x_seq)
    reset_states(rate.backbone)
    logits = graph.rate_pass(x_seq.mean(0, keepdim=True))
    torch.testing.assert_close(logits[0], spikes.mean(0), rtol=1e-10, atol=1e-10)


def test_grad_scale_and_rate_false():
    rate, bptt = make_pair(PAPER, "m", T=4)
    unscaled, _ = make_pair(PAPER, "m", T=4, grad_scale="none")
    as_bptt, _ = make_pair(PAPER, "m", T=4, rate=False)
    x, y = torch.randn(4, 2, 8, 8, dtype=torch.float64), torch.randint(0, 3, (4,))
    _, _, g = grads_of(rate, x, y)
    _, _, g_none = grads_of(unscaled, x, y)
    for a, b in zip(g, g_none):
        torch.testing.assert_close(a * 4, b, rtol=1e-12, atol=1e-15)
    _, _, g_bptt = grads_of(bptt, x, y)
    _, _, g_flag = grads_of(as_bptt, x, y)  # rate: false is BPTT, bit for bit
    assert all(torch.equal(a, b) for a, b in zip(g_flag, g_bptt))


def test_rejects_tet_and_bad_scale():
    with pytest.raises(ValueError, match="loss must be 'ce'"):
        RateBP(backbone="mnistnet", input_shape=(1, 8, 8), loss="tet")
    with pytest.raises(ValueError, match="grad_scale"):
        RateBP(backbone="mnistnet", input_shape=(1, 8, 8), grad_scale="T")
    with pytest.raises(ValueError, match="rate_bn_stats must be one of"):
        RateBP(backbone="mnistnet", input_shape=(1, 8, 8), rate_bn_stats="last")
    with pytest.raises(ValueError, match="rate_input must be one of"):
        RateBP(backbone="mnistnet", input_shape=(1, 8, 8), rate_input="first_frame")
    RateBP(backbone="mnistnet", input_shape=(1, 8, 8), loss="tet", rate=False)  # BPTT with TET is fine


def test_rejects_a_learnable_leak():
    """PLIF's τ would get no gradient through the rate graph (λ, k are constants there): refused, not left untrained."""
    model = RateBP(backbone="mnistnet", input_shape=(1, 8, 8), T=2, neuron={"type": "plif"},
                   backbone_kwargs={"channels": [2, 2], "hidden": 4})
    with pytest.raises(ValueError, match=r"PLIFNode.*learns it"):
        model.compute_loss(model(torch.randn(2, 1, 8, 8)), torch.tensor([0, 1]))


def test_default_neuron_is_the_papers():
    model = RateBP(backbone="mnistnet", input_shape=(1, 8, 8))
    node = next(m for m in model.modules() if isinstance(m, LIFNode))
    assert (node.decay, float(node.v_threshold), node.v_reset, node.detach_reset) == (0.2, 1.0, None, True)
    assert type(node.surrogate).__name__ == "Sigmoid" and node.surrogate.alpha == 4.0


def test_failure_inside_a_pass_leaves_the_backbone_clean():
    rate, _ = make_pair(PAPER, "m", T=2)
    rate.train()
    bad = rate.backbone.body[-1].module  # the classifier

    def boom(module, args, out):
        raise RuntimeError("boom")

    handle = bad.register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        rate(torch.randn(2, 2, 8, 8, dtype=torch.float64))
    handle.remove()
    assert torch.is_grad_enabled()
    for m in rate.backbone.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and "forward" not in m.__dict__


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_digits_accuracy(step_mode):
    """Rate-BP at T = 4 on the real 8x8 digits: >= 95% test accuracy on CPU in well under a minute."""
    import lightning as L

    from lightning_snn.data import DigitsDataModule

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and robust on a loaded machine
    try:
        L.seed_everything(0, verbose=False)
        backbone = RateBPVGG(cfg=(16, "A", 32, "A"), num_classes=10, in_channels=1, input_size=8,
                             neuron=build_neuron_factory(RATE_BP_LIF), init="torch", step_mode=step_mode)
        model = RateBP(backbone=backbone, num_classes=10, input_shape=(1, 8, 8), T=4, step_mode=step_mode)
        model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=1e-2)
        trainer = L.Trainer(max_epochs=10, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, deterministic=True,
                            num_sanity_val_steps=0, limit_val_batches=0)
        data = DigitsDataModule(batch_size=32)
        trainer.fit(model, data)
        acc = trainer.test(model, data, verbose=False)[0]["test/acc"]
    finally:
        torch.set_num_threads(threads)
    assert acc >= 0.95, acc
