"""Fake quantization: level counts, the STBP scheme, and the straight-through estimator."""
import pytest
import torch
from torch import nn

from lightning_snn.quantization import FakeQuantize, QuantSpec, quantize_model, quantize_symmetric, quantized_layers


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("per_channel", [False, True])
def test_at_most_2_pow_bits_values(bits, per_channel):
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3)
    wq = FakeQuantize(QuantSpec(bits, per_channel))(w)
    groups = wq if per_channel else wq.unsqueeze(0)
    for g, src in zip(groups, w if per_channel else w.unsqueeze(0)):
        assert g.unique().numel() <= 2**bits
        codes = g * (2 ** (bits - 1) - 1) / src.abs().max()  # on the integer grid of its own scale
        torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)
    assert wq.unique().numel() >= min(2 ** (bits - 1), 20)  # and the grid is actually used


def test_matches_stbp_repository_formula():
    """STBP repo: scale = (2^(b-1) - 1) / max|w|;  w_q = round(w · scale) / scale (per tensor)."""
    torch.manual_seed(1)
    w = torch.randn(5, 7)
    bits = 4
    scale = (2 ** (bits - 1) - 1) / w.abs().max()
    expected = torch.round(w * scale) / scale
    torch.testing.assert_close(FakeQuantize(QuantSpec(bits))(w), expected)
    codes, s = quantize_symmetric(w, QuantSpec(bits))
    assert codes.dtype == torch.int8 and codes.abs().max() == 7
    torch.testing.assert_close(codes.float() / s, expected)


def test_per_channel_scales():
    w = torch.tensor([[1.0, -0.5], [10.0, 2.5]])
    codes, scale = quantize_symmetric(w, QuantSpec(8, per_channel=True))
    torch.testing.assert_close(scale.flatten(), torch.tensor([127.0, 12.7]))
    assert codes.tolist() == [[127, -64], [127, 32]]


def test_ste_passes_gradient_inside_range_and_zeroes_outside():
    w = torch.tensor([-3.0, -0.9, -0.2, 0.0, 0.3, 0.8, 1.0, 4.0], requires_grad=True)
    fq = FakeQuantize(QuantSpec(4, percentile=75.0))  # range = 75th percentile of |w| -> clips the tails
    rng = torch.quantile(w.detach().abs(), 0.75).item()
    out = fq(w)
    assert out.detach().abs().max() <= rng + 1e-6
    upstream = torch.arange(1.0, 9.0)
    out.backward(upstream)
    step = rng / 7
    inside = w.detach().abs() <= rng + step / 2
    assert inside.any() and (~inside).any()
    torch.testing.assert_close(w.grad, upstream * inside.float())


def test_quantize_model_keeps_parameter_identity():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(4, 3))
    params_before = list(model.parameters())
    names = quantize_model(model, QuantSpec(8))
    assert names == ["0", "2"] and [n for n, _ in quantized_layers(model)] == ["0", "2"]
    assert {id(p) for p in model.parameters()} == {id(p) for p in params_before}
    assert quantize_model(model, QuantSpec(8)) == []  # idempotent
    with pytest.raises(ValueError, match="bits must be in 2..8"):
        QuantSpec(9)
