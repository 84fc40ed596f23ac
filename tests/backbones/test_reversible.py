"""The reversible spiking block machinery (lightning_snn/backbones/reversible.py).

Checks that the backward pass reconstructs exactly what the forward pass computed (inputs, neuron
inputs, spikes and membrane potentials of every F / G), that nothing of the forward is kept alive,
that BN running statistics move once, that autocast and DropPath RNG are replayed, and that the
gradients equal those of the non-reversible twin (same weights, ordinary autograd).

Stated tolerances: float64 reconstruction to 1e-10 absolute (observed ~1e-15, no spike flipped), float32
to 1e-4 absolute on O(1) activations with at most 0.1% of the spikes flipped (observed 8e-7, no spike
flipped among 131k), bf16 autocast to 0.05 (the bf16 resolution at these magnitudes); float64 gradients
equal the twin's to rtol 1e-9 / atol 1e-10, float32 gradients to rtol 1e-3 / atol 1e-4.
"""
from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from lightning_snn.backbones.reversible import ReversibleBlock, ReversibleSequence, has_active_randomness, set_reversible
from lightning_snn.backbones.revs_former import SpikingMLP, SpikingSelfAttention
from lightning_snn.backbones.revs_resnet import REVSNN_IF, RevSResidualFunction
from lightning_snn.neurons import BaseNode, LIFNode, build_neuron_factory, reset_states

IF = build_neuron_factory(REVSNN_IF)
LIF = build_neuron_factory({"type": "lif", "tau": 2.0, "decay_input": True, "v_threshold": 1.0, "v_reset": 0.0,
                            "detach_reset": True, "surrogate": {"name": "sigmoid", "alpha": 4.0}})


def conv_stage(planes: int = 4, blocks: int = 3, reversible: bool = True, seed: int = 0) -> ReversibleSequence:
    torch.manual_seed(seed)
    return ReversibleSequence(
        [ReversibleBlock(RevSResidualFunction(planes, IF), RevSResidualFunction(planes, IF)) for _ in range(blocks)],
        reversible=reversible,
    )


def attn_stage(dim: int = 8, blocks: int = 2, reversible: bool = True, drop_path: float = 0.0, seed: int = 0,
               preserve_rng_state: bool | None = None) -> ReversibleSequence:
    torch.manual_seed(seed)
    return ReversibleSequence(
        [ReversibleBlock(SpikingSelfAttention(dim, 2, LIF, drop_path=drop_path), SpikingMLP(dim, 4 * dim, LIF, drop_path),
                         preserve_rng_state=preserve_rng_state) for _ in range(blocks)],
        reversible=reversible,
    )


def twin_of(stage: ReversibleSequence, make) -> ReversibleSequence:
    twin = make(reversible=False)
    twin.load_state_dict(stage.state_dict())
    return twin.to(next(stage.parameters()).dtype)


class Recorder:
    """Forward hooks on every neuron and every F / G: their inputs, outputs and final membrane potential,
    one list per call, split later into the forward calls and the recompute calls."""

    def __init__(self, stage: nn.Module) -> None:
        self.calls: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        self.handles = []
        for name, m in stage.named_modules():
            if isinstance(m, BaseNode) or name.endswith((".f", ".g")):
                self.handles.append(m.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, inputs, output):
            v = getattr(module, "v", None)
            self.calls.append((name, inputs[0].detach().clone(), output.detach().clone(),
                               None if v is None else v.detach().clone()))
        return hook

    def split(self) -> tuple[dict, dict]:
        first: dict = {}
        second: dict = {}
        for name, x, y, v in self.calls:
            (second if name in first else first)[name] = (x, y, v)
        return first, second


def _run_step(stage: nn.Module, x: torch.Tensor, seed: int = 1) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    reset_states(stage)
    out = stage(x)
    torch.manual_seed(seed)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    return x


def assert_grad_close(a: torch.Tensor, b: torch.Tensor, msg: str = "", rtol: float = 1e-9, atol: float = 1e-10) -> None:
    """float64 gradient equality: rtol 1e-9 plus an absolute floor of 1e-10 (the losses here give gradients of
    O(1..100)); gradients that vanish analytically, e.g. of a conv bias right before BN, are rounding noise of
    ~1e-11 on both sides."""
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=msg)


def _x(shape=(4, 3, 8, 6, 6), dtype=torch.float64, seed=2):
    torch.manual_seed(seed)
    return torch.randn(shape, dtype=dtype)


