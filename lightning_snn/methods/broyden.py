"""Broyden's method for the root-finding problems of implicit differentiation.

IDE (Xiao et al., NeurIPS 2021, Sec. 4.2) never stores the simulation: the gradient of the loss with respect
to the equilibrium ``a* = f(a*, x)`` is the solution ``β`` of the linear system

    β = (∂f/∂a*)^T β + ∂L/∂a*          (Eq. 12)

which is solved as the root of ``G(β) = J^T β + ∂L/∂a* - β`` with the "good" Broyden method: the inverse
Jacobian of ``G`` starts at ``-I`` (exact when ``J = 0``, so write residuals in this fixed-point form,
``G(x) = h(x) - x``) and receives one rank-one Sherman-Morrison update per iteration, so each
iteration costs one vector-Jacobian product. The stopping rule and the safeguards follow the paper's code:

* tolerance: the absolute residual ``‖G(β)‖ < 2e-10 · sqrt(numel)`` by default (``tol``);
* iteration cap: ``max_iter`` (30 in every published experiment);
* fallback: the iterate with the lowest residual is returned, not the last one, and the loop stops early
  ("protective break") when the residual grows a million-fold, so a diverging solve cannot blow up the update.

Every call returns a :class:`BroydenResult` whose ``converged`` flag and residuals the caller must report.
Each sample of the batch is its own linear system, so the low-rank updates are kept per sample.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["BroydenResult", "broyden", "paper_tolerance"]


def paper_tolerance(numel: int) -> float:
    """The absolute residual tolerance of the IDE code, ``2e-10 · sqrt(numel)``."""
    return 2e-10 * math.sqrt(numel)


@dataclass
class BroydenResult:
    """Outcome of one :func:`broyden` solve.

    Attributes:
        solution: the lowest-residual iterate, shaped like the initial guess.
        steps: iterations taken (function evaluations minus one).
        residual: ``‖G(solution)‖`` (Euclidean norm over the whole batch).
        initial_residual: ``‖G(x0)‖``.
        tol: the absolute tolerance that was asked for.
        converged: ``residual < tol``.
        protective_break: the loop stopped because the residual diverged.
        trace: the residual norm after every iteration (index 0: the initial guess).
    """

    solution: torch.Tensor
    steps: int
    residual: float
    initial_residual: float
    tol: float
    converged: bool
    protective_break: bool
    trace: list[float] = field(default_factory=list)

    @property
    def relative_residual(self) -> float:
        """``residual / initial_residual`` (0 when the initial guess was exact)."""
        return self.residual / self.initial_residual if self.initial_residual > 0 else 0.0


def _matvec(us: torch.Tensor, vs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(-I + Σ_i u_i v_i^T) x`` per sample; ``us``, ``vs``: ``[B, k, n]``, ``x``: ``[B, n]``."""
    if us.shape[1] == 0:
        return -x
    return -x + torch.einsum("bkn,bk->bn", us, torch.einsum("bkn,bn->bk", vs, x))


def _rmatvec(us: torch.Tensor, vs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x^T (-I + Σ_i u_i v_i^T)`` per sample (returned as a column like ``x``)."""
    if us.shape[1] == 0:
        return -x
    return -x + torch.einsum("bkn,bk->bn", vs, torch.einsum("bkn,bn->bk", us, x))


def broyden(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    max_iter: int = 30,
    tol: float | None = None,
    memory: int | None = None,
    divergence_factor: float = 1e6,
) -> BroydenResult:
    """Find a root of ``fn`` (a map from ``[B, ...]`` to the same shape) starting at ``x0``.

    Args:
        fn: the residual function ``G``; called once per iteration.
        x0: initial guess, batch first.
        max_iter: iteration cap (IDE: 30).
        tol: absolute tolerance on ``‖G(x)‖``; None: :func:`paper_tolerance` of ``x0.numel()``.
        memory: number of rank-one updates kept (oldest overwritten); None: ``min(max_iter, 27)`` as in
            the paper's code.
        divergence_factor: protective break when the residual exceeds this multiple of the initial one.
    """
    if max_iter < 0:
        raise ValueError(f"broyden: max_iter must be >= 0, got {max_iter}")
    shape = x0.shape
    bsz = shape[0] if x0.dim() > 0 else 1
    x = x0.reshape(bsz, -1)
    n = x.shape[1]
    tol = paper_tolerance(x0.numel()) if tol is None else float(tol)
    memory = min(max_iter, 27) if memory is None else int(memory)
    if memory < 1 and max_iter > 0:
        raise ValueError(f"broyden: memory must be >= 1, got {memory}")

    def g(v: torch.Tensor) -> torch.Tensor:
        return fn(v.reshape(shape)).reshape(bsz, n)

    gx = g(x)
    init = float(torch.linalg.vector_norm(gx))
    if not math.isfinite(init):
        raise FloatingPointError("broyden: the residual at the initial guess is not finite")
    best_x, best = x, init
    trace = [init]
    us = x.new_zeros(bsz, max(memory, 1), n)
    vs = x.new_zeros(bsz, max(memory, 1), n)
    stored = 0
    update = gx  # -(-I) gx
    steps = 0
    protective = False
    while steps < max_iter and best >= tol:
        x_new = x + update
        g_new = g(x_new)
        dx, dg = x_new - x, g_new - gx
        x, gx = x_new, g_new
        steps += 1
        norm = float(torch.linalg.vector_norm(gx))
        trace.append(norm)
        if math.isfinite(norm) and norm < best:
            best_x, best = x, norm
        if norm < tol:
            break
        if not math.isfinite(norm) or norm > divergence_factor * init:
            protective = True
            break
        k = min(stored, memory)
        vt = _rmatvec(us[:, :k], vs[:, :k], dx)
        denom = (vt * dg).sum(1, keepdim=True)
        u = (dx - _matvec(us[:, :k], vs[:, :k], dg)) / denom
        ok = torch.isfinite(u).all(1, keepdim=True) & (denom != 0)
        slot = stored % memory
        us[:, slot] = torch.where(ok, u, torch.zeros_like(u))
        vs[:, slot] = torch.where(ok, vt, torch.zeros_like(vt))
        stored += 1
        update = -_matvec(us[:, : min(stored, memory)], vs[:, : min(stored, memory)], gx)
    return BroydenResult(
        solution=best_x.reshape(shape),
        steps=steps,
        residual=best,
        initial_residual=init,
        tol=tol,
        converged=best < tol,
        protective_break=protective,
        trace=trace,
    )
