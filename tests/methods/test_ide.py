"""IDE: implicit gradients against unrolled references, O(1) memory in T, solver reporting, training."""
from __future__ import annotations

import copy
import os
import shutil
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from lightning_snn.backbones import create_backbone
from lightning_snn.backbones.feedback import FeedbackSNN
from lightning_snn.callbacks import FiringRateMonitor
from lightning_snn.data import DigitsDataModule
from lightning_snn.methods import BPTT, IDE
from lightning_snn.methods.ide import ImplicitEquilibriumGradient, _ValueOf, halved_iteration, implicit_backward
from lightning_snn.neurons import reset_states

ROOT = Path(__file__).parents[2]
SHARED_DATA = Path(os.environ.get("LIGHTNING_SNN_SHARED_DATA", ROOT.parent / "shared" / "data"))
LIF = {"type": "lif", "decay": 0.95, "v_threshold": 2.0, "v_reset": None}


def _small(name: str, neuron=None, **kw) -> FeedbackSNN:
    kw.setdefault("dropout", 0.0)
    net = create_backbone(name, num_classes=5, neuron=neuron, in_channels=kw.pop("in_channels", 1), input_size=kw.pop("input_size", (8, 8)), **kw)
    return net.double()


def _fixed_point(net: FeedbackSNN, drive: torch.Tensor, iters: int = 400) -> torch.Tensor:
    with torch.no_grad():
        a = torch.zeros((drive.shape[0], *net.last_shape), dtype=drive.dtype)
        for _ in range(iters):
            a = net.equilibrium_map(a, drive)
    return a


@pytest.mark.parametrize(
    "name,kw",
    [("ide_conv", {"channels": 6, "kernel_size": 3}), ("ide_fc", {"hidden": 12}), ("ide_alexnet_f", {"channels": [4, 6, 6, 6, 4], "in_channels": 3})],
)
def test_implicit_gradient_matches_unrolled_fixed_point_iteration(name, kw):
    """β^T ∂f/∂θ with β from Broyden equals autograd through 300 iterations of a <- f(a) started at a*."""
    torch.manual_seed(0)
    net = _small(name, **kw)
    net.eval()  # BatchNorm on running statistics: f is one fixed function of a
    with torch.no_grad():  # a smaller feedback gain keeps f contractive for the unrolled reference
        net.feedback.op.parametrizations.weight[0].gain.fill_(0.5)
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(3, kw.get("in_channels", 1), 8, 8, dtype=torch.float64) * 3
    y = torch.tensor([0, 3, 1])
    drive0 = net.input_layer(x).detach()
    a_star = _fixed_point(net, drive0)
    assert float((net.equilibrium_map(a_star, drive0) - a_star).abs().max().detach()) < 1e-12
    assert 0.0 < float(a_star.mean()) < 1.0  # not a trivial all-silent / all-saturated equilibrium

    def implicit():
        net.zero_grad()
        drive = net.input_layer(x)
        a_map = net.equilibrium_map(a_star, drive)
        solve = lambda g: implicit_backward(net, a_star, drive.detach(), g, max_iter=200, tol=1e-13, memory=200).solution
        a = _ValueOf.apply(ImplicitEquilibriumGradient.apply(a_map, solve), a_star)
        F.cross_entropy(net.classify(a), y).backward()
        return {n: p.grad.clone() for n, p in net.named_parameters()}

    def unrolled():
        net.zero_grad()
        drive = net.input_layer(x)
        a = a_star.clone()
        for _ in range(300):
            a = net.equilibrium_map(a, drive)
        F.cross_entropy(net.classify(a), y).backward()
        return {n: p.grad.clone() for n, p in net.named_parameters()}

    g_imp, g_ref = implicit(), unrolled()
    assert g_imp.keys() == g_ref.keys()
    for n in g_ref:
        torch.testing.assert_close(g_imp[n], g_ref[n], rtol=1e-7, atol=1e-10, msg=n)
    assert float(g_ref["feedback.op.parametrizations.weight.original"].abs().sum()) > 0  # the feedback path is exercised