# ----------------------------------------------------------------------------------- reconstruction
@pytest.mark.parametrize("make", [conv_stage, attn_stage], ids=["resnet_block", "former_block"])
def test_reconstruction_float64_exact_up_to_rounding(make):
    stage = make().double().train()
    stage.keep_reconstructed_input = True
    rec = Recorder(stage)
    x = _x((4, 3, 8 if make is conv_stage else 16, 4, 4))
    _run_step(stage, x)
    first, second = rec.split()
    names = [n for n in first if not n.endswith((".f", ".g"))]
    assert len(names) >= 4 * len(stage.blocks) and set(first) == set(second)  # every F / G and neuron recomputed
    spikes = 0
    for name in first:
        (x0, y0, v0), (x1, y1, v1) = first[name], second[name]
        torch.testing.assert_close(x1, x0, rtol=0, atol=1e-10, msg=f"input of {name}")
        if name in names:
            assert torch.equal(y1, y0), f"spikes of {name} changed in the recompute"
            torch.testing.assert_close(v1, v0, rtol=0, atol=1e-10, msg=f"membrane potential of {name}")
            spikes += int(y0.sum())
        else:
            torch.testing.assert_close(y1, y0, rtol=0, atol=1e-10, msg=f"output of {name}")
    assert spikes > 0
    torch.testing.assert_close(stage.reconstructed_input, x, rtol=0, atol=1e-10)


def test_membrane_trajectory_is_regenerated():
    """The full membrane sequence H[t] (not only the last V) of every neuron, forward vs recompute."""
    stage = conv_stage(blocks=2).double().train()
    trajectories: dict[str, list[torch.Tensor]] = {}

    def hook(name):
        def fn(module, inputs, output):
            x = inputs[0].detach()
            v = torch.zeros_like(x[0])
            hs = []
            for t in range(x.shape[0]):  # IF, hard reset to 0: H = V + X
                h = v + x[t]
                hs.append(h)
                v = torch.where(h >= 1.0, torch.zeros_like(h), h)
            trajectories.setdefault(name, []).append(torch.stack(hs))
            assert torch.equal((torch.stack(hs) >= 1.0).to(output.dtype), output)
        return fn

    for name, m in stage.named_modules():
        if isinstance(m, BaseNode):
            m.register_forward_hook(hook(name))
    _run_step(stage, _x())
    assert len(trajectories) == 8
    for name, (h_fwd, h_rec) in trajectories.items():
        torch.testing.assert_close(h_rec, h_fwd, rtol=0, atol=1e-10, msg=name)


def test_reconstruction_float32_within_tolerance():
    stage = conv_stage(planes=8, blocks=4).float().train()
    stage.keep_reconstructed_input = True
    rec = Recorder(stage)
    x = _x((4, 4, 16, 8, 8), dtype=torch.float32)
    _run_step(stage, x)
    first, second = rec.split()
    flipped = total = 0
    for name in first:
        (x0, y0, _), (x1, y1, _) = first[name], second[name]
        torch.testing.assert_close(x1, x0, rtol=0, atol=1e-4, msg=name)
        if not name.endswith((".f", ".g")):
            flipped += int((y0 != y1).sum())
            total += y0.numel()
    assert flipped <= 1e-3 * total
    torch.testing.assert_close(stage.reconstructed_input, x, rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------ memory
def test_forward_keeps_no_input_no_membrane_and_saves_nothing():
    stage = conv_stage(blocks=3).train()
    block_inputs: list[weakref.ref] = []  # F sees a channel half (a view) of its block's input: take its base
    for b in stage.blocks:
        b.f.register_forward_hook(
            lambda m, i, o: None if torch.is_grad_enabled() else block_inputs.append(weakref.ref(i[0]._base))
        )  # (F's forward-pass call runs without grad; the recompute in backward with grad)
    packed: list[tuple[int, ...]] = []
    x = _x(dtype=torch.float32).requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(tuple(t.shape)) or t, lambda t: t):
        h = x * 2.0  # a non-leaf stage input, as a BN output would be
        ref_in = weakref.ref(h)
        out = stage(h)
        del h
    gc.collect()
    assert packed == []  # the Functions save no tensor for backward (autograd's own mechanism is unused)
    assert ref_in() is None, "the stage input is kept alive"
    assert block_inputs[0]() is None and len(block_inputs) == 3
    alive = [r() is not None for r in block_inputs]
    assert alive == [False, False, False], alive  # no block input (= previous block's output) survives
    assert all(m.v is None for m in stage.modules() if isinstance(m, BaseNode)), "membrane potentials kept"
    out.sum().backward()
    assert all(p.grad is not None for p in stage.parameters())


