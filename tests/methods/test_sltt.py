"""SLTT: gradients against a hand-cut unrolled reference, SLTT-K, O(1) memory in T, the neurons."""
from __future__ import annotations

import copy

import pytest
import torch
from spikingjelly.activation_based import surrogate as sj_surrogate
from torch import nn

from lightning_snn.backbones import SpikingResNet, VGGSNN
from lightning_snn.backbones.preact_resnet import PreActResNet
from lightning_snn.methods import BPTT, SLTT
from lightning_snn.methods.sltt import SLTT_LIF
from lightning_snn.neurons import BaseNode, OnlineLIFNode, build_neuron_factory, reset_states

SIGMOID_LIF = {"type": "lif", "tau": 2.0, "v_reset": None, "surrogate": {"name": "sigmoid", "alpha": 4.0}}


class HandCutLIF(nn.Module):
    """Reference neuron, written independently of the library: one step of plain autograd ops in which
    the membrane potential carried over from the previous step is detached by hand."""

    is_stateful = True

    def __init__(self, decay: float, v_threshold: float, v_reset: float | None, spike_fn) -> None:
        super().__init__()
        self.decay, self.v_threshold, self.v_reset, self.spike_fn = decay, v_threshold, v_reset, spike_fn
        self.step_mode = "s"
        self.v = None

    def reset(self) -> None:
        self.v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() != 0 and self.step_mode == "s"
        c = 0.0 if self.v_reset is None else self.v_reset
        v = torch.full_like(x, c) if self.v is None else self.v.detach()  # <- the temporal path, cut by hand
        h = c + self.decay * (v - c) + x
        s = self.spike_fn(h - self.v_threshold)
        self.v = h - s * self.v_threshold if self.v_reset is None else h * (1 - s) + self.v_reset * s
        return s


def _swap_in_reference(backbone: nn.Module, spike_fn) -> nn.Module:
    ref = copy.deepcopy(backbone)
    for name, m in list(ref.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, BaseNode):
                setattr(m, child_name, HandCutLIF(child.decay, float(child.v_threshold), child.v_reset, spike_fn))
    ref.step_mode = "s"
    return ref


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


BACKBONES = {
    "vggsnn": lambda neuron: VGGSNN(num_classes=5, in_channels=2, input_size=8, neuron=neuron, cfg=(4, "A", 6, 6, "A")),
    "resnet": lambda neuron: SpikingResNet(stages=[(4, 1, 1), (6, 1, 2)], num_classes=5, in_channels=2, neuron=neuron,
                                           stem_channels=4, hidden=7),
    "preact_resnet": lambda neuron: PreActResNet(num_classes=5, in_channels=2, neuron=neuron, layers=(1, 1, 1, 1), width=3),
}


TRIANGLE = lambda x: sj_surrogate.piecewise_quadratic.apply(x, 1.0)  # noqa: E731
SIGMOID = lambda x: sj_surrogate.sigmoid.apply(x, 4.0)  # noqa: E731


def _cut(spec=None):
    return build_neuron_factory({**(spec or SLTT_LIF), "type": "online_lif"})


@pytest.mark.parametrize(
    "arch,neuron,spike_fn",
    [("vggsnn", None, TRIANGLE), ("resnet", None, TRIANGLE), ("preact_resnet", None, TRIANGLE), ("vggsnn", SIGMOID_LIF, SIGMOID)],
    ids=["vggsnn", "resnet", "preact_resnet", "vggsnn-sigmoid"],
)
def test_sltt_gradient_equals_unrolled_network_with_temporal_path_cut_by_hand(arch, neuron, spike_fn):
    """Step-by-step backward of the SLTT module == one backward through the whole unrolled network whose
    neurons detach V[t-1] (float64, BatchNorm in training mode, per-step statistics as the official code)."""
    torch.manual_seed(0)
    T = 3
    model = SLTT(backbone=BACKBONES[arch](_cut(neuron)), num_classes=5, input_shape=(2, 8, 8), T=T).double()
    model.train()
    ref = _swap_in_reference(model.backbone, spike_fn)
    x = torch.rand(4, T, 2, 8, 8, dtype=torch.float64) * 2  # event frames: a different input at every step
    y = torch.tensor([0, 3, 1, 4])

    outputs = model.run_sequence(x, y, backward=lambda loss: loss.backward())
    reset_states(ref)
    out_ref = ref(x.transpose(0, 1))
    model.compute_loss(out_ref, y).backward()

    torch.testing.assert_close(outputs, out_ref.detach(), rtol=0, atol=1e-12)
    got, want = _grads(model.backbone), _grads(ref)
    assert got.keys() == want.keys() and len(got) > 4
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-10, atol=1e-12, msg=n)
    assert float(next(iter(want.values())).abs().sum()) > 0  # the error reached the first layer


