"""IDE: training feedback SNNs by implicit differentiation on the equilibrium state (Xiao et al., NeurIPS 2021).

The network is a :class:`~lightning_snn.backbones.feedback.FeedbackSNN` (ARCHITECTURE.md, mechanism 3:
a structural backbone exposing its equilibrium map). One training step:

1. **Forward** (Sec. 4.1): simulate the SNN for ``T`` steps without any autograd graph and take the last
   layer's (weighted) average firing rate ``a`` as the equilibrium ``a* = f(a*, x̄)``. In training mode
   the input layer's BatchNorm uses batch statistics (event frames: those of the average frame x̄, see
   ``event_bn_stats``) and the hidden BatchNorms their running statistics, as in the paper's code
   (``modules/snnide_module.py``). Whether this pass also moves the input BatchNorm's running
   statistics is ``simulation_bn_update``.
2. **Graph of one map evaluation**: ``a' = f(a, x̄)`` with gradients; this is the only graph kept, so
   memory does not depend on ``T``. Its BatchNorms run in training mode (their running statistics are
   updated here). The classifier sees the value ``a`` (the simulated rate) and sends its gradient into
   ``a'``.
3. **Backward** (Sec. 4.2, Eq. 12): the incoming ``∂L/∂a*`` is replaced by the solution ``β`` of
   ``β = J_f^T β + ∂L/∂a*`` (``J_f = ∂f/∂a`` at ``a``, hidden BatchNorms in eval mode), found with
   :func:`~lightning_snn.methods.broyden.broyden` (30 iterations, the paper's tolerance, lowest-residual
   fallback); backpropagating ``β`` through the graph of step 2 gives ``∂L/∂θ = β^T ∂f/∂θ``. The code's
   N-MNIST script uses another solver instead, which solves a different equation (``solver: iter``).

Each solve's iterations and residual are logged (``ide/solver_steps``, ``ide/solver_rel_residual``,
``ide/solver_not_converged`` — a running count of solves that stopped above the tolerance); solves that
end far from a solution (relative residual above ``residual_warning``) or diverge also raise a warning.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn

from ..backbones.feedback import IDE_IF, BatchStats, FeedbackSNN, frozen_batchnorm_stats, hidden_batchnorm_eval
from ..neurons import build_neuron_factory, reset_states
from .base import SpikingClassifier
from .broyden import BroydenResult, broyden, paper_tolerance
from .warmup import LinearWarmup, checked_warmup_steps

__all__ = ["IDE", "ImplicitEquilibriumGradient", "halved_iteration", "implicit_backward", "official_lif_event_inputs"]

Solver = Literal["broyden", "iter"]
EventBNStats = Literal["batchnorm", "official"]
SOLVERS = ("broyden", "iter")
EVENT_BN_STATS = ("batchnorm", "official")

def implicit_backward(
    net: FeedbackSNN,
    a_star: torch.Tensor,
    drive: torch.Tensor,
    grad: torch.Tensor,
    max_iter: int = 30,
    tol: float | None = None,
    memory: int | None = None,
    solver: Solver = "broyden",
) -> BroydenResult:
    """The backward solve at the equilibrium ``a_star``; ``J = ∂f/∂a`` of ``net.equilibrium_map(·, drive)``
    at ``a_star``, with the hidden BatchNorms in eval mode; ``drive`` is treated as a constant. Each
    iteration costs one vector-Jacobian product.

    ``solver="broyden"``: ``β = J^T β + grad`` (IDE Eq. 12), i.e. ``β = (I - J^T)^{-1} grad``, by
    :func:`~lightning_snn.methods.broyden.broyden` from ``β = 0``. ``solver="iter"``: the paper's code's
    other solver, :func:`halved_iteration`, which approaches ``(2I - J^T)^{-1} grad`` instead.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    with torch.enable_grad():
        a0 = a_star.detach().requires_grad_(True)
        with hidden_batchnorm_eval([net.hidden_layers, net.feedback]):
            y = net.equilibrium_map(a0, drive.detach())

    def vjp(beta: torch.Tensor) -> torch.Tensor:
        (jt,) = torch.autograd.grad(y, a0, beta, retain_graph=True)
        return jt

    if solver == "iter":
        return halved_iteration(vjp, grad, max_iter, tol)
    # the fixed-point residual form Broyden starts from (inverse Jacobian -I)
    return broyden(lambda beta: vjp(beta) + grad - beta, torch.zeros_like(grad), max_iter=max_iter, tol=tol, memory=memory)


