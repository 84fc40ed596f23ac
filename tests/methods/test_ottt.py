"""OTTT: the accumulated gradient (A) and the per-step updates (O) against the paper's formula, memory in T,
the weight-standardised VGG."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_snn.backbones import Flatten, TimeDistributed, create_backbone
from lightning_snn.backbones.ottt_vgg import ScaledWSConv2d, TimeFixedDropout
from lightning_snn.methods import OTTT
from lightning_snn.methods.ottt import OTTT_LIF
from lightning_snn.neurons import OnlineLIFNode, Sigmoid

TAU, ALPHA, LAMBDA_LOSS = 2.0, 4.0, 0.05


def _net() -> nn.Sequential:
    torch.manual_seed(0)

    def lif():
        return OnlineLIFNode(tau=TAU, v_reset=None, v_threshold=1.0, surrogate=Sigmoid(ALPHA), detach_reset=True)

    net = nn.Sequential(Flatten(), TimeDistributed(nn.Linear(8, 7)), lif(), TimeDistributed(nn.Linear(7, 6)), lif(),
                        TimeDistributed(nn.Linear(6, 3)))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)  # enough drive for the neurons to fire
    return net.double()


def _model(variant="A", T=4):
    return OTTT(backbone=_net(), num_classes=3, input_shape=(2, 2, 2), T=T, variant=variant, tet_lambda=LAMBDA_LOSS)


def _sigma(x):
    s = torch.sigmoid(ALPHA * x)
    return ALPHA * s * (1 - s)


def _hand_ottt(weights, x_seq, y, lr=None):
    """The paper's formula, written out: per step t the instantaneous errors δ (spatial backprop through the
    surrogate, no temporal term), and ∇W = Σ_t δ_{l+1}[t]·â_l[t]^T with the presynaptic traces â (the data
    itself for the first layer). With ``lr``, W is updated after every step (OTTT_O) and the final weights
    are returned; otherwise the accumulated gradients (OTTT_A)."""
    W1, b1, W2, b2, W3, b3 = [w.clone() for w in weights]
    lam = 1 - 1 / TAU
    T, B = x_seq.shape[:2]
    grads = [torch.zeros_like(w) for w in (W1, b1, W2, b2, W3, b3)]
    v1 = v2 = a1 = a2 = None
    onehot = F.one_hot(y, 3).double()
    for t in range(T):
        x = x_seq[t].flatten(1)
        h1 = (0 if v1 is None else lam * v1) + x @ W1.T + b1
        s1 = (h1 >= 1).double()
        v1 = h1 - s1
        h2 = (0 if v2 is None else lam * v2) + s1 @ W2.T + b2
        s2 = (h2 >= 1).double()
        v2 = h2 - s2
        o = s2 @ W3.T + b3
        a1 = s1 if a1 is None else lam * a1 + s1
        a2 = s2 if a2 is None else lam * a2 + s2
        d_o = ((1 - LAMBDA_LOSS) * (o.softmax(-1) - onehot) / B + LAMBDA_LOSS * 2 * (o - onehot) / (B * 3)) / T
        d2 = (d_o @ W3) * _sigma(h2 - 1)
        d1 = (d2 @ W2) * _sigma(h1 - 1)
        step = [d1.T @ x, d1.sum(0), d2.T @ a1, d2.sum(0), d_o.T @ a2, d_o.sum(0)]
        if lr is None:
            grads = [g + s for g, s in zip(grads, step)]
        else:
            W1, b1, W2, b2, W3, b3 = [w - lr * s for w, s in zip((W1, b1, W2, b2, W3, b3), step)]
    return grads if lr is None else [W1, b1, W2, b2, W3, b3]


def _inputs(T=4):
    torch.manual_seed(1)
    return torch.rand(5, T, 2, 2, 2, dtype=torch.float64) * 2, torch.tensor([0, 2, 1, 1, 0])


def test_ottt_a_accumulated_gradient_equals_traces_times_instantaneous_errors():
    model = _model("A")
    x, y = _inputs()
    model.run_sequence(x, y, backward=lambda loss: loss.backward())
    weights = [p.detach() for p in model.backbone.parameters()]
    want = _hand_ottt(weights, x.transpose(0, 1), y)
    got = [p.grad for p in model.backbone.parameters()]
    for g, w, name in zip(got, want, ["W1", "b1", "W2", "b2", "W3", "b3"]):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-13, msg=name)
    assert all(float(w.abs().sum()) > 0 for w in want)


def test_traces_make_a_difference():
    """The check above is sensitive: with the spikes instead of their traces (SLTT's gradient) it differs."""
    from lightning_snn.methods import SLTT

    model = _model("A")
    sltt = SLTT(backbone=copy.deepcopy(model.backbone), num_classes=3, input_shape=(2, 2, 2), T=4,
                tet_lambda=LAMBDA_LOSS, mse_target="onehot")
    x, y = _inputs()
    model.run_sequence(x, y, backward=lambda loss: loss.backward())
    sltt.run_sequence(x, y, backward=lambda loss: loss.backward())
    p_ottt, p_sltt = list(model.backbone.parameters()), list(sltt.backbone.parameters())
    torch.testing.assert_close(p_ottt[0].grad, p_sltt[0].grad)  # the first layer sees the data either way
    assert float((p_ottt[2].grad - p_sltt[2].grad).abs().max()) > 1e-6


def test_ottt_o_updates_at_every_step_as_the_formula():
    lr = 0.5
    model = _model("O")
    x, y = _inputs()
    start = [p.detach().clone() for p in model.backbone.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def update():
        opt.step()
        opt.zero_grad()

    model.run_sequence(x, y, backward=lambda loss: loss.backward(), update=update)
    want = _hand_ottt(start, x.transpose(0, 1), y, lr=lr)
    for p, w, name in zip(model.backbone.parameters(), want, ["W1", "b1", "W2", "b2", "W3", "b3"]):
        torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-13, msg=name)
    # and it is not the accumulated update of variant A
    acc = _hand_ottt(start, x.transpose(0, 1), y)
    assert float((start[2] - lr * acc[2] - want[2]).abs().max()) > 1e-8


def test_saved_tensor_bytes_do_not_grow_with_T():
    from tests.methods.test_sltt import _peak_saved_bytes

    def peak(T: int) -> int:
        torch.manual_seed(0)
        model = OTTT(backbone="ottt_vgg", num_classes=5, input_shape=(2, 8, 8), T=T, backbone_kwargs={"cfg": (4, "M", 6)})
        return _peak_saved_bytes(model, torch.rand(4, 2, 8, 8), torch.tensor([0, 1, 2, 3]))

    assert peak(2) == peak(8) > 0


def test_weight_standardisation_and_time_fixed_dropout():
    torch.manual_seed(0)
    conv = ScaledWSConv2d(3, 4, 3, padding=1).double()
    w = conv.standardized_weight()
    torch.testing.assert_close(w.mean(dim=(1, 2, 3)), torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)
    fan_in = 27
    torch.testing.assert_close(w.var(dim=(1, 2, 3)) * fan_in, torch.ones(4, dtype=torch.float64) /
                               (1 + 1e-4 / (conv.weight.var(dim=(1, 2, 3)) * fan_in)), rtol=1e-10, atol=0)
    drop = TimeFixedDropout(0.5, step_mode="s").train()
    x = torch.ones(6, 10)
    first, second = drop(x), drop(x)
    assert torch.equal(first, second) and 0 < int((first == 0).sum()) < 60
    drop.reset()
    assert drop(torch.ones(6, 11)).shape == (6, 11)  # a new mask after a reset, for the new batch's shape
    assert torch.equal(drop.eval()(x), x)
    multi = TimeFixedDropout(0.5, step_mode="m").train()
    seq = multi(torch.ones(3, 6, 10))  # [T, B, ...]: one mask for all T steps, kept for the next chunk too
    assert torch.equal(seq[0], seq[1]) and torch.equal(seq[0], seq[2]) and torch.equal(multi(torch.ones(1, 6, 10))[0], seq[0])


def test_official_network_shape_and_parameters():
    net = create_backbone("ottt_vgg11_ws", num_classes=10, in_channels=3, input_size=32)
    convs = [m for m in net.modules() if isinstance(m, ScaledWSConv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    out = net(torch.rand(2, 1, 3, 32, 32))
    assert out.shape == (2, 1, 10)


def test_ottt_refuses_neurons_with_different_leaks():
    net = _net()
    net[4].decay = 0.25
    with pytest.raises(ValueError, match="same one"):
        OTTT(backbone=net, num_classes=3, input_shape=(2, 2, 2), T=2)
    with pytest.raises(ValueError, match="variant"):
        OTTT(backbone=_net(), num_classes=3, input_shape=(2, 2, 2), variant="B")


def test_layers_marked_without_trace_keep_the_instantaneous_input():
    """NF-ResNet: the classifier reads the residual stream (presynaptic_trace = False), so its OTTT gradient is
    SLTT's, while the block convolutions fed by spikes get the trace gradient."""
    from lightning_snn.methods import SLTT

    torch.manual_seed(0)
    kw = dict(backbone="nf_resnet34", num_classes=4, input_shape=(3, 16, 16), T=3, tet_lambda=0.0)
    ottt = OTTT(**kw).double()
    with torch.no_grad():
        for m in ottt.backbone.modules():
            if hasattr(m, "skipinit_gain"):
                m.skipinit_gain.fill_(1.0)  # open the residual branches (zero at initialisation)
        ottt.backbone.body[-1].module.weight.normal_(0, 0.1)
    sltt = SLTT(**kw, neuron=OTTT_LIF).double()  # the same neuron, no traces
    sltt.load_state_dict(ottt.state_dict())
    x, y = torch.rand(2, 3, 16, 16, dtype=torch.float64) * 3, torch.tensor([0, 3])
    ottt.run_sequence(x, y, backward=lambda loss: loss.backward())
    sltt.run_sequence(x, y, backward=lambda loss: loss.backward())
    head_o, head_s = ottt.backbone.body[-1].module.weight.grad, sltt.backbone.body[-1].module.weight.grad
    torch.testing.assert_close(head_o, head_s, rtol=1e-12, atol=1e-14)
    assert float(head_o.abs().sum()) > 0
    conv_o = ottt.backbone.body[2].conv2.module.weight.grad
    conv_s = sltt.backbone.body[2].conv2.module.weight.grad
    assert float((conv_o - conv_s).abs().max()) > 1e-8
