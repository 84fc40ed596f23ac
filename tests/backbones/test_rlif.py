"""rlif_snn (sparch's RLIF network): forward and BPTT gradients against the recursion written out by hand."""
from __future__ import annotations

import pytest
import torch

from lightning_snn.backbones import RecurrentLIFNet, create_backbone, list_backbones
from lightning_snn.neurons import build_neuron_factory


class _Boxcar(torch.autograd.Function):
    """sparch's SpikeFunctionBoxcar: Θ(x) forward, gradient 1 on |x| < 0.5 (the window edges have measure 0)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() < 0.5).to(grad.dtype)


def _bn(z: torch.Tensor, bn: torch.nn.Module) -> torch.Tensor:
    """BatchNorm1d in training mode over the (T·B) rows of [T, B, H]."""
    mean = z.mean((0, 1))
    var = z.var((0, 1), unbiased=False)
    return (z - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias


def _reference(net: RecurrentLIFNet, x: torch.Tensor, init: dict[str, torch.Tensor]) -> torch.Tensor:
    """sparch's RLIFLayer._rlif_cell and ReadoutLayer._readout_cell, step by step, from ``init``'s states."""
    h = x.flatten(2)
    for k, layer in enumerate(net.body):
        alpha = layer.leak.alpha.clamp(*layer.leak.bounds)
        v_rec = layer.V.weight.clone().fill_diagonal_(0.0)
        wx = _bn(h @ layer.W.weight.T, layer.norm)
        u, s = init[f"u{k}"], init[f"s{k}"]
        out = []
        for t in range(x.shape[0]):
            u = alpha * (u - s) + (1 - alpha) * (wx[t] + s @ v_rec.T)
            s = _Boxcar.apply(u - 1.0)
            out.append(s)
        h = torch.stack(out)
    ro = net.readout
    alpha = ro.leak.alpha.clamp(*ro.leak.bounds)
    wx = _bn(h @ ro.W.weight.T, ro.norm)
    u = init["u_out"]
    outs = []
    for t in range(x.shape[0]):
        u = alpha * u + (1 - alpha) * wx[t]
        outs.append(torch.softmax(u, -1))
    return torch.stack(outs)


def _net(init_state: str) -> RecurrentLIFNet:
    torch.manual_seed(0)
    net = create_backbone("rlif_snn", num_classes=4, in_channels=5, input_size=1, hidden=[6, 3], dropout=0.0,
                          init_state=init_state).double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(1.2, 2.0)  # drive the neurons over threshold: the spikes matter in the test
            if isinstance(getattr(m, "alpha", None), torch.nn.Parameter):  # the learnable leaks
                m.alpha.uniform_(0.7, 1.0)  # some outside the clamp range [e^-1/5, e^-1/25]
    return net


@pytest.mark.parametrize("init_state", ["zeros", "uniform"])
def test_forward_and_gradients_equal_the_unrolled_recursion(init_state: str):
    net = _net(init_state)
    x = (torch.rand(7, 3, 5, 1, 1, dtype=torch.float64) < 0.5).double().requires_grad_(True)
    seen: list[torch.Tensor] = []
    net.body[0].register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    torch.manual_seed(1)
    got = net(x)
    assert 0.0 < float(seen[0].mean()) < 1.0  # the hidden neurons spike, but not always
    # the same initial states the network drew: per layer u[0] then s[0], then the readout's u[0]
    torch.manual_seed(1)
    init: dict[str, torch.Tensor] = {}
    for k, width in enumerate([6, 3]):
        if init_state == "uniform":
            init[f"u{k}"] = torch.rand(3, width, dtype=torch.float64)
            init[f"s{k}"] = torch.rand(3, width, dtype=torch.float64)
        else:
            init[f"u{k}"] = init[f"s{k}"] = torch.zeros(3, width, dtype=torch.float64)
    init["u_out"] = torch.rand(3, 4, dtype=torch.float64) if init_state == "uniform" else torch.zeros(3, 4, dtype=torch.float64)
    want = _reference(net, x, init)
    assert got.shape == (7, 3, 4)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)

    weights = torch.randn(7, 3, 4, dtype=torch.float64)
    params = [p for p in net.parameters()] + [x]
    g_got = torch.autograd.grad((got * weights).sum(), params)
    g_want = torch.autograd.grad((want * weights).sum(), params)
    for p, a, b in zip(params, g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert any(float(g.abs().sum()) > 0 for g in g_got[:-1])
    # no self-connections: the diagonal of V gets no gradient
    v_grad = g_got[[i for i, p in enumerate(params) if p is net.body[0].V.weight][0]]
    assert torch.count_nonzero(torch.diagonal(v_grad)) == 0


def test_neuron_own_leak_without_leak_tau():
    """leak_tau: null runs the factory neuron's own charge H = λ V + I (here LIF λ = 0.8, reset to 0)."""
    torch.manual_seed(0)
    net = create_backbone("rlif_snn", num_classes=2, in_channels=3, hidden=[4], dropout=0.0, norm=None, leak_tau=None,
                          neuron=build_neuron_factory({"type": "lif", "decay": 0.8, "v_threshold": 0.5, "v_reset": 0.0})).double()
    x = torch.rand(5, 2, 3, dtype=torch.float64) * 2
    layer = net.body[0]
    v_rec = layer.recurrent_weight()
    v = torch.zeros(2, 4, dtype=torch.float64)
    s = torch.zeros(2, 4, dtype=torch.float64)
    want = []
    for t in range(5):
        h = 0.8 * v + x[t] @ layer.W.weight.T + s @ v_rec.T
        s = (h >= 0.5).double()
        v = h * (1 - s)
        want.append(s)
    torch.testing.assert_close(layer(x), torch.stack(want))
    u = torch.zeros(2, 2, dtype=torch.float64)  # the readout integrates with the neuron's λ = 0.8, k = 1
    spikes = torch.stack(want)
    outs = []
    for t in range(5):
        u = 0.8 * u + spikes[t] @ net.readout.W.weight.T
        outs.append(u.softmax(-1))
    torch.testing.assert_close(net(x), torch.stack(outs))


def test_registered_and_shapes_and_errors():
    assert "rlif_snn" in list_backbones()
    net = create_backbone("rlif_snn", num_classes=20, in_channels=700, input_size=(1, 1), hidden=[16, 16], readout="membrane")
    assert net(torch.rand(4, 2, 700, 1, 1)).shape == (4, 2, 20)
    with pytest.raises(ValueError, match="IF neuron"):
        create_backbone("rlif_snn", num_classes=2, in_channels=3, neuron=build_neuron_factory({"type": "lif", "decay": 0.5}))
    with pytest.raises(ValueError, match="step_mode"):
        create_backbone("rlif_snn", num_classes=2, in_channels=3, step_mode="s")
    with pytest.raises(ValueError, match="leak_tau"):
        create_backbone("rlif_snn", num_classes=2, in_channels=3, leak_tau=[25, 5])