def test_twin_saves_activations_the_reversible_stage_does_not():
    x = _x(dtype=torch.float32).requires_grad_(True)
    counts = {}
    for reversible in (True, False):
        stage = conv_stage(blocks=2, reversible=reversible).train()
        n = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: n.append(t.numel()) or t, lambda t: t):
            stage(x * 1.0)
        counts[reversible] = sum(n)
    assert counts[True] == 0 and counts[False] > 10 * x.numel()


# ------------------------------------------------------------------------------------ BN, autocast, RNG
def test_batchnorm_running_stats_updated_once():
    x = _x(dtype=torch.float64)
    rev = conv_stage().double().train()
    twin = twin_of(rev, lambda reversible: conv_stage(reversible=reversible))
    _run_step(rev, x)
    _run_step(twin, x)
    bns = [m for m in rev.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(int(m.num_batches_tracked) == 1 for m in bns)
    for (name, a), (_, b) in zip(rev.named_buffers(), twin.named_buffers()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)
    assert any(not torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in bns)


def test_autocast_recompute_runs_at_forward_precision():
    stage = conv_stage(planes=8, blocks=2).train()
    stage.keep_reconstructed_input = True
    dtypes: list[torch.dtype] = []
    for m in stage.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda mod, i, o: dtypes.append(o.dtype))
    rec = Recorder(stage)
    x = _x((4, 3, 16, 6, 6), dtype=torch.float32).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reset_states(stage)
        out = stage(x)
    n_fwd = len(dtypes)
    assert n_fwd == 8 and set(dtypes) == {torch.bfloat16}
    out.float().sum().backward()  # backward outside the autocast region, as Lightning / GradScaler do
    assert len(dtypes) == 2 * n_fwd and set(dtypes[n_fwd:]) == {torch.bfloat16}
    first, second = rec.split()
    for name in first:
        (x0, _, _), (x1, _, _) = first[name], second[name]
        torch.testing.assert_close(x1.float(), x0.float(), rtol=0, atol=0.05, msg=name)
    torch.testing.assert_close(stage.reconstructed_input, x.detach(), rtol=0, atol=0.05)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_drop_path_rng_is_replayed_and_global_rng_untouched():
    x = _x((3, 4, 16, 4, 4), dtype=torch.float64)
    rev = attn_stage(drop_path=0.5).double().train()
    assert has_active_randomness(rev)
    twin = twin_of(rev, lambda reversible: attn_stage(reversible=reversible, drop_path=0.5))
    grads = []
    for stage in (rev, twin):
        xi = x.clone().requires_grad_(True)
        reset_states(stage)
        torch.manual_seed(7)
        out = stage(xi)
        state = torch.get_rng_state()
        out.square().sum().backward()
        if stage is rev:
            assert torch.equal(torch.get_rng_state(), state), "the recompute moved the global RNG"
        grads.append([xi.grad] + [p.grad for p in stage.parameters()])
    for a, b in zip(*grads):
        assert_grad_close(a, b)
    # without the replay the recompute draws other masks: the gradients are wrong
    norep = attn_stage(drop_path=0.5, preserve_rng_state=False).double().train()
    norep.load_state_dict(rev.state_dict())
    xi = x.clone().requires_grad_(True)
    torch.manual_seed(7)
    norep(xi).square().sum().backward()
    assert not torch.allclose(xi.grad, grads[1][0])


# ------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("make", [conv_stage, attn_stage], ids=["resnet_block", "former_block"])
def test_gradients_equal_the_twin_float64(make):
    rev = make().double().train()
    twin = twin_of(rev, lambda reversible: make(reversible=reversible))
    assert list(rev.state_dict()) == list(twin.state_dict())
    x = _x((4, 3, 8 if make is conv_stage else 16, 4, 4))
    xr, xt = _run_step(rev, x), _run_step(twin, x)
    assert_grad_close(xr.grad, xt.grad)
    for (name, p), (_, q) in zip(rev.named_parameters(), twin.named_parameters()):
        assert p.grad is not None, name
        assert_grad_close(p.grad, q.grad, msg=name)