def test_sltt_differs_from_bptt():
    """The check above is sensitive: with the temporal path kept (BPTT) the gradient is different."""
    torch.manual_seed(0)
    T = 4
    kw = dict(backbone="vggsnn", num_classes=5, input_shape=(2, 8, 8), T=T, neuron=SIGMOID_LIF,
              backbone_kwargs={"cfg": (4, "A", 6, "A")})
    sltt = SLTT(**kw).double()
    bptt = BPTT(loss="tet", tet_lambda=0.05, step_mode="s", **kw).double()  # per-step BatchNorm statistics
    bptt.load_state_dict(sltt.state_dict())
    x = torch.rand(4, T, 2, 8, 8, dtype=torch.float64) * 2
    y = torch.tensor([0, 3, 1, 4])
    out = sltt.run_sequence(x, y, backward=lambda loss: loss.backward())
    out_bptt = bptt(x)
    bptt.compute_loss(out_bptt, y).backward()
    torch.testing.assert_close(out, out_bptt.detach())  # the same forward pass
    diffs = [float((p.grad - q.grad).abs().max()) for p, q in zip(sltt.parameters(), bptt.parameters())]
    assert max(diffs) > 1e-6


def test_sltt_k_with_k_equal_t_is_sltt():
    torch.manual_seed(0)
    T = 4
    base = SLTT(backbone="vggsnn", num_classes=5, input_shape=(2, 8, 8), T=T, backbone_kwargs={"cfg": (4, "A", 6, "A")}).double()
    full = copy.deepcopy(base)
    k_eq_t = SLTT(backbone=copy.deepcopy(base.backbone), num_classes=5, input_shape=(2, 8, 8), T=T, K=T, seed=3).double()
    x = torch.rand(3, T, 2, 8, 8, dtype=torch.float64) * 2
    y = torch.tensor([0, 3, 1])
    full.run_sequence(x, y, backward=lambda loss: loss.backward())
    k_eq_t.run_sequence(x, y, backward=lambda loss: loss.backward())
    for (n, p), (_, q) in zip(full.backbone.named_parameters(), k_eq_t.backbone.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=n)


def test_sltt_k_backpropagates_exactly_the_drawn_steps():
    """SLTT-K's gradient is the sum over its K drawn steps of SLTT's per-step gradients (loss still / T)."""
    torch.manual_seed(0)
    T, K = 5, 2
    model = SLTT(backbone="vggsnn", num_classes=5, input_shape=(2, 8, 8), T=T, K=K, seed=7,
                 backbone_kwargs={"cfg": (4, "A", 6, "A")}).double()
    model.eval()  # BatchNorm on running statistics: a no-grad step leaves the next steps unchanged
    drawn = SLTT(backbone="vggsnn", num_classes=5, input_shape=(2, 8, 8), T=T, K=K, seed=7,
                 backbone_kwargs={"cfg": (4, "A", 6, "A")}).backward_steps(T)
    assert sum(drawn) == K
    x = torch.rand(3, T, 2, 8, 8, dtype=torch.float64) * 2
    y = torch.tensor([0, 3, 1])
    model.run_sequence(x, y, backward=lambda loss: loss.backward())
    got = _grads(model.backbone)
    per_step = []
    full = copy.deepcopy(model)
    full.K = None

    def only_step(t: int):
        calls = iter(range(T))

        def backward(loss):
            if next(calls) == t:
                loss.backward()

        return backward

    for t in range(T):  # SLTT's gradient of step t alone
        full.zero_grad()
        full.run_sequence(x, y, backward=only_step(t))
        per_step.append(_grads(full.backbone))
    for n in got:
        want = sum(per_step[t][n] for t in range(T) if drawn[t])
        torch.testing.assert_close(got[n], want, rtol=1e-10, atol=1e-13, msg=n)