def halved_iteration(
    vjp: Callable[[torch.Tensor], torch.Tensor], grad: torch.Tensor, iters: int, tol: float | None = None
) -> BroydenResult:
    """The ``'iter'`` backward solver of the paper's code (``solver_type`` other than ``'broy'`` in
    ``modules/snnide_module.py``, used by its N-MNIST script): ``β_0 = grad`` and ``iters`` times

        β <- (β + G(β)) / 2,   G(β) = J^T β + grad - β      i.e.   β <- (J^T β + grad) / 2

    with ``vjp(β) = J^T β``. Its fixed point solves ``(2I - J^T) β = grad``, not Eq. 12's
    ``(I - J^T) β = grad``: since ``(2I - J^T)^{-1} = ½ (I - J^T/2)^{-1}``, the result is about half the
    implicit gradient when ``J`` is small and not parallel to it otherwise: on one 64C5s (F64C5) step on
    real N-MNIST recordings the backbone gradient's norm is 0.47-0.49 times Broyden's, cosine 0.986-0.991
    (IF and LIF, ``benchmarks/ide_fidelity.py``). There is no early stop, as in the code. The residual
    reported is ``‖J^T β + grad - 2β‖`` of the returned ``β`` (one extra product, for the record only);
    ``converged`` compares it with ``tol`` (None: the paper's ``2e-10 · sqrt(numel)``).
    """
    if iters < 0:
        raise ValueError(f"halved_iteration: iters must be >= 0, got {iters}")
    tol = paper_tolerance(grad.numel()) if tol is None else float(tol)
    beta = grad
    trace: list[float] = []
    for _ in range(iters):
        jt = vjp(beta)
        trace.append(float(torch.linalg.vector_norm(jt + grad - 2 * beta)))
        beta = (jt + grad) / 2
    residual = float(torch.linalg.vector_norm(vjp(beta) + grad - 2 * beta))
    trace.append(residual)
    return BroydenResult(solution=beta, steps=iters, residual=residual, initial_residual=trace[0], tol=tol,
                         converged=residual < tol, protective_break=False, trace=trace)


def official_lif_event_inputs(frames: torch.Tensor, x_bar: torch.Tensor, leak: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs that the paper's code ends up using when it trains a LIF network on event frames.

    ``frames``: ``[T, B, ...]``; ``x_bar``: their λ-weighted average ``Σ_t λ^{T-1-t} x_t / Σ_t λ^t``
    (``leak`` = λ). The code (``SNNLIFFunc.snn_forward``) accumulates that average *in place* into the
    last frame, so

    * the simulation sees ``x_0, ..., x_{T-2}, x̄`` (its last frame replaced by the average);
    * the equilibrium map, which re-accumulates the weighted average starting from the overwritten last
      frame over ``T`` terms (the last of which, index ``-1``, is the running sum itself), gets

        u = (x̄ + Σ_{t<T-1} λ^{T-1-t} x_t) · (1 + λ^T) · (1 - λ) / (1 - λ^{T+1}).

    Returns ``(simulation frames, map input u)``; ``frames`` is not modified. The IF branch of the code
    has no such overwrite.
    """
    lam = float(leak)
    if not 0.0 < lam < 1.0:
        raise ValueError(f"official_lif_event_inputs: the leak must lie in (0, 1) (LIF), got {lam}")
    T = frames.shape[0]
    w = lam ** torch.arange(T - 1, 0, -1, dtype=frames.dtype, device=frames.device)  # λ^{T-1-t}, t < T-1
    partial = torch.tensordot(w, frames[:-1], dims=([0], [0])) if T > 1 else torch.zeros_like(x_bar)
    u = (x_bar + partial) * ((1.0 + lam**T) * (1.0 - lam) / (1.0 - lam ** (T + 1)))
    return torch.cat([frames[:-1], x_bar.unsqueeze(0)]), u


class ImplicitEquilibriumGradient(torch.autograd.Function):
    """Identity in the forward pass; in the backward pass the incoming gradient ``∂L/∂a*`` is replaced by
    the implicit-differentiation solution ``β`` (``solve(grad) -> β``)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, solve: Any) -> torch.Tensor:
        ctx.solve = solve
        return a.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.solve(grad), None