def _dense_implicit_grads(ref: IDE, a: torch.Tensor, x_map: torch.Tensor, y: torch.Tensor, k: float = 1.0) -> dict:
    """∂L/∂θ = ∂L/∂W_cls + β^T ∂f/∂θ at the rate ``a``, with ``β = (kI - J^T)^{-1} ∂L/∂a`` solved densely per
    sample (k = 1: Eq. 12; k = 2: the fixed point of the code's 'iter' solver) and f's input ``x_map``."""
    net = ref.backbone
    a_req = a.clone().requires_grad_(True)
    loss = F.cross_entropy(net.classify(a_req), y)
    (dl_da,) = torch.autograd.grad(loss, a_req, retain_graph=True)
    drive0 = net.input_layer(x_map).detach()
    n = a[0].numel()
    betas = []
    for b in range(a.shape[0]):  # per-sample dense Jacobian of the map
        jac = torch.autograd.functional.jacobian(lambda v: net.equilibrium_map(v.view(1, -1), drive0[b : b + 1]).view(-1), a[b].view(-1))
        betas.append(torch.linalg.solve(k * torch.eye(n, dtype=jac.dtype) - jac.T, dl_da[b].view(-1)).view_as(a[b]))
    ref.zero_grad()
    (loss + (net.equilibrium_map(a, net.input_layer(x_map)) * torch.stack(betas)).sum()).backward()
    return {name: p.grad.clone() for name, p in ref.named_parameters()}


def _assert_grads_equal(model: IDE, expected: dict) -> None:
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-6, atol=1e-10, msg=name)


@pytest.mark.parametrize("solver,k", [("broyden", 1.0), ("iter", 2.0)])
@pytest.mark.parametrize("neuron", [None, LIF], ids=["IF", "LIF"])
def test_training_step_gradient_equals_the_dense_implicit_formula(neuron, solver, k):
    """The IDE module's gradients (train mode, simulated equilibrium, BatchNorm on batch statistics) equal
    ∂L/∂θ = ∂L/∂W_cls + β^T ∂f/∂θ with β = (I - J^T)^{-1} ∂L/∂a (Broyden) or (2I - J^T)^{-1} ∂L/∂a (the
    code's 'iter' solver, run to convergence) solved densely."""
    torch.manual_seed(1)
    model = IDE(backbone="ide_fc", num_classes=4, input_shape=(1, 4, 4), T=12, neuron=neuron, solver=solver,
                backbone_kwargs={"hidden": 10, "dropout": 0.0}, solver_max_iter=60, solver_tol=1e-13).double()
    ref = copy.deepcopy(model)
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64) * 4
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    model.train()
    F.cross_entropy(model(x)[-1], y).backward()
    assert model.solver_results and model.solver_results[-1].converged
    ref.train()
    _assert_grads_equal(model, _dense_implicit_grads(ref, ref.simulate(x)[-1].detach(), x, y, k))


def test_halved_iteration_is_the_official_iter_solver():
    """β <- (J^T β + g)/2 from β = g: after enough steps the solution of (2I - J^T) β = g, about half of
    (I - J^T)^{-1} g for a small J; the reported residual is that of the returned iterate."""
    torch.manual_seed(0)
    jac = torch.randn(3, 5, 5, dtype=torch.float64) * 0.1
    g = torch.randn(3, 5, dtype=torch.float64)

    def vjp(b):
        return torch.einsum("bij,bi->bj", jac, b)

    eye = torch.eye(5, dtype=torch.float64)
    limit = torch.linalg.solve(2 * eye - jac.transpose(1, 2), g.unsqueeze(-1)).squeeze(-1)
    full = torch.linalg.solve(eye - jac.transpose(1, 2), g.unsqueeze(-1)).squeeze(-1)
    res = halved_iteration(vjp, g, 80, tol=1e-12)
    torch.testing.assert_close(res.solution, limit, rtol=1e-12, atol=1e-14)
    assert res.converged and res.steps == 80 and not res.protective_break
    assert res.residual == pytest.approx(float((vjp(res.solution) + g - 2 * res.solution).norm()))
    assert 0.4 < float(res.solution.norm() / full.norm()) < 0.6
    short = halved_iteration(vjp, g, 1)  # one step: (J^T g + g)/2
    torch.testing.assert_close(short.solution, (vjp(g) + g) / 2)
    assert short.initial_residual == pytest.approx(float((vjp(g) - g).norm()))