def test_reuse_output_storage_same_gradients_and_reconstructs_into_the_output():
    x = _x()
    rev = conv_stage(blocks=1).double().train()
    rev.reuse_output_storage = True
    twin = twin_of(rev, lambda reversible: conv_stage(blocks=1, reversible=reversible))
    xi = x.clone().requires_grad_(True)
    out = rev(xi)
    ptr = out.untyped_storage().data_ptr()
    rev.keep_reconstructed_input = False
    out.square().sum().backward()
    torch.testing.assert_close(out.detach(), x, rtol=0, atol=1e-10)  # the stage output now holds the input
    xt = x.clone().requires_grad_(True)
    twin(xt).square().sum().backward()
    assert_grad_close(xi.grad, xt.grad)
    for p, q in zip(rev.parameters(), twin.parameters()):
        assert_grad_close(p.grad, q.grad)
    assert out.untyped_storage().data_ptr() == ptr


def test_gradients_equal_the_twin_float32_within_tolerance():
    rev = conv_stage(planes=8, blocks=2).train()
    twin = twin_of(rev, lambda reversible: conv_stage(planes=8, blocks=2, reversible=reversible))
    x = _x((4, 3, 16, 6, 6), dtype=torch.float32)
    xr, xt = _run_step(rev, x), _run_step(twin, x)
    torch.testing.assert_close(xr.grad, xt.grad, rtol=1e-3, atol=1e-4)
    for p, q in zip(rev.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-4)


def test_frozen_parameters_get_no_gradient():
    rev = conv_stage(blocks=2).double().train()
    frozen = rev.blocks[0].f.conv1[0].module.weight
    frozen.requires_grad_(False)
    _run_step(rev, _x())
    assert frozen.grad is None
    assert rev.blocks[0].f.conv2[0].module.weight.grad is not None


def test_standalone_block_and_inverse():
    torch.manual_seed(0)
    block = ReversibleBlock(RevSResidualFunction(4, IF), RevSResidualFunction(4, IF)).double().train()
    twin = ReversibleBlock(RevSResidualFunction(4, IF), RevSResidualFunction(4, IF), reversible=False).double().train()
    twin.load_state_dict(block.state_dict())
    x = _x()
    xr, xt = _run_step(block, x), _run_step(twin, x)
    assert_grad_close(xr.grad, xt.grad)
    with torch.no_grad():
        y = block.eval()(x)
        torch.testing.assert_close(block.inverse(y), x, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------ modes and errors
def test_no_grad_and_eval_run_the_plain_coupling():
    rev = conv_stage().double()
    twin = twin_of(rev, lambda reversible: conv_stage(reversible=reversible))
    x = _x()
    with torch.no_grad():
        for mode in ("train", "eval"):
            getattr(rev, mode)(), getattr(twin, mode)()
            reset_states(rev), reset_states(twin)
            torch.testing.assert_close(rev(x), twin(x), rtol=0, atol=0)


def test_backward_twice_is_refused_clearly():
    stage = conv_stage(blocks=2).train()
    out = stage(_x(dtype=torch.float32).requires_grad_(True))
    out.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once per forward"):
        out.sum().backward()


def test_single_step_needs_the_twin():
    stage = conv_stage(blocks=1)
    for m in stage.modules():
        if hasattr(m, "step_mode"):
            m.step_mode = "s"
    with pytest.raises(ValueError, match="multi-step"):
        stage(_x(dtype=torch.float32)[0].requires_grad_(True))
    set_reversible(stage, False)
    assert stage(_x(dtype=torch.float32)[0]).shape == (3, 8, 6, 6)


def test_firing_rate_recording_counts_the_forward_only():
    x = _x(dtype=torch.float64)
    counts = []
    rev = conv_stage().double().train()
    twin = twin_of(rev, lambda reversible: conv_stage(reversible=reversible))
    for stage in (rev, twin):
        for m in stage.modules():
            if isinstance(m, BaseNode):
                m.record_rate, m.spike_count = True, None
        _run_step(stage, x)
        counts.append([m.spike_count.clone() for m in stage.modules() if isinstance(m, BaseNode)])
        assert all(m.record_rate for m in stage.modules() if isinstance(m, BaseNode))
    for a, b in zip(*counts):
        torch.testing.assert_close(a, b)


def test_lif_neurons_are_reset_before_each_recompute():
    """With a leaky neuron whose state would carry over, a missing reset changes the recompute."""
    stage = attn_stage().double().train()
    assert any(isinstance(m, LIFNode) for m in stage.modules())
    rec = Recorder(stage)
    _run_step(stage, _x((3, 2, 16, 4, 4)))
    first, second = rec.split()
    for name in first:
        torch.testing.assert_close(second[name][0], first[name][0], rtol=0, atol=1e-10, msg=name)
