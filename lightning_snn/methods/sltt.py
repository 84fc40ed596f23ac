"""SLTT: spatial learning through time (Meng et al., ICCV 2023; github.com/qymeng94/SLTT).

BPTT's gradient of a spiking network has a spatial part (through the layers at one step) and a temporal
part (through the membrane potential from step to step). The paper shows the temporal part contributes
little (Sec. 4.1, Fig. 2) and drops it (Eq. 10-11): with ``δ_l[t] = ∂L/∂u_l[t]``,

    δ_l[t] = ∂L/∂s_l[t] · σ'(u_l[t] - V_th)                 (no ``∂u_l[t+1]/∂u_l[t]`` term)
    ∂L/∂W_l = Σ_t δ_l[t] · s_{l-1}[t]^T

The method swaps the backbone's neurons for their temporally cut twins (``online_lif`` / ``online_if``,
:mod:`lightning_snn.neurons.online`) and runs the time loop outside the network with one backward
pass per step (:mod:`lightning_snn.methods._online`), as ``train_SLTT.py`` does: memory for backward is
one step's graph, independent of T, and no reverse sweep over time is needed.

**SLTT-K** (Sec. 4.3, ``train_SLTTK.py``): only ``K`` time steps, drawn uniformly without replacement
for every batch, are backpropagated; the other steps run without a graph. The per-step loss keeps its
``1/T`` factor, as the official code. ``K = T`` is SLTT.

The official neuron (``-tau 1.1``, soft reset, threshold 1, triangle surrogate with α = 1) is
:data:`SLTT_LIF`. Any backbone built from the neuron factory works (``resnet18``, ``resnet19``,
``vggsnn``, ``preact_resnet18``, ...); nothing in it is changed.
"""
from __future__ import annotations

from typing import Any

import torch

from ._online import OnlineThroughTime

__all__ = ["SLTT", "SLTT_LIF"]

#: the LIF neuron of the official SLTT commands: ``-tau 1.1`` (λ = 1 - 1/τ), ``decay_input=False``, reset by
#: subtraction (``v_reset=None``), V_th = 1, ``-surrogate triangle`` (SpikingJelly PiecewiseQuadratic, α = 1)
SLTT_LIF: dict[str, Any] = {
    "type": "lif",
    "tau": 1.1,
    "v_threshold": 1.0,
    "v_reset": None,
    "surrogate": {"name": "triangle", "alpha": 1.0},
}


class SLTT(OnlineThroughTime):
    """SLTT / SLTT-K training (module docstring).

    Args:
        K: backpropagate only K random time steps per batch (SLTT-K); None (default) backpropagates all.
        seed: seed of the generator that draws SLTT-K's steps (None: drawn from torch's global generator,
            as the official ``torch.randperm(T)[:K]``).
        **kwargs: see :class:`~lightning_snn.methods._online.OnlineThroughTime`. ``neuron`` defaults to
            :data:`SLTT_LIF`; the per-step loss defaults to the official ``-loss_lambda 0.05`` with the
            constant MSE target (``-loss_means 1.0``); ``mse_target: onehot`` is ``-mse_n_reg``.
    """

    default_neuron = SLTT_LIF
    method_name = "SLTT"

    def __init__(self, *args: Any, K: int | None = None, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if K is not None and not 1 <= K <= self.T:
            raise ValueError(f"SLTT: K (backpropagated steps) must lie in [1, T={self.T}], got {K}")
        self.K = K
        self._generator: torch.Generator | None = None
        if seed is not None:
            self._generator = torch.Generator().manual_seed(int(seed))

    def backward_steps(self, T: int) -> list[bool]:
        """All steps for SLTT; K distinct steps drawn uniformly for SLTT-K (``torch.randperm(T)[:K]``)."""
        if self.K is None or self.K >= T:
            return [True] * T
        chosen = torch.randperm(T, generator=self._generator)[: self.K].tolist()
        return [t in chosen for t in range(T)]