@pytest.mark.parametrize("update", [False, True], ids=["once", "official_twice"])
def test_input_bn_running_statistics_per_step(update):
    """simulation_bn_update: the input BatchNorm's running statistics after one step are one momentum update
    with the batch statistics (library) or two (the official code, whose save/restore restores nothing)."""
    torch.manual_seed(0)
    model = IDE(backbone="ide_fc", num_classes=4, input_shape=(1, 4, 4), T=3, simulation_bn_update=update,
                backbone_kwargs={"hidden": 6, "dropout": 0.0}).double()
    bn = model.backbone.input_layer.bn
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64)
    z = model.backbone.input_layer.op(x.flatten(1)).detach()
    model.train()
    F.cross_entropy(model(x)[-1], torch.tensor([0, 1, 2, 3, 0])).backward()
    keep = 0.9 ** (2 if update else 1)  # momentum 0.1
    torch.testing.assert_close(bn.running_mean, keep * mean0 + (1 - keep) * z.mean(0))
    torch.testing.assert_close(bn.running_var, keep * var0 + (1 - keep) * z.var(0, unbiased=True))
    assert int(bn.num_batches_tracked) == (2 if update else 1)


def _official_event_forward(net: FeedbackSNN, frames: torch.Tensor, lif: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand-written float64 statement of what the official code computes when it trains a one-layer feedback
    network on spike frames (``SNNIFFunc`` / ``SNNLIFFunc.snn_forward`` with BN in training mode, then
    ``SNNIDEModule.forward``): returns the simulated rate and the equilibrium map's input. The loops are the
    code's, in-place updates included (``x_mean`` and ``u_`` are views of the last frame)."""
    x = frames.transpose(0, 1).clone()  # [T, B, ...], the code's permuted input
    T = x.shape[0]
    lam, vth = (0.95 if lif else 1.0), 2.0
    layer = net.input_layer
    w, b, gamma, beta = layer.op.weight, layer.op.bias, layer.bn.weight, layer.bn.bias
    w_fb = net.feedback.op.weight

    def linear(v):
        return v.flatten(1) @ w.T + b

    with torch.no_grad():
        if lif:
            x_mean = x[T - 1]
            leaky_ = 1.0
            for t in range(T - 1):
                leaky_ *= lam
                x_mean += x[T - 2 - t] * leaky_
            x_mean /= (1 - leaky_ * lam) / (1 - lam)
        else:
            x_mean = x.mean(0)
        z = linear(x_mean)
        mean, sd = z.mean(0, keepdim=True), torch.sqrt(z.var(0, keepdim=True) + 1e-8)  # unbiased variance

        def drive(v):
            return (linear(v) - mean) / sd * gamma + beta

        u = drive(x[0])
        s = (u >= vth).double()
        u = (u - vth * s) * lam
        a = s
        for t in range(T - 1):
            u = u + s @ w_fb.T + drive(x[t + 1])
            s = (u >= vth).double()
            u = (u - vth * s) * lam
            a = a * lam + s
        rate = a / ((1 - lam**T) / (1 - lam)) if lif else a / T
        if not lif:
            return rate, x.mean(0)
        u_ = x[T - 1]
        leaky_ = 1.0
        for i in range(T):
            leaky_ *= lam
            u_ += x[T - 2 - i] * leaky_
        u_ /= (1 - leaky_ * lam) / (1 - lam)
        return rate, u_.clone()


@pytest.mark.parametrize("lif", [False, True], ids=["IF", "LIF"])
def test_event_training_step_reproduces_the_official_code(lif):
    """event_bn_stats: official + lif_event_overwrite: the simulated rate equals the official computation's
    (frames normalised with the unbiased variance and eps 1e-8; for LIF, the last frame overwritten by the
    weighted average) and the gradients equal the dense implicit formula with the official map input."""
    torch.manual_seed(3)
    kw = dict(backbone="ide_fc", num_classes=4, input_shape=(2, 3, 3), T=6, neuron=LIF if lif else None,
              backbone_kwargs={"hidden": 10, "dropout": 0.0}, solver_max_iter=60, solver_tol=1e-13)
    model = IDE(event_bn_stats="official", lif_event_overwrite=True, **kw).double()
    library = IDE(**kw).double()
    library.load_state_dict(model.state_dict())
    ref, sim = copy.deepcopy(model), copy.deepcopy(model)
    frames = (torch.rand(7, 6, 2, 3, 3) < 0.4).double()  # [B, T, C, H, W]
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    for m in (model, library, ref, sim):
        m.train()
    F.cross_entropy(model(frames)[-1], y).backward()
    F.cross_entropy(library(frames)[-1], y).backward()
    reset_states(ref.backbone)  # the feedback norm's power iteration advances once per batch, as in model(frames)
    rate, x_map = _official_event_forward(ref.backbone, frames, lif)
    assert 0.05 < float(rate.mean()) < 0.95
    torch.testing.assert_close(sim.simulate(frames)[-1], rate, rtol=1e-12, atol=1e-12)
    expected = _dense_implicit_grads(ref, rate, x_map, y)
    _assert_grads_equal(model, expected)
    g_off, g_lib = expected["backbone.input_layer.op.weight"], library.backbone.input_layer.op.weight.grad
    assert float((g_lib - g_off).norm() / g_off.norm()) > 1e-3  # the library's own recipe is a different one


def test_training_memory_does_not_grow_with_T():
    """Only one map evaluation is kept for backward: the saved tensors are the same at T = 4 and T = 40."""

    def saved_bytes(T: int) -> int:
        torch.manual_seed(0)
        model = IDE(backbone="ide_conv", num_classes=10, input_shape=(1, 8, 8), T=T, backbone_kwargs={"channels": 8})
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(torch.rand(4, 1, 8, 8))
        out.sum().backward()
        return total

    assert saved_bytes(4) == saved_bytes(40) > 0


def test_simulated_rate_approaches_the_equilibrium_as_T_grows():
    torch.manual_seed(0)
    net = _small("ide_conv", channels=6, kernel_size=3)
    net.eval()
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64) * 4
    drive = net.input_layer(x).detach()
    gaps = []
    with torch.no_grad():
        for T in (5, 50, 400):
            a = net.simulate(x, T, static=True)[-1]
            gaps.append(float((net.equilibrium_map(a, drive) - a).abs().mean()))
    assert gaps[2] < gaps[1] < gaps[0]
    assert gaps[2] < 0.01


