"""Neuron backends against the pure-PyTorch reference (``backend="torch"``).

Forward spikes and membrane potentials must be identical and gradients (input, initial membrane through
a second call, learnable threshold) equal to float round-off. Compilation is slow on a small CPU, so
the default run compares the ``inductor`` backend on tiny tensors for two configurations; the full
sweep (IF/LIF x reset modes x detach_reset x surrogates) is marked ``slow``. The ``triton`` backend
(SpikingJelly's kernels) is checked on CUDA only; everywhere, its refusals of what the kernels do not
implement are checked.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from lightning_snn.neurons import (
    ATan, BaseNode, Erf, IFNode, LIFNode, PiecewiseQuadratic, Rectangular, Sigmoid, build_neuron_factory, reset_states,
)
from lightning_snn.neurons.backends import BACKENDS, get_backend
from lightning_snn.neurons.backends import inductor as inductor_backend
from lightning_snn.neurons.backends import triton as triton_backend

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _make(kind: str, backend: str, **kw) -> BaseNode:
    return IFNode(backend=backend, **kw) if kind == "if" else LIFNode(backend=backend, **kw)


def _run_twice(node: BaseNode, x1: torch.Tensor, x2: torch.Tensor):
    """Two multi-step calls without a reset (so the second starts from the first's V), then backward.

    The loss weights every spike differently, so every element's gradient path is exercised, and adds
    the final membrane potential, so the gradient entering ``V[T]`` is non-zero too.
    """
    reset_states(node)
    a = x1.clone().requires_grad_()
    b = x2.clone().requires_grad_()
    s1 = node(a)
    s2 = node(b)
    w1 = torch.linspace(-1.0, 2.0, s1.numel(), device=s1.device).reshape(s1.shape)
    w2 = torch.linspace(1.5, -0.5, s2.numel(), device=s2.device).reshape(s2.shape)
    loss = (s1.float() * w1).sum() + (s2.float() * w2).sum() + 0.3 * node.v.sum()
    loss.backward()
    th_grad = node.v_threshold.grad.clone() if isinstance(node.v_threshold, torch.nn.Parameter) else None
    return s1.detach(), s2.detach(), node.v.detach(), a.grad, b.grad, th_grad


def _compare(kind: str, backend: str, device: str = "cpu", dtype=torch.float32, atol=1e-5, rtol=1e-4, **kw) -> None:
    torch.manual_seed(0)
    x1 = (torch.randn(4, 3, 5, device=device) * 1.2).to(dtype)
    x2 = (torch.randn(4, 3, 5, device=device) * 1.2).to(dtype)
    ref = _run_twice(_make(kind, "torch", **kw).to(device), x1, x2)
    out = _run_twice(_make(kind, backend, **kw).to(device), x1, x2)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1]), "forward spikes differ from the reference"
    torch.testing.assert_close(out[2], ref[2], atol=atol, rtol=rtol)
    torch.testing.assert_close(out[3], ref[3], atol=atol, rtol=rtol)  # through the carried membrane: dL/dV[0]
    torch.testing.assert_close(out[4], ref[4], atol=atol, rtol=rtol)
    if ref[5] is not None:
        torch.testing.assert_close(out[5], ref[5], atol=atol * 10, rtol=rtol)


# ------------------------------------------------------------------------------------------- inductor
@pytest.mark.parametrize(
    "kind,kw",
    [
        pytest.param("lif", dict(decay=0.25, v_threshold=0.2, learnable_threshold=True), id="LIF-STBP-learnable-th"),
        pytest.param("if", dict(v_reset=None, surrogate=Sigmoid(4.0), detach_reset=True), id="IF-soft-sigmoid-detach"),
    ],
)
def test_inductor_matches_torch(kind, kw):
    _compare(kind, "inductor", **kw)


SWEEP = [
    pytest.param("if", dict(v_reset=None), id="IF-subtract"),
    pytest.param("if", dict(v_reset=0.0), id="IF-zero"),
    pytest.param("lif", dict(decay=0.25, v_threshold=0.2, v_reset=0.0), id="LIF-zero"),
    pytest.param("lif", dict(decay=0.5, v_reset=None), id="LIF-subtract"),
    pytest.param("lif", dict(decay=0.8, v_reset=-0.1), id="LIF-reset-to-value"),
    pytest.param("lif", dict(tau=2.0, decay_input=True, v_reset=None), id="LIF-tau-decay-input"),
]


@pytest.mark.slow
@pytest.mark.parametrize("kind,kw", SWEEP)
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize(
    "surrogate", [Rectangular(1.0), Sigmoid(4.0), ATan(2.0), PiecewiseQuadratic(1.0), Erf(2.0)],
    ids=["rect", "sigmoid", "atan", "pq", "erf"],
)
@pytest.mark.parametrize("learnable", [False, True], ids=["fixed-th", "learnable-th"])
def test_inductor_matches_torch_sweep(kind, kw, detach_reset, surrogate, learnable):
    _compare(kind, "inductor", surrogate=surrogate, detach_reset=detach_reset, learnable_threshold=learnable, **kw)


def test_inductor_falls_back_with_a_warning_when_compile_is_unsupported(monkeypatch):
    def broken_compile(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(inductor_backend, "_COMPILED", {})
    monkeypatch.setattr(inductor_backend, "_COMPILE_WARNED", set())
    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="falling back to the 'torch' backend"):
        _compare("lif", "inductor", decay=0.5, v_reset=None, surrogate=ATan(2.0))


def test_inductor_with_a_custom_surrogate_runs_the_reference(monkeypatch):
    class MySigmoid(Sigmoid):
        """A user-defined surrogate (same derivative, but not one the compiled sweep knows)."""

    def no_compile(*args, **kwargs):
        raise AssertionError("a custom surrogate must not be compiled")

    monkeypatch.setattr(torch, "compile", no_compile)
    monkeypatch.setattr(inductor_backend, "_COMPILED", {})
    x = torch.randn(5, 2, 3)
    ref = _run_twice(LIFNode(decay=0.5, surrogate=Sigmoid(4.0)), x, x)
    out = _run_twice(LIFNode(decay=0.5, surrogate=MySigmoid(4.0), backend="inductor"), x, x)
    for a, b in zip(out[:5], ref[:5]):
        assert torch.equal(a, b)


def test_inductor_single_step_mode_is_the_plain_autograd_path():
    """Backends accelerate the multi-step path only; single-step mode gives the same result for every backend."""
    x = torch.randn(3, 4)
    a = LIFNode(decay=0.5, step_mode="s", backend="inductor")
    b = LIFNode(decay=0.5, step_mode="s")
    assert torch.equal(a(x), b(x)) and torch.equal(a(x), b(x))


# ------------------------------------------------------------------------------------ registry, errors, specs
def test_registry_names_every_backend_module():
    assert BACKENDS == ("torch", "inductor", "triton")
    for name in BACKENDS:  # importable on the CPU (the Triton kernels are imported on first use)
        module = get_backend(name)
        assert callable(module.check) and callable(module.multi_step)


def test_unknown_and_unavailable_backends_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown neuron backend 'numba'.*'torch', 'inductor', 'triton'"):
        LIFNode(decay=0.5, backend="numba")
    with pytest.raises(ValueError, match="'cupy' is not available.*use backend 'triton'"):
        IFNode(backend="cupy")


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(decay=0.5), "surrogate Rectangular"),  # the default (STBP) surrogate
        (dict(decay=0.0, surrogate=Sigmoid()), r"decay in \(0, 1\).*decay=0"),
        (dict(decay=0.5, surrogate=Sigmoid(), learnable_threshold=True), "learnable_threshold"),
    ],
)
def test_triton_refuses_what_the_kernels_do_not_implement(kw, match):
    with pytest.raises(ValueError, match=match):
        LIFNode(backend="triton", **kw)


def test_triton_maps_leak_factor_onto_time_constant():
    lif = LIFNode(decay=0.75, v_threshold=0.5, v_reset=None, surrogate=Sigmoid(4.0), backend="triton")
    tau, decay_input, th, v_reset, detach, sid, alpha = triton_backend.config(lif)
    assert tau == pytest.approx(4.0) and not decay_input and th == 0.5 and v_reset is None and (sid, alpha) == (0, 4.0)
    lif = LIFNode(tau=2.0, decay_input=True, surrogate=ATan(2.0), backend="triton", detach_reset=True)
    assert triton_backend.config(lif)[:2] == (2.0, True) and triton_backend.config(lif)[4:] == (True, 1, 2.0)
    assert triton_backend.config(IFNode(surrogate=Sigmoid(), backend="triton"))[0] is None


@pytest.mark.parametrize(
    "kind,kw",
    [
        pytest.param("if", dict(v_reset=None, surrogate=Sigmoid(4.0)), id="IF-subtract-sigmoid"),
        pytest.param("lif", dict(decay=0.75, v_reset=0.0, surrogate=ATan(2.0), detach_reset=True), id="LIF-decay-atan"),
        pytest.param("lif", dict(tau=2.0, decay_input=True, v_reset=-0.1, surrogate=Sigmoid(4.0)), id="LIF-tau-decay-input"),
        pytest.param("lif", dict(decay=0.5, v_reset=None, surrogate=PiecewiseQuadratic(1.5)), id="LIF-pq"),
        pytest.param("if", dict(v_reset=0.0, surrogate=Erf(2.0)), id="IF-erf"),
    ],
)
def test_triton_function_plumbing_with_spikingjelly_cpu_operators(monkeypatch, kind, kw):
    """The Triton autograd Function and the neuron -> kernel mapping, run on the CPU by substituting
    SpikingJelly's CPU implementations of the same operators (same signatures and equations)."""
    from spikingjelly._ops.if_ import cpu as if_cpu
    from spikingjelly._ops.lif import cpu as lif_cpu

    monkeypatch.setattr(triton_backend, "_triton_kernels", lambda integrate_only: if_cpu if integrate_only else lif_cpu)
    torch.manual_seed(1)
    x = torch.randn(6, 4, 5) * 1.2
    node = _make(kind, "triton", **kw)
    xa = x.clone().requires_grad_()
    v0 = torch.full_like(x[0], 0.0 if node.v_reset is None else node.v_reset)
    s, v = triton_backend._TritonMultiStepNeuron.apply(xa, v0, triton_backend.config_cached(node))
    w = torch.linspace(-1.0, 1.0, s.numel()).reshape(s.shape)
    ((s * w).sum() + 0.3 * v.sum()).backward()
    ref_node = _make(kind, "torch", **kw)
    xb = x.clone().requires_grad_()
    s_ref = ref_node(xb)
    ((s_ref * w).sum() + 0.3 * ref_node.v.sum()).backward()
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(v, ref_node.v, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-4)


def test_triton_config_follows_threshold_changes():
    node = IFNode(surrogate=Sigmoid(), backend="triton", v_threshold=1.0)
    assert triton_backend.config_cached(node)[2] == 1.0
    with torch.no_grad():
        node.v_threshold.fill_(0.5)  # in place: the version counter changes, the cache is recomputed
    assert triton_backend.config_cached(node)[2] == 0.5


def test_triton_on_cpu_tensors_raises():
    node = IFNode(surrogate=Sigmoid(), backend="triton")
    with pytest.raises(RuntimeError, match="CUDA tensors only.*'torch' or 'inductor'"):
        node(torch.zeros(2, 3))


def test_factory_spec_selects_backend():
    factory = build_neuron_factory({"type": "lif", "decay": 0.25, "backend": "inductor"})
    assert factory().backend == "inductor"
    with pytest.raises(ValueError, match="backend 'triton' does not support the surrogate Rectangular"):
        build_neuron_factory({"type": "lif", "decay": 0.25, "backend": "triton"})


# ------------------------------------------------------------------------------------------------ GPU
@requires_cuda
@pytest.mark.parametrize(
    "kind,kw",
    [
        pytest.param("if", dict(v_reset=None), id="IF-subtract"),
        pytest.param("if", dict(v_reset=0.0), id="IF-zero"),
        pytest.param("lif", dict(tau=2.0, decay_input=True, v_reset=0.0), id="LIF-tau-decay-input"),
        pytest.param("lif", dict(tau=2.0, decay_input=False, v_reset=None), id="LIF-tau"),
        pytest.param("lif", dict(decay=0.75, v_reset=None), id="LIF-decay"),
        pytest.param("lif", dict(decay=0.2, v_reset=-0.1), id="LIF-decay-reset-to-value"),
    ],
)
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize(
    "surrogate", [Sigmoid(4.0), ATan(2.0), PiecewiseQuadratic(1.0), Erf(2.0)], ids=["sigmoid", "atan", "pq", "erf"]
)
def test_triton_matches_torch_on_cuda(kind, kw, detach_reset, surrogate):
    # SpikingJelly's kernels write λ·(V - c) as V - (V - c)/τ: equal up to float rounding, so spikes can only
    # differ where H lies within a few ulps of V_th (vanishingly unlikely for these random inputs); gradients
    # agree to float round-off
    _compare(kind, "triton", device="cuda", surrogate=surrogate, detach_reset=detach_reset, **kw)


@requires_cuda
@pytest.mark.parametrize("backend", ["inductor", "triton"])
def test_gpu_backends_bf16(backend):
    kw = dict(decay=0.5, v_threshold=0.3, surrogate=Sigmoid(4.0))
    x = torch.randn(4, 2, 64, device="cuda", dtype=torch.bfloat16)
    ref = LIFNode(**kw).cuda()(x)
    node = LIFNode(backend=backend, **kw).cuda()
    xg = x.clone().requires_grad_()
    out = node(xg)
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and node.v.dtype == torch.float32 and xg.grad.dtype == torch.bfloat16
    assert torch.equal(out, ref)


@requires_cuda
def test_inductor_matches_torch_on_cuda():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent fallback on a GPU machine
        _compare("lif", "inductor", device="cuda", decay=0.25, v_threshold=0.2, learnable_threshold=True)