class _ValueOf(torch.autograd.Function):
    """Returns the value of ``value`` and passes the gradient to ``carrier`` (the map's output)."""

    @staticmethod
    def forward(ctx: Any, carrier: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        ctx.carrier_dtype = carrier.dtype
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.to(ctx.carrier_dtype), None


class IDE(LinearWarmup, SpikingClassifier):
    """IDE training of a feedback SNN (module docstring).

    Args:
        solver_max_iter: iteration cap of the backward solve (Broyden), or its number of steps
            (``solver: iter``); the code's ``threshold``: 30. 0 skips the solve (``β = ∂L/∂a*``).
        solver_tol: absolute residual tolerance; None: the paper's ``2e-10 · sqrt(numel)``.
        solver_memory: rank-one updates kept by Broyden; None: ``min(solver_max_iter, 27)``.
        residual_warning: warn when a solve ends with a relative residual above this.
        warmup_steps: linear learning-rate warm-up over the first steps (400 for the CIFAR networks).
        solver: ``"broyden"``: solve Eq. 12, ``β = (I - J^T)^{-1} ∂L/∂a*`` (the paper; the code's MNIST,
            Fashion-MNIST and CIFAR scripts). ``"iter"``: the code's N-MNIST script's solver,
            ``solver_max_iter`` steps of ``β <- (J^T β + ∂L/∂a*)/2`` from ``β = ∂L/∂a*``, which tends to
            ``(2I - J^T)^{-1} ∂L/∂a*``: about **half** the implicit gradient (norm ratio 0.47-0.49 measured on
            the 64C5s (F64C5) N-MNIST network), and not exactly parallel to it (:func:`halved_iteration`).
            Kept because the published N-MNIST numbers came from it.
        simulation_bn_update: whether the simulation's call of the input layer's BatchNorm (training mode,
            static input) also moves its running statistics. False: only the map's call does (once per
            step), as the code's comments intend. True: they move twice per step, as the paper's code
            actually does: an official-code bug (``save_bn_statistics`` keeps a reference to the running
            buffers, not a copy, so ``restore_bn_statistics`` restores nothing), kept in the mirroring
            configs because the published numbers came from it. Event input is unaffected: its frames are
            normalised with the average frame's statistics, which moves nothing.
        event_bn_stats: statistics that normalise every event frame in the training simulation, both of the
            (weighted) average frame x̄ after the input layer's linear op. ``"batchnorm"``: biased variance
            and the BatchNorm's eps (1e-5), what BatchNorm itself would use. ``"official"``: the paper's
            code's, ``(y - mean) / sqrt(var_unbiased + 1e-8)``. On one real N-MNIST step (IF, batch 32) the
            backbone gradients of the two are 6% apart (relative L2).
        lif_event_overwrite: LIF on event frames in training only: reproduce the paper's code, which
            accumulates x̄ in place into the last input frame, so that the simulation's last frame is x̄
            and the equilibrium map gets a different input (:func:`official_lif_event_inputs`). An
            official-code bug, kept in the mirroring N-MNIST LIF config because the published numbers came
            from it (on one real N-MNIST step it moves the backbone gradients by 19-22%, relative L2). No
            effect for IF neurons, static input or evaluation.
        **kwargs: see :class:`SpikingClassifier`. ``backbone`` must be a feedback network (``ide_conv``,
            ``ide_fc``, ``ide_alexnet_f``, ``ide_cifarnet_f``); ``neuron`` defaults to IF with V_th = 2 and
            reset by subtraction (LIF: ``{type: lif, decay: 0.95, v_threshold: 2.0, v_reset: null}``);
            ``T`` is the paper's ``time_step``. Static images are shown at every step (constant input);
            event data (``[B, T, C, H, W]``) are fed frame by frame.
    """

    def __init__(
        self,
        *args: Any,
        solver_max_iter: int = 30,
        solver_tol: float | None = None,
        solver_memory: int | None = None,
        residual_warning: float = 0.1,
        warmup_steps: int = 0,
        solver: Solver = "broyden",
        simulation_bn_update: bool = False,
        event_bn_stats: EventBNStats = "batchnorm",
        lif_event_overwrite: bool = False,
        **kwargs: Any,
    ) -> None:
        if solver_max_iter < 0:
            raise ValueError(f"solver_max_iter must be >= 0, got {solver_max_iter}")
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        if event_bn_stats not in EVENT_BN_STATS:
            raise ValueError(f"event_bn_stats must be one of {EVENT_BN_STATS}, got {event_bn_stats!r}")
        warmup_steps = checked_warmup_steps(warmup_steps)
        kwargs.setdefault("backbone", "ide_conv")
        super().__init__(*args, **kwargs)
        if not isinstance(self.backbone, FeedbackSNN):
            raise ValueError(
                f"IDE needs a feedback backbone exposing its equilibrium map (ide_conv, ide_fc, ide_alexnet_f, "
                f"ide_cifarnet_f), got {type(self.backbone).__name__}"
            )
        self.solver_max_iter = int(solver_max_iter)
        self.solver_tol = solver_tol
        self.solver_memory = solver_memory
        self.residual_warning = float(residual_warning)
        self.warmup_steps = warmup_steps
        self.solver = solver
        self.simulation_bn_update = bool(simulation_bn_update)
        self.event_bn_stats = event_bn_stats
        self.lif_event_overwrite = bool(lif_event_overwrite)
        self.solver_results: list[BroydenResult] = []  # solves of the last backward pass
        self.solver_not_converged = 0  # running count over the whole fit
        self.solver_calls = 0

    def neuron_spec(self, neuron: Mapping[str, Any] | None) -> Any:
        return build_neuron_factory(neuron, default=IDE_IF)

    @property
    def net(self) -> FeedbackSNN:
        return self.backbone  # type: ignore[return-value]

    # ----------------------------------------------------------------------------- forward
    def _inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """``(input, static)``: a static image is one constant input, everything else ``[T, B, ...]``."""
        if x.dim() == 4 and self.encoding == "direct":
            self._check_frame(tuple(x.shape[1:]), x.shape)
            return x, True
        return self.encode(x), False

    def _prepared(self, x: torch.Tensor) -> tuple[torch.Tensor, bool, torch.Tensor | None, BatchStats | None]:
        """``(simulation input, static, map input x̄, frame statistics)`` of batch ``x``; x̄ and the
        statistics only in training (the frame statistics: event input with an input BatchNorm only)."""
        inp, static = self._inputs(x)
        if not self.training:
            return inp, static, None, None
        if static:
            return inp, static, inp, None
        net = self.net
        x_bar = net.average_input(inp)
        stats = None
        if net.input_layer.bn is not None:
            with torch.no_grad():
                official = self.event_bn_stats == "official"
                stats = net.input_layer.batch_stats(x_bar, unbiased=official, eps=1e-8 if official else None)
        if self.lif_event_overwrite and net.leak != 1.0:
            inp, x_bar = official_lif_event_inputs(inp, x_bar, net.leak)
        return inp, static, x_bar, stats

    def simulate(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer (weighted) average rates of the network simulated on batch ``x`` (no graph), with the
        inputs and statistics of a training step in training mode."""
        inp, static, _, stats = self._prepared(x)
        return self._simulate(inp, static, stats)

    def _simulate(self, inp: torch.Tensor, static: bool, stats: BatchStats | None) -> list[torch.Tensor]:
        reset_states(self.net)
        with torch.no_grad(), contextlib.ExitStack() as stack:
            if self.training:  # the BatchNorm recipe of the paper's simulation (module docstring, step 1)
                if not self.simulation_bn_update:
                    stack.enter_context(frozen_batchnorm_stats(self.net.input_layer))
                stack.enter_context(hidden_batchnorm_eval([self.net.hidden_layers, self.net.feedback]))
            return self.net.simulate(inp, self.T if static else None, static, stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[1, B, K]`` of the equilibrium rate; in training, with the implicit gradient attached."""
        net = self.net
        inp, static, x_bar, stats = self._prepared(x)
        a_sim = self._simulate(inp, static, stats)[-1]
        if x_bar is None or not torch.is_grad_enabled():
            return net.classify(a_sim).unsqueeze(0)
        drive = net.input_layer(x_bar)
        a_map = net.equilibrium_map(a_sim, drive)
        if self.solver_max_iter > 0:
            drive_const = drive.detach()

            def solve(grad: torch.Tensor) -> torch.Tensor:
                # the solve runs in (at least) float32 also under mixed precision
                dtype = torch.promote_types(grad.dtype, torch.float32)
                result = implicit_backward(net, a_sim.to(dtype), drive_const.to(dtype), grad.to(dtype),
                                           self.solver_max_iter, self.solver_tol, self.solver_memory, self.solver)
                self._record(result)
                return result.solution.to(grad.dtype)

            a_map = ImplicitEquilibriumGradient.apply(a_map, solve)
        return net.classify(_ValueOf.apply(a_map, a_sim)).unsqueeze(0)

    # ----------------------------------------------------------------------------- solver reporting
    def _record(self, result: BroydenResult) -> None:
        self.solver_results.append(result)
        self.solver_calls += 1
        if not result.converged:
            self.solver_not_converged += 1
        if result.protective_break:
            rank_zero_warn(
                f"IDE: the backward {self.solver} solve diverged (protective break after {result.steps} steps, relative "
                f"residual {result.relative_residual:.3g}); the lowest-residual iterate was used"
            )
        elif result.relative_residual > self.residual_warning:
            rank_zero_warn(
                f"IDE: the backward {self.solver} solve ended at relative residual {result.relative_residual:.3g} after "
                f"{result.steps} steps (warning level {self.residual_warning:g}); the gradient is inexact — "
                "consider more solver_max_iter or a smaller feedback gain"
            )

    def on_after_backward(self) -> None:
        if not self.solver_results:
            return
        results, self.solver_results = self.solver_results, []
        n = float(len(results))
        self.log_dict(
            {
                "ide/solver_steps": sum(r.steps for r in results) / n,
                "ide/solver_rel_residual": sum(r.relative_residual for r in results) / n,
                "ide/solver_residual": sum(r.residual for r in results) / n,
                "ide/solver_not_converged": float(self.solver_not_converged),
            },
            on_step=True,
            on_epoch=False,
        )

    def compute_loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss_kind == "tet":
            raise ValueError("IDE reads out the equilibrium rate once; loss: tet (per-step outputs) does not apply, use ce")
        return super().compute_loss(outputs, target)

    def configure_callbacks(self) -> list[Any]:
        """As :class:`SpikingClassifier`, with the per-neuron firing-rate distribution switched on (the
        paper's ``get_rate_cifar_alexnetf.py`` prints each layer's average rate; the distribution adds
        percentiles and a histogram)."""
        from ..callbacks import FiringRateMonitor

        callbacks = list(super().configure_callbacks())
        for cb in callbacks + list(self._trainer.callbacks if self._trainer is not None else []):
            if isinstance(cb, FiringRateMonitor):
                cb.distribution = True
        return callbacks