def test_event_input_uses_weighted_average_statistics():
    torch.manual_seed(0)
    model = IDE(backbone="ide_conv", num_classes=10, input_shape=(2, 8, 8), T=6, neuron=LIF, backbone_kwargs={"channels": 4})
    frames = (torch.rand(3, 6, 2, 8, 8) < 0.3).float()  # [B, T, C, H, W] event frames
    before = model.backbone.input_layer.bn.running_mean.clone()
    out = model(frames)
    out.sum().backward()
    assert out.shape == (1, 3, 10)
    # the running statistics move once per step (in the map on the weighted average frame), not per frame
    w = 0.95 ** torch.arange(5, -1, -1, dtype=torch.float32)
    x_bar = torch.tensordot(w, frames.transpose(0, 1), dims=([0], [0])) / w.sum()
    torch.testing.assert_close(model.backbone.average_input(frames.transpose(0, 1)), x_bar)
    expected = 0.9 * before + 0.1 * model.backbone.input_layer.linear(x_bar).mean((0, 2, 3))
    torch.testing.assert_close(model.backbone.input_layer.bn.running_mean, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="T=4 frames"):
        model(frames[:, :4])


def test_non_convergence_is_counted_logged_and_warned(tmp_path):
    torch.manual_seed(0)
    model = IDE(backbone="ide_conv", num_classes=10, input_shape=(1, 8, 8), T=4, backbone_kwargs={"channels": 8},
                solver_max_iter=1, solver_tol=1e-30, residual_warning=0.0)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path)
    with pytest.warns(UserWarning, match="relative residual"):
        trainer.fit(model, DigitsDataModule(batch_size=16))
    assert model.solver_calls == 2 and model.solver_not_converged == 2
    assert trainer.callback_metrics["ide/solver_not_converged"] == 2.0
    assert trainer.callback_metrics["ide/solver_steps"] == 1.0
    assert "ide/solver_rel_residual" in trainer.callback_metrics


