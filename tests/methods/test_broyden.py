"""Broyden's method: solves linear systems to the requested tolerance and reports when it does not."""
from __future__ import annotations

import math

import pytest
import torch

from lightning_snn.methods.broyden import broyden, paper_tolerance


def _linear_system(batch: int = 3, n: int = 30, contraction: float = 0.6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, n, n, generator=g, dtype=torch.float64)
    q = q / torch.linalg.matrix_norm(q, ord=2)[:, None, None] * contraction  # ‖Q‖ = 0.6
    a = torch.eye(n, dtype=torch.float64) - q  # the IDE system (I - J^T) with ρ(J) < 1
    b = torch.randn(batch, n, generator=g, dtype=torch.float64)
    return a, b


def test_solves_a_known_linear_system_to_the_requested_tolerance():
    a, b = _linear_system()
    result = broyden(lambda x: b - torch.einsum("bij,bj->bi", a, x), torch.zeros_like(b), max_iter=100, tol=1e-10, memory=100)
    exact = torch.linalg.solve(a, b)
    assert result.converged and not result.protective_break
    assert result.residual < 1e-10
    assert float(torch.linalg.vector_norm(torch.einsum("bij,bj->bi", a, result.solution) - b)) < 1e-10
    torch.testing.assert_close(result.solution, exact, rtol=1e-8, atol=1e-9)
    assert 0 < result.steps < 100
    assert result.trace[0] == pytest.approx(float(torch.linalg.vector_norm(b)))


def test_non_convergence_is_reported_with_the_lowest_residual_iterate():
    a, b = _linear_system(contraction=0.95)
    result = broyden(lambda x: b - torch.einsum("bij,bj->bi", a, x), torch.zeros_like(b), max_iter=3, tol=1e-12)
    assert not result.converged
    assert result.steps == 3
    assert result.residual == min(result.trace) > result.tol
    assert 0.0 < result.relative_residual < 1.0
    # the returned iterate is the one whose residual was reported
    again = float(torch.linalg.vector_norm(torch.einsum("bij,bj->bi", a, result.solution) - b))
    assert again == pytest.approx(result.residual, rel=1e-9)


def test_paper_tolerance_and_limited_memory():
    assert paper_tolerance(100) == pytest.approx(2e-9)
    a, b = _linear_system(n=40)
    full = broyden(lambda x: b - torch.einsum("bij,bj->bi", a, x), torch.zeros_like(b), max_iter=80, tol=1e-9, memory=80)
    short = broyden(lambda x: b - torch.einsum("bij,bj->bi", a, x), torch.zeros_like(b), max_iter=80, tol=1e-9, memory=5)
    assert full.converged
    assert math.isfinite(short.residual) and short.residual < 1e-3 * short.initial_residual  # still descends
    assert short.converged or short.steps == 80


def test_zero_iterations_and_exact_guess():
    a, b = _linear_system()
    none = broyden(lambda x: b - torch.einsum("bij,bj->bi", a, x), torch.zeros_like(b), max_iter=0)
    assert none.steps == 0 and not none.converged and torch.equal(none.solution, torch.zeros_like(b))
    exact = torch.linalg.solve(a, b)
    hit = broyden(lambda x: b - torch.einsum("bij,bj->bi", a, x), exact, max_iter=10, tol=1e-8)
    assert hit.steps == 0 and hit.converged


def test_divergence_triggers_a_protective_break():
    # G(x) = 3x + 1 has the Jacobian +3I, opposite in sign to the initial estimate -I, so the first step
    # moves away from the root; with a small divergence factor this must be flagged, never silent.
    result = broyden(lambda x: 3.0 * x + 1.0, torch.zeros(2, 4, dtype=torch.float64), max_iter=10, tol=1e-12, divergence_factor=1.5)
    assert result.protective_break and not result.converged
    assert result.residual == min(result.trace)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_iter"):
        broyden(lambda x: x, torch.zeros(1, 2), max_iter=-1)
    with pytest.raises(FloatingPointError):
        broyden(lambda x: x * float("nan"), torch.ones(1, 2))
