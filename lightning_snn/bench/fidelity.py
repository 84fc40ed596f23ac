"""Fidelity checks of the benchmarks: how far one training step of one computation is from another's.

Two models with identical weights take one training step on the identical batch (usually in float64, with
no dropout, so neither draws random masks); :func:`step_gradients` collects each one's parameter gradients
and :func:`gradient_difference` compares them with

    rel_l2 = ‖g_a - g_b‖ / ‖g_b‖   over all compared tensors together,

the same figure per tensor (its maximum and where), the norm ratio ``‖g_a‖ / ‖g_b‖`` and the cosine between
the two whole gradients. ``b`` is the reference (the official computation, or the library's default).
``benchmarks/ide_fidelity.py`` and ``benchmarks/rate_bp_single_step_options.py`` are built on it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["StepGradients", "gradient_difference", "mean_over_time", "step_gradients"]


def mean_over_time(outputs: torch.Tensor) -> torch.Tensor:
    """Rate readout of ``[T, B, C]`` outputs: the mean over time."""
    return outputs.mean(0)


@dataclasses.dataclass
class StepGradients:
    """One training step's parameter gradients (by name, in ``named_parameters`` order), loss and logits."""

    grads: dict[str, torch.Tensor]
    loss: torch.Tensor
    logits: torch.Tensor


def step_gradients(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    readout: Callable[[torch.Tensor], torch.Tensor] = mean_over_time,
    include: Callable[[str], bool] = lambda name: True,
) -> StepGradients:
    """Forward ``x`` in training mode, cross-entropy of ``readout(model(x))`` against ``y``, backward; the
    gradients of the parameters whose name passes ``include`` (parameters that got none are left out)."""
    model.train()
    model.zero_grad(set_to_none=True)
    logits = readout(model(x))
    loss = F.cross_entropy(logits, y)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if include(n) and p.grad is not None}
    return StepGradients(grads=grads, loss=loss.detach(), logits=logits.detach())


def gradient_difference(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], *, min_rel_norm: float = 0.0
) -> dict[str, object]:
    """Compare gradients ``a`` with the reference ``b`` over the tensors of ``b`` (``a`` must have them all).

    Returns ``rel_l2`` (whole gradient), ``per_tensor`` (name -> relative L2 difference of that tensor),
    ``max_tensor`` / ``max_tensor_rel`` (the largest of them), ``norm_ratio`` and ``cosine``. Tensors whose
    reference norm is at most ``min_rel_norm`` times the whole reference norm (gradients that are round-off,
    such as a conv bias before BatchNorm) are left out of the per-tensor figures; 0 leaves out only zeros.
    """
    missing = [n for n in b if n not in a]
    if missing:
        raise KeyError(f"gradient_difference: the compared gradients lack {missing}")
    if not b:
        raise ValueError("gradient_difference: no reference gradients to compare with")
    va, vb = torch.cat([a[n].flatten() for n in b]), torch.cat([b[n].flatten() for n in b])
    floor = min_rel_norm * float(vb.norm())
    per_tensor = {n: float((a[n] - b[n]).norm() / b[n].norm()) for n in b if float(b[n].norm()) > floor}
    worst = max(per_tensor, key=per_tensor.__getitem__)
    return {
        "rel_l2": float((va - vb).norm() / vb.norm()),
        "per_tensor": per_tensor,
        "max_tensor": worst,
        "max_tensor_rel": per_tensor[worst],
        "norm_ratio": float(va.norm() / vb.norm()),
        "cosine": float(F.cosine_similarity(va, vb, dim=0)),
    }