def test_firing_rate_distribution_during_evaluation(tmp_path):
    torch.manual_seed(0)
    model = IDE(backbone="ide_alexnet_f", num_classes=10, input_shape=(1, 8, 8), T=5,
                backbone_kwargs={"channels": [4, 6, 6, 6, 4], "dropout": 0.0})
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=2, default_root_dir=tmp_path)
    trainer.validate(model, DigitsDataModule(batch_size=16))
    monitor = next(cb for cb in trainer.callbacks if isinstance(cb, FiringRateMonitor))
    dist = monitor.last_distribution
    assert sorted(dist) == [f"backbone.neurons.{i}" for i in range(5)]
    for name, d in dist.items():
        assert 0.0 <= d["p10"] <= d["p50"] <= d["p90"] <= d["max"] <= 1.0
        assert sum(d["histogram"]) == d["neurons"]
        assert abs(d["mean"] - monitor.last_rates[name]) < 1e-5  # same spikes, counted two ways
        assert f"val/firing_rate_dist/{name}/p50" in trainer.callback_metrics


def test_ide_reaches_95_percent_on_digits(tmp_path):
    L.seed_everything(0)
    model = IDE(backbone="ide_conv", num_classes=10, input_shape=(1, 8, 8), T=10,
                backbone_kwargs={"channels": 32, "kernel_size": 3, "dropout": 0.0})
    model.configure_optimizers = lambda: torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    trainer = L.Trainer(max_epochs=8, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0)
    dm = DigitsDataModule(batch_size=32)
    trainer.fit(model, dm)
    acc = trainer.test(model, dm, verbose=False)[0]["test/acc"]
    assert acc >= 0.95, acc


def test_fit_summary_leaves_the_feedback_norm_state_alone():
    """The fit-start summary runs a forward pass; the feedback norm's power iteration, which advances at every
    forward (as the official code), must be where it was, so that step 1 sees the official two iterations."""
    from lightning_snn.callbacks import SpikingSummary

    torch.manual_seed(0)
    model = IDE(backbone="ide_conv", num_classes=10, input_shape=(1, 8, 8), T=3, backbone_kwargs={"channels": 4})
    param = model.backbone.feedback.op.parametrizations.weight[0]
    before = (param.u.clone(), param.v.clone())
    SpikingSummary().measure(model, torch.rand(2, 1, 8, 8))
    assert torch.equal(param.u, before[0]) and torch.equal(param.v, before[1])
    model.eval()
    model(torch.rand(2, 1, 8, 8))  # a forward does advance it
    assert not torch.equal(param.u, before[0])


def test_bptt_twin_trains_the_same_feedback_network():
    torch.manual_seed(0)
    model = BPTT(backbone="ide_conv", num_classes=10, input_shape=(1, 8, 8), T=4, backbone_kwargs={"channels": 4},
                 neuron={"type": "if", "v_threshold": 2.0, "v_reset": None, "surrogate": {"name": "sigmoid"}})
    out = model(torch.rand(2, 1, 8, 8) * 3)
    assert out.shape == (4, 2, 10)
    out.sum().backward()
    assert model.backbone.input_layer.op.weight.grad.abs().sum() > 0


