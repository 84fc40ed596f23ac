"""Surrogate pseudo-derivatives equal the published formulas."""
import math

import pytest
import torch

from lightning_snn.neurons import ATan, Rectangular, Sigmoid, build_surrogate

X = torch.linspace(-2, 2, 401, dtype=torch.float64)


def test_rectangular_is_stbp_window():
    # STBP repository: |u - Vth| < aa with aa = 0.5, height 1 / (2 aa)
    aa = 0.5
    expected = (X.abs() < aa).double() / (2 * aa)
    torch.testing.assert_close(Rectangular(width=2 * aa).derivative(X), expected)
    narrow = Rectangular(width=0.5).derivative(X)
    torch.testing.assert_close(narrow, (X.abs() < 0.25).double() * 2.0)


def test_sigmoid_and_atan_formulas():
    a = 4.0
    sg = torch.sigmoid(a * X)
    torch.testing.assert_close(Sigmoid(a).derivative(X), a * sg * (1 - sg))
    a = 2.0
    torch.testing.assert_close(ATan(a).derivative(X), a / 2 / (1 + (math.pi / 2 * a * X) ** 2))


@pytest.mark.parametrize("sg", [Rectangular(), Sigmoid(), ATan()])
def test_forward_is_heaviside_and_backward_uses_derivative(sg):
    x = X.clone().requires_grad_()
    y = sg(x)
    assert torch.equal(y.detach(), (X >= 0).double())
    y.sum().backward()
    torch.testing.assert_close(x.grad, sg.derivative(X))


def test_build_surrogate_by_name():
    assert isinstance(build_surrogate("atan", alpha=3.0), ATan)
    with pytest.raises(ValueError, match="unknown surrogate 'nope'"):
        build_surrogate("nope")
