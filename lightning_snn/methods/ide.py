"""IDE: training feedback SNNs by implicit differentiation on the equilibrium state (Xiao et al., NeurIPS 2021).

The network is a :class:`~lightning_snn.backbones.feedback.FeedbackSNN` (ARCHITECTURE.md, mechanism 3:
a structural backbone exposing its equilibrium map). One training step:

1. **Forward** (Sec. 4.1): simulate the SNN for ``T`` steps without any autograd graph and take the last
   layer's (weighted) average firing rate ``a`` as the equilibrium ``a* = f(a*, x̄)``. In training mode
   the input layer's BatchNorm uses batch statistics without touching the running averages, and the
   hidden BatchNorms use their running statistics (as the paper's code).
2. **Graph of one map evaluation**: ``a' = f(a, x̄)`` with gradients; this is the only graph kept, so
   memory does not depend on ``T``. Its BatchNorms run in training mode (the running statistics are
   updated here, once per step). The classifier sees the value ``a`` (the simulated rate) and sends its
   gradient into ``a'``.
3. **Backward** (Sec. 4.2, Eq. 12): the incoming ``∂L/∂a*`` is replaced by the solution ``β`` of
   ``β = J_f^T β + ∂L/∂a*`` (``J_f = ∂f/∂a`` at ``a``, hidden BatchNorms in eval mode), found with
   :func:`~lightning_snn.methods.broyden.broyden` (30 iterations, the paper's tolerance, lowest-residual
   fallback); backpropagating ``β`` through the graph of step 2 gives ``∂L/∂θ = β^T ∂f/∂θ``.

Each solve's iterations and residual are logged (``ide/solver_steps``, ``ide/solver_rel_residual``,
``ide/solver_not_converged`` — a running count of solves that stopped above the tolerance); solves that
end far from a solution (relative residual above ``residual_warning``) or diverge also raise a warning.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn

from ..backbones.feedback import IDE_IF, FeedbackSNN, frozen_batchnorm_stats, hidden_batchnorm_eval
from ..neurons import build_neuron_factory, reset_states
from .base import SpikingClassifier
from .broyden import BroydenResult, broyden
from .warmup import LinearWarmup, checked_warmup_steps

__all__ = ["IDE", "ImplicitEquilibriumGradient", "implicit_backward"]

def implicit_backward(
    net: FeedbackSNN,
    a_star: torch.Tensor,
    drive: torch.Tensor,
    grad: torch.Tensor,
    max_iter: int = 30,
    tol: float | None = None,
    memory: int | None = None,
) -> BroydenResult:
    """Solve ``β = J^T β + grad`` (IDE Eq. 12) at the equilibrium ``a_star`` by Broyden's method.

    ``J = ∂f/∂a`` of ``net.equilibrium_map(·, drive)`` at ``a_star``, with the hidden BatchNorms in eval
    mode; ``drive`` is treated as a constant. Each iteration costs one vector-Jacobian product.
    """
    with torch.enable_grad():
        a0 = a_star.detach().requires_grad_(True)
        with hidden_batchnorm_eval([net.hidden_layers, net.feedback]):
            y = net.equilibrium_map(a0, drive.detach())

    def residual(beta: torch.Tensor) -> torch.Tensor:
        (jt,) = torch.autograd.grad(y, a0, beta, retain_graph=True)
        return jt + grad - beta  # the fixed-point residual form Broyden starts from (inverse Jacobian -I)

    return broyden(residual, torch.zeros_like(grad), max_iter=max_iter, tol=tol, memory=memory)


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
        solver_max_iter: Broyden iteration cap of the backward solve (the paper's ``threshold``: 30);
            0 skips the solve (``β = ∂L/∂a*``).
        solver_tol: absolute residual tolerance; None: the paper's ``2e-10 · sqrt(numel)``.
        solver_memory: rank-one updates kept by Broyden; None: ``min(solver_max_iter, 27)``.
        residual_warning: warn when a solve ends with a relative residual above this.
        warmup_steps: linear learning-rate warm-up over the first steps (400 for the CIFAR networks).
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
        **kwargs: Any,
    ) -> None:
        if solver_max_iter < 0:
            raise ValueError(f"solver_max_iter must be >= 0, got {solver_max_iter}")
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

    def simulate(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer (weighted) average rates of the network simulated on batch ``x`` (no graph)."""
        return self._simulate(*self._inputs(x))

    def _simulate(self, inp: torch.Tensor, static: bool) -> list[torch.Tensor]:
        reset_states(self.net)
        with torch.no_grad(), contextlib.ExitStack() as stack:
            if self.training:  # the BatchNorm recipe of the paper's simulation (module docstring, step 1)
                stack.enter_context(frozen_batchnorm_stats(self.net.input_layer))
                stack.enter_context(hidden_batchnorm_eval([self.net.hidden_layers, self.net.feedback]))
            return self.net.simulate(inp, self.T if static else None, static)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[1, B, K]`` of the equilibrium rate; in training, with the implicit gradient attached."""
        net = self.net
        inp, static = self._inputs(x)
        a_sim = self._simulate(inp, static)[-1]
        if not (self.training and torch.is_grad_enabled()):
            return net.classify(a_sim).unsqueeze(0)
        x_bar = inp if static else net.average_input(inp)
        drive = net.input_layer(x_bar)
        a_map = net.equilibrium_map(a_sim, drive)
        if self.solver_max_iter > 0:
            drive_const = drive.detach()

            def solve(grad: torch.Tensor) -> torch.Tensor:
                # the solve runs in (at least) float32 also under mixed precision
                dtype = torch.promote_types(grad.dtype, torch.float32)
                result = implicit_backward(net, a_sim.to(dtype), drive_const.to(dtype), grad.to(dtype),
                                           self.solver_max_iter, self.solver_tol, self.solver_memory)
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
                f"IDE: the backward Broyden solve diverged (protective break after {result.steps} steps, relative "
                f"residual {result.relative_residual:.3g}); the lowest-residual iterate was used"
            )
        elif result.relative_residual > self.residual_warning:
            rank_zero_warn(
                f"IDE: the backward Broyden solve ended at relative residual {result.relative_residual:.3g} after "
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
        """As :class:`SpikingClassifier`, with the per-neuron firing-rate distribution of the paper's
        ``get_rate`` statistics switched on."""
        from ..callbacks import FiringRateMonitor

        callbacks = list(super().configure_callbacks())
        for cb in callbacks + list(self._trainer.callbacks if self._trainer is not None else []):
            if isinstance(cb, FiringRateMonitor):
                cb.distribution = True
        return callbacks