def test_clear_errors():
    with pytest.raises(ValueError, match="feedback backbone"):
        IDE(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="v_reset"):
        IDE(backbone="ide_fc", num_classes=10, input_shape=(1, 8, 8), neuron={"type": "if", "v_threshold": 2.0, "v_reset": 0.0})
    with pytest.raises(ValueError, match="solver_max_iter"):
        IDE(backbone="ide_fc", num_classes=10, input_shape=(1, 8, 8), solver_max_iter=-1)
    with pytest.raises(ValueError, match="channels"):
        create_backbone("ide_cifarnet_f", num_classes=10, channels=[8, 8])
    model = IDE(backbone="ide_fc", num_classes=10, input_shape=(1, 8, 8), loss="tet")
    with pytest.raises(ValueError, match="tet"):
        model.compute_loss(torch.zeros(1, 2, 10), torch.tensor([0, 1]))


def test_published_parameter_counts():
    """The registered networks have the parameter counts of the paper's tables (IDE README)."""
    counts = {
        ("ide_conv", (1, 28, 28), 10): 229e3, ("ide_conv", (2, 34, 34), 10): 291e3, ("ide_fc", (1, 28, 28), 10): 478e3,
        ("ide_alexnet_f", (3, 32, 32), 10): 3.7e6, ("ide_cifarnet_f", (3, 32, 32), 10): 11.8e6,
        ("ide_alexnet_f", (3, 32, 32), 100): 5.2e6, ("ide_cifarnet_f", (3, 32, 32), 100): 14.8e6,
    }
    for (name, shape, k), published in counts.items():
        net = create_backbone(name, num_classes=k, in_channels=shape[0], input_size=shape[1:])
        n = sum(p.numel() for p in net.parameters())
        assert abs(n - published) / published < 0.02, (name, shape, k, n)


def _real_nmnist_files() -> list[Path]:
    if not SHARED_DATA.is_dir():
        return []
    return sorted(p for p in SHARED_DATA.rglob("*.bin") if ".lightning_snn_cache" not in p.parts)


@pytest.mark.skipif(not _real_nmnist_files(), reason=f"no real N-MNIST recordings (*.bin) under {SHARED_DATA}")
def test_nmnist_config_on_the_real_samples(tmp_path):
    """configs/ide/nmnist_conv_lif.yaml runs one training and one validation batch on the real recordings."""
    from lightning_snn.cli import build_cli

    for i, path in enumerate(_real_nmnist_files()):
        label = path.parent.name if path.parent.name.isdigit() else str(i % 10)
        for split in ("Train", "Test"):
            dest = tmp_path / "data" / "NMNIST" / split / label
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest / path.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = build_cli(["fit", "--config", str(ROOT / "configs/ide/nmnist_conv_lif.yaml"), "--trainer.fast_dev_run", "true",
                         "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.logger", "false",
                         "--trainer.default_root_dir", str(tmp_path / "run"), "--data.init_args.batch_size", "2",
                         "--data.init_args.root", str(tmp_path / "data"), "--data.init_args.num_workers", "0"])
    assert cli.trainer.global_step == 1


def test_bf16_mixed_precision_training(tmp_path):
    """Under autocast the map runs in bf16 while the Broyden solve and σ of the feedback stay in float32."""
    L.seed_everything(0)
    model = IDE(backbone="ide_alexnet_f", num_classes=10, input_shape=(1, 8, 8), T=4, backbone_kwargs={"channels": [4, 6, 6, 6, 4]})
    before = model.backbone.input_layer.op.weight.detach().clone()
    trainer = L.Trainer(max_steps=2, accelerator="cpu", precision="bf16-mixed", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, DigitsDataModule(batch_size=16))
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert trainer.callback_metrics["ide/solver_not_converged"] == 0.0
    assert model.backbone.input_layer.op.weight.dtype == torch.float32
    assert not torch.equal(before, model.backbone.input_layer.op.weight)
