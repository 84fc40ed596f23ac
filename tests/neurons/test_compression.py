"""Saved-spike compression: identical gradients, smaller saved tensors, nothing but spikes compressed."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_snn.backbones import Flatten, TimeDistributed
from lightning_snn.methods import BPTT, DSR
from lightning_snn.neurons import LIFNode, compress_saved_spikes, note_spikes, reset_states
from lightning_snn.neurons.dsr import DSRIFNode, DSRLIFNode


def _net(neuron: type[nn.Module], step_mode: str = "m", **kw) -> nn.Sequential:
    torch.manual_seed(0)
    conv = lambda cin, cout: nn.Conv2d(cin, cout, 3, padding=1, bias=False)  # noqa: E731
    td = lambda m: TimeDistributed(m, step_mode)  # noqa: E731
    return nn.Sequential(
        td(conv(2, 8)), td(nn.BatchNorm2d(8)), neuron(step_mode=step_mode, **kw),
        td(conv(8, 8)), td(nn.BatchNorm2d(8)), neuron(step_mode=step_mode, **kw),
        Flatten(step_mode), td(nn.Linear(8 * 8 * 8, 3)),
    ).double()


def _grads(net: nn.Module, x: torch.Tensor, kind: str, step_mode: str = "m", outer=None):
    """Loss, parameter gradients, input gradient and the registry's packed count of one backward."""
    reset_states(net)
    net.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    saved: list[torch.Tensor] = []

    def tally(t):
        saved.append(t)
        return t

    hooks = torch.autograd.graph.saved_tensors_hooks(tally, lambda t: t) if outer else None
    if hooks:
        hooks.__enter__()
    try:
        with compress_saved_spikes(kind) as registry:
            if step_mode == "m":
                out = net(x)
            else:
                out = torch.stack([net(x[t]) for t in range(x.shape[0])])
    finally:
        if hooks:
            hooks.__exit__(None, None, None)
    loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum()
    loss.backward()
    grads = [p.grad.clone() for p in net.parameters()] + [x.grad.clone()]
    return loss.detach(), grads, (registry.packed if registry else 0), saved


@pytest.mark.parametrize("kind", ["bool", "bits"])
@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_bptt_gradients_identical_and_spikes_packed(kind: str, step_mode: str) -> None:
    x = torch.randn(4, 3, 2, 8, 8, dtype=torch.float64) * 2
    net = _net(LIFNode, step_mode, decay=0.5, v_reset=0.0)
    loss0, ref, packed0, _ = _grads(net, x, "float", step_mode)
    loss1, got, packed, _ = _grads(net, x, kind, step_mode)
    assert packed0 == 0
    # the first neuron's spikes (saved by the second conv) and the second's (saved by the linear layer
    # through a flatten view), once per step in single-step mode
    assert packed == (2 if step_mode == "m" else 2 * x.shape[0])
    assert torch.equal(loss0, loss1)
    for a, b in zip(ref, got):
        assert torch.equal(a, b)


@pytest.mark.parametrize("neuron", [DSRIFNode, DSRLIFNode])
def test_dsr_spikes_with_threshold_value_are_restored_exactly(neuron: type[nn.Module]) -> None:
    """DSR spikes carry V_th (or V_th/dt): the mask is packed and the value restored bit for bit."""
    x = torch.rand(5, 3, 2, 8, 8, dtype=torch.float64) * 3
    kw = {"v_threshold": 0.7} if neuron is DSRIFNode else {"v_threshold": 0.03}
    net = _net(neuron, **kw)
    _, ref, _, _ = _grads(net, x, "float")
    _, got, packed, _ = _grads(net, x, "bits")
    assert packed == 2  # the first neuron's spikes (second conv) and the second's (linear, after a flatten view)
    for a, b in zip(ref, got):
        assert torch.equal(a, b)


def test_outer_hooks_see_the_compressed_payload() -> None:
    """Composes with saved-tensor hooks already active (save_on_cpu, memory tallies): they get the bits."""
    x = torch.randn(4, 3, 2, 8, 8, dtype=torch.float64) * 2
    net = _net(LIFNode, decay=0.5, v_reset=0.0)
    _, ref, _, saved_float = _grads(net, x, "float", outer=True)
    _, got, packed, saved_bits = _grads(net, x, "bits", outer=True)
    assert packed == 2
    for a, b in zip(ref, got):
        assert torch.equal(a, b)
    assert sum(t.dtype == torch.uint8 for t in saved_bits) == 2
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    spike_bytes = 4 * 3 * 8 * 8 * 8 * 8  # one float64 spike train [T, B, 8, 8, 8]
    assert nbytes(saved_float) - nbytes(saved_bits) == 2 * (spike_bytes - spike_bytes // 64)


def test_only_announced_unmodified_spikes_are_compressed() -> None:
    a = torch.randn(64, 32, requires_grad=True)
    w = torch.randn(32, 32, requires_grad=True)
    spikes = (torch.rand(64, 32) > 0.5).float()
    analog = torch.randn(64, 32)
    with compress_saved_spikes("bits") as registry:
        note_spikes(spikes)
        y = (spikes @ w).sum() + (analog @ w).sum()  # analog input: saved as it is
        modified = (torch.rand(64, 32) > 0.5).float()
        note_spikes(modified)
        modified.mul_(3.0)  # changed in place after the announcement: no longer a plain spike train
        y = y + (modified @ w).sum() + (a * 2).sum()
    assert registry.packed == 1
    y.backward()
    expected = spikes.sum(0)[:, None].expand(32, 32) + analog.sum(0)[:, None] + modified.sum(0)[:, None]
    torch.testing.assert_close(w.grad, expected)


def test_note_outside_the_context_and_float_do_nothing() -> None:
    s = torch.ones(4096)
    assert note_spikes(s) is s
    with compress_saved_spikes("float") as registry:
        assert registry is None
    with pytest.raises(ValueError, match="spike_storage"):
        with compress_saved_spikes("int4"):  # type: ignore[arg-type]
            pass


@pytest.mark.parametrize("method", ["bptt", "dsr"])
def test_method_spike_storage_gives_the_same_training_step(method: str) -> None:
    kw = dict(backbone="mnistnet", num_classes=10, input_shape=(1, 28, 28), T=3)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    grads = {}
    for kind in ("float", "bits"):
        torch.manual_seed(0)
        model = (BPTT(**kw, spike_storage=kind) if method == "bptt" else DSR(**kw, spike_storage=kind)).train()
        model.compute_loss(model(x), y).backward()
        grads[kind] = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads["bits"]) == len(grads["float"]) > 0
    for a, b in zip(grads["float"], grads["bits"]):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="spike_storage"):
        BPTT(**kw, spike_storage="half")  # type: ignore[arg-type]


def test_under_bf16_autocast_the_spikes_are_compressed_too() -> None:
    """BN's output, hence the spikes, are bf16 under autocast: the convs save them uncast, and we pack them."""
    kw = dict(backbone="mnistnet", num_classes=10, input_shape=(1, 28, 28), T=2)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    grads, packed = {}, {}
    for kind in ("float", "bits"):
        torch.manual_seed(0)
        model = BPTT(**kw).train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with compress_saved_spikes(kind) as registry:
                out = model.backbone(model.encode(x))
            loss = model.compute_loss(out, y)
        loss.backward()
        grads[kind] = [p.grad for p in model.parameters() if p.grad is not None]
        packed[kind] = registry.packed if registry else 0
    assert packed["float"] == 0 and packed["bits"] >= 1
    for a, b in zip(grads["float"], grads["bits"]):
        assert torch.equal(a, b)
