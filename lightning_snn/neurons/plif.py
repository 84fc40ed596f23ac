"""Parametric LIF (PLIF): a LIF neuron whose membrane time constant is learned.

Fang et al., "Incorporating Learnable Membrane Time Constant to Enhance Learning of Spiking Neural
Networks", ICCV 2021, Sec. 3: the discrete LIF charge equation with the time constant reparametrised,
in SpikingJelly's form (``ParametricLIFNode``, written by the paper's authors)::

    H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / τ        decay_input=True  (the paper's charge equation)
    H[t] = V[t-1] - (V[t-1] - V_reset) / τ + X[t]          decay_input=False
    1/τ = sigmoid(w),   w a learnable scalar per layer, initialised to w0 = -ln(τ0 - 1)  (so 1/τ0 = sigmoid(w0))

followed by the fire / reset equations of :mod:`.nodes`. The sigmoid keeps ``τ ∈ (1, ∞)`` whatever
``w`` becomes. In the notation of :mod:`.nodes` this is the charge ``H = c + λ·(V - c) + k·X`` with
``λ = 1 - sigmoid(w)`` and ``k = sigmoid(w)`` (``decay_input``) or ``k = 1``, so it runs through the same
recursion; λ and k are 0-d tensors here, and the backends return their gradients (from which autograd
reaches ``w``): ``∂L/∂w = sigmoid'(w) · Σ_t Σ_i ∂L/∂H[t]·(k'·X[t] - (V[t-1] - c))`` with ``k' = 1`` for
``decay_input`` and 0 otherwise. V_reset = ``v_reset`` for a hard reset; with ``v_reset=None``
(reset by subtraction) the leak pulls towards 0.

Backends: ``torch`` and ``inductor`` (the leak enters the compiled sweep as a tensor argument, so
training ``w`` does not recompile). ``triton`` runs SpikingJelly's fused PLIF kernels (CUDA).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .backends import Backend
from .nodes import BaseNode, StepMode
from .surrogate import Sigmoid, SurrogateGradient

__all__ = ["PLIFNode"]


class PLIFNode(BaseNode):
    """Parametric LIF neuron (module docstring), SpikingJelly's ``ParametricLIFNode`` defaults.

    Args:
        init_tau: initial membrane time constant τ0 > 1 (the paper and SpikingJelly: 2.0).
        decay_input: scale the input by 1/τ as well (the paper's Eq. 4; SpikingJelly's default True).
        surrogate: default SpikingJelly's ``Sigmoid(alpha=4)``, the default of ``ParametricLIFNode``.
        Other arguments as :class:`~lightning_snn.neurons.nodes.BaseNode` (v_reset 0.0: hard reset to 0;
        None: reset by subtraction).
    """

    def __init__(
        self,
        init_tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: SurrogateGradient | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "m",
        learnable_threshold: bool = False,
        backend: Backend = "torch",
    ) -> None:
        init_tau = float(init_tau)
        if not 1.0 < init_tau < math.inf:
            raise ValueError(f"PLIFNode: init_tau (initial membrane time constant) must be a finite number > 1, got {init_tau}")
        surrogate = Sigmoid(4.0) if surrogate is None else surrogate
        # the backend is checked once w exists (it reads the leak)
        super().__init__(v_threshold, v_reset, surrogate, detach_reset, step_mode, learnable_threshold, "torch")
        self.decay_input = bool(decay_input)
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))
        self.backend = backend
        self.check_backend()

    @property
    def decay(self) -> torch.Tensor:  # type: ignore[override]
        """λ = 1 - 1/τ = 1 - sigmoid(w)."""
        return 1.0 - torch.sigmoid(self.w)

    @property
    def input_scale(self) -> torch.Tensor | float:  # type: ignore[override]
        """k = 1/τ = sigmoid(w) with ``decay_input``, else 1."""
        return torch.sigmoid(self.w) if self.decay_input else 1.0

    @property
    def tau(self) -> float:
        """The current membrane time constant τ = 1 / sigmoid(w)."""
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def extra_repr(self) -> str:
        reset = "subtract" if self.v_reset is None else f"to {self.v_reset}"
        return (
            f"tau={self.tau:.4g}, decay_input={self.decay_input}, v_threshold={float(self.v_threshold):g}, "
            f"reset={reset}, detach_reset={self.detach_reset}, step_mode={self.step_mode!r}"
            + ("" if self.backend == "torch" else f", backend={self.backend!r}")
        )
