"""Surrogate gradients: a Heaviside step in the forward pass, a smooth pseudo-derivative in backward.

Each class wraps the autograd function of SpikingJelly that computes exactly the published rule, and
exposes :meth:`SurrogateGradient.derivative` so that fused multi-step neurons (``backends/``) can
evaluate the same pseudo-derivative inside their own backward pass.

The spike is ``Θ(x) = 1 if x >= 0 else 0`` with ``x = H - V_th`` (SpikingJelly's convention; the STBP
repository uses ``x > 0``, which differs only on the measure-zero set ``x == 0``).
"""
from __future__ import annotations


import torch
from spikingjelly.activation_based import surrogate as sj_surrogate
from torch import nn

__all__ = ["SurrogateGradient", "Rectangular", "Sigmoid", "ATan", "PiecewiseQuadratic", "Erf", "build_surrogate"]


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


class _OffCentreRect(torch.autograd.Function):
    """Heaviside ``Θ(x)`` forward; backward ``grad · α · 1{|x - c| < 1/(2α)}`` (a window centred at ``x = c``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float, center: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha, ctx.center = alpha, center
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * _rect_window(x - ctx.center, ctx.alpha), None, None


def _rect_window(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return alpha * ((x.abs() < 0.5 / alpha).to(x.dtype))


class Rectangular(SurrogateGradient):
    """Rectangular window of STBP (Wu et al., 2018, Eq. 12 / curve h1): ``σ'(x) = 1/a · 1{|x - c| < a/2}``.

    ``width`` is ``a``; ``x = H - V_th`` as everywhere in this module, so the default ``center c = 0`` puts the
    window at the threshold (the STBP / tdBN form, and the STBP repository's README-era code ``1de278bf``:
    ``|u - V_th| < 0.5`` with height 1, i.e. ``width=1``). That repository's HEAD (``8769231b``,
    ``models/layers.py``) fires at ``u > V_th`` but centres the window at ``u = 0`` (``|u| < 0.5``): set
    ``center = -V_th`` to reproduce it (``center: -0.4`` with its ``V_th = 0.4``). With ``center = 0`` this
    wraps SpikingJelly's ``Rect`` with ``alpha = 1 / width``.
    """

    _function = sj_surrogate.rect
    _backward = staticmethod(sj_surrogate.rect_backward)

    def __init__(self, width: float = 1.0, center: float = 0.0) -> None:
        if width <= 0:
            raise ValueError(f"Rectangular: width must be > 0, got {width}")
        super().__init__(alpha=1.0 / width)
        self.width = float(width)
        self.center = float(center)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.center == 0.0:
            return super().forward(x)
        return _OffCentreRect.apply(x, self.alpha, self.center)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        if self.center == 0.0:
            return super().derivative(x)
        return _rect_window(x - self.center, self.alpha)

    def extra_repr(self) -> str:
        return f"width={self.width}" + (f", center={self.center}" if self.center else "")


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
    """Piecewise-quadratic surrogate, a triangular window (SpikingJelly ``PiecewiseQuadratic``, Esser et al.
    2016): ``σ'(x) = α - α²·|x|`` for ``|x| <= 1/α``, else 0; the primitive is piecewise quadratic.

    α is the peak height and 1/α the half-width (area 1). The default surrogate of the SLTT code
    (``-surrogate triangle``, α = 1).
    """

    _function = sj_surrogate.piecewise_quadratic
    _backward = staticmethod(sj_surrogate.piecewise_quadratic_backward)

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)


class Erf(SurrogateGradient):
    """Gaussian (error-function) surrogate (SpikingJelly ``Erf``; used by Esser et al. 2015 and among the
    curves of STBP, Wu et al. 2018): ``σ'(x) = α/√π · exp(-α²x²)``, the derivative of ``erfc(-αx)/2``.

    α is SpikingJelly's: a Gaussian of standard deviation ``1/(α√2)`` with area 1.
    """

    _function = sj_surrogate.erf
    _backward = staticmethod(sj_surrogate.erf_backward)

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__(alpha)


_SURROGATES: dict[str, type[SurrogateGradient]] = {
    "rectangular": Rectangular,
    "rect": Rectangular,
    "sigmoid": Sigmoid,
    "atan": ATan,
    "triangle": PiecewiseQuadratic,
    "piecewise_quadratic": PiecewiseQuadratic,
    "erf": Erf,
}


def build_surrogate(spec: str | SurrogateGradient | None, **kwargs: float) -> SurrogateGradient:
    """Build a surrogate from a name (``rectangular``, ``sigmoid``, ``atan``, ``piecewise_quadratic`` alias
    ``triangle``, ``erf``) or pass one through."""
    if spec is None:
        return Rectangular(**kwargs)
    if isinstance(spec, SurrogateGradient):
        return spec
    try:
        return _SURROGATES[spec.lower()](**kwargs)
    except KeyError:
        raise ValueError(f"unknown surrogate {spec!r}; choose one of {sorted(set(_SURROGATES))}") from None


