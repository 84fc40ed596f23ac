"""Surrogate gradients: a Heaviside step in the forward pass, a smooth pseudo-derivative in backward.

Each class wraps the autograd function of SpikingJelly that computes exactly the published rule, and
exposes :meth:`SurrogateGradient.derivative` so that fused multi-step neurons (``nodes.py``) can
evaluate the same pseudo-derivative inside their own backward pass.

The spike is ``Θ(x) = 1 if x >= 0 else 0`` with ``x = H - V_th`` (SpikingJelly's convention; the STBP
repository uses ``x > 0``, which differs only on the measure-zero set ``x == 0``).
"""
from __future__ import annotations


import torch
from spikingjelly.activation_based import surrogate as sj_surrogate
from torch import nn

__all__ = ["SurrogateGradient", "Rectangular", "Sigmoid", "ATan", "PiecewiseQuadratic", "build_surrogate"]


class SurrogateGradient(nn.Module):
    """Base class: ``forward(x)`` spikes with a surrogate gradient, ``derivative(x)`` is ``σ'(x)``."""

    _function: type[torch.autograd.Function]
    _backward = staticmethod(lambda grad, x, alpha: (grad, None))

    def __init__(self, alpha: float) -> None:
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"{type(self).__name__}: alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._function.apply(x, self.alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The pseudo-derivative ``σ'(x)`` used in place of the Dirac delta."""
        return type(self)._backward(torch.ones_like(x), x, self.alpha)[0]

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Rectangular(SurrogateGradient):
    """Rectangular window of STBP (Wu et al., 2018, Eq. 12 / curve h1): ``σ'(x) = 1/a · 1{|x| < a/2}``.

    ``width`` is ``a``. The STBP repository uses ``|u - V_th| < 0.5`` with height 1, i.e. ``width=1``.
    Wraps SpikingJelly's ``Rect`` with ``alpha = 1 / width``.
    """

    _function = sj_surrogate.rect
    _backward = staticmethod(sj_surrogate.rect_backward)

    def __init__(self, width: float = 1.0) -> None:
        if width <= 0:
            raise ValueError(f"Rectangular: width must be > 0, got {width}")
        super().__init__(alpha=1.0 / width)
        self.width = float(width)

    def extra_repr(self) -> str:
        return f"width={self.width}"


class Sigmoid(SurrogateGradient):
    """Sigmoid surrogate: ``σ'(x) = α·sig(αx)·(1 - sig(αx))`` (SpikingJelly ``Sigmoid``)."""

    _function = sj_surrogate.sigmoid
    _backward = staticmethod(sj_surrogate.sigmoid_backward)

    def __init__(self, alpha: float = 4.0) -> None:
        super().__init__(alpha)


class ATan(SurrogateGradient):
    """Arc-tangent surrogate: ``σ'(x) = α/2 / (1 + (π/2·α·x)^2)`` (SpikingJelly ``ATan``)."""

    _function = sj_surrogate.atan
    _backward = staticmethod(sj_surrogate.atan_backward)

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__(alpha)


class PiecewiseQuadratic(SurrogateGradient):
    """Triangular window (SpikingJelly ``PiecewiseQuadratic``): ``σ'(x) = max(0, α - α²·|x|)``.

    The default surrogate of the SLTT code (``-surrogate triangle``, α = 1).
    """

    _function = sj_surrogate.piecewise_quadratic
    _backward = staticmethod(sj_surrogate.piecewise_quadratic_backward)

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)


_SURROGATES: dict[str, type[SurrogateGradient]] = {
    "rectangular": Rectangular,
    "rect": Rectangular,
    "sigmoid": Sigmoid,
    "atan": ATan,
    "triangle": PiecewiseQuadratic,
    "piecewise_quadratic": PiecewiseQuadratic,
}


def build_surrogate(spec: str | SurrogateGradient | None, **kwargs: float) -> SurrogateGradient:
    """Build a surrogate from a name (``rectangular``, ``sigmoid``, ``atan``, ``triangle``) or pass one through."""
    if spec is None:
        return Rectangular(**kwargs)
    if isinstance(spec, SurrogateGradient):
        return spec
    try:
        return _SURROGATES[spec.lower()](**kwargs)
    except KeyError:
        raise ValueError(f"unknown surrogate {spec!r}; choose one of {sorted(set(_SURROGATES))}") from None