def test_sltt_k_checks_k():
    with pytest.raises(ValueError, match="K"):
        SLTT(backbone="vggsnn", num_classes=5, input_shape=(2, 8, 8), T=4, K=5, backbone_kwargs={"cfg": (4, "A")})


def _peak_saved_bytes(model, x, y) -> int:
    """Largest number of bytes saved for backward between two backward calls (= alive at once)."""
    state = {"now": 0, "peak": 0}

    def pack(t):
        state["now"] += t.numel() * t.element_size()
        return t

    def backward(loss):
        state["peak"] = max(state["peak"], state["now"])
        loss.backward()
        state["now"] = 0

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.run_sequence(x, y, backward)
    return state["peak"]


def test_saved_tensor_bytes_do_not_grow_with_T():
    def peak(T: int) -> int:
        torch.manual_seed(0)
        model = SLTT(backbone="vggsnn", num_classes=5, input_shape=(2, 8, 8), T=T, backbone_kwargs={"cfg": (4, "A", 6, "A")})
        return _peak_saved_bytes(model, torch.rand(4, 2, 8, 8), torch.tensor([0, 1, 2, 3]))

    assert peak(2) == peak(8) > 0

    def bptt_bytes(T: int) -> int:  # the tally is sensitive: BPTT's saved tensors grow with T
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        model = BPTT(backbone="vggsnn", num_classes=5, input_shape=(2, 8, 8), T=T, backbone_kwargs={"cfg": (4, "A", 6, "A")})
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(torch.rand(4, 2, 8, 8)).sum().backward()
        return total

    assert bptt_bytes(8) > 3 * bptt_bytes(2)


@pytest.mark.parametrize("name", ["resnet18", "resnet19", "vggsnn", "preact_resnet18"])
def test_sltt_builds_every_named_backbone_with_cut_neurons(name):
    model = SLTT(backbone=name, num_classes=10, input_shape=(2, 32, 32), T=2)
    nodes = [m for m in model.backbone.modules() if isinstance(m, BaseNode)]
    assert nodes and all(isinstance(m, OnlineLIFNode) for m in nodes)
    assert all(abs(m.decay - (1 - 1 / 1.1)) < 1e-12 and m.v_reset is None for m in nodes)


def test_sltt_refuses_a_loss_on_the_mean_output_and_unknown_neurons():
    with pytest.raises(ValueError, match="per-step loss"):
        SLTT(backbone="vggsnn", num_classes=5, input_shape=(2, 8, 8), loss="ce")
    with pytest.raises(ValueError, match="temporally cut"):
        SLTT(backbone="vggsnn", num_classes=5, input_shape=(2, 8, 8), neuron={"type": "dsr_if"})


def test_pretrained_backbone_weights_are_loaded_in_setup(tmp_path):
    """Stage 2 of the ImageNet recipe (-pre_train): the T = 1 network's weights initialise the T = 6 one."""
    kw = dict(backbone="vggsnn", num_classes=5, input_shape=(2, 8, 8), backbone_kwargs={"cfg": (4, "A", 6, "A")})
    torch.manual_seed(0)
    stage1 = SLTT(T=1, **kw)
    path = tmp_path / "stage1.pt"
    torch.save({"state_dict": stage1.state_dict()}, path)
    torch.manual_seed(1)
    stage2 = SLTT(T=6, pretrained=str(path), **kw)
    assert not torch.equal(stage2.backbone.body[0][0].module.weight, stage1.backbone.body[0][0].module.weight)
    stage2.setup("fit")
    for (n, p), (_, q) in zip(stage2.backbone.state_dict().items(), stage1.backbone.state_dict().items()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)
    other = SLTT(T=6, pretrained=str(path), backbone="vggsnn", num_classes=5, input_shape=(2, 8, 8),
                 backbone_kwargs={"cfg": (4, "A", 8, "A")})
    with pytest.raises(ValueError, match="pretrained: .* does not match"):
        other.setup("fit")
    with pytest.raises(FileNotFoundError, match="pretrained"):
        SLTT(T=6, pretrained=str(tmp_path / "missing.ckpt"), **kw).setup("fit")
