"""Feedback networks of IDE: the feedback weight normalisation and the input padding of the official code."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_snn.backbones import create_backbone
from lightning_snn.backbones.feedback import spectral_normalize
from lightning_snn.neurons import reset_states


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm().clamp_min(1e-12)


def _official_sigma(mat: torch.Tensor, u: torch.Tensor, iterations: int) -> torch.Tensor:
    """σ = uᵀMv after ``iterations`` power iterations ``v = unit(Mᵀu), u = unit(Mv)`` started at ``u``
    (IDE-FSNN ``modules/optimizations.py``: ``compute_spectral_norm`` and ``WeightSpectralNorm.compute_weight``)."""
    v = None
    for _ in range(iterations):
        v = _unit(mat.t() @ u)
        u = _unit(mat @ v)
    return u @ mat @ v


@pytest.mark.parametrize(
    "op",
    [lambda: nn.Conv2d(6, 5, 3, bias=False), lambda: nn.Linear(7, 9, bias=False),
     lambda: nn.ConvTranspose2d(5, 4, 3, 2, 1, output_padding=1, bias=False)],
    ids=["conv", "linear", "conv_transpose"],
)
def test_feedback_norm_is_the_official_computation(op):
    """Gain and effective weight at steps 1 and 2 equal the official code's, stated on plain float64 tensors:
    the matrix is the weight with rows indexed by its dim 0 (for a transposed conv: input channels), the
    buffers start at N(0,1) draws u0 (then v0), the gain is σ after 10 iterations from a second pair of draws,
    and the weight of step k uses σ after k + 1 iterations from u0 (one at installation, one per forward)."""
    torch.manual_seed(0)
    module = op()
    w = module.weight.detach().clone()
    mat = torch.stack([w[i].flatten() for i in range(w.shape[0])]).double()
    h, n = mat.shape
    torch.manual_seed(7)
    spectral_normalize(module)
    torch.manual_seed(7)
    u0 = _unit(torch.randn(h).double())
    torch.randn(n)  # v0: drawn, but the first iteration overwrites it
    u_gain = _unit(torch.randn(h).double())
    gain = _official_sigma(mat, u_gain, 10)
    param = module.parametrizations.weight[0]
    torch.testing.assert_close(param.gain.detach().double(), gain, rtol=1e-5, atol=0)
    scale = gain.clamp(-1.0, 1.0)
    for step in (1, 2):
        if step == 2:
            module.eval()  # the code advances the power iteration at every forward, evaluation included
        reset_states(module)
        expected = scale * w.double() / _official_sigma(mat, u0, step + 1)
        torch.testing.assert_close(module.weight.detach().double(), expected, rtol=1e-5, atol=1e-7)


def test_transposed_feedback_norm_is_not_the_filter_matrix_norm():
    """The CIFAR nets' transposed-conv feedback is normalised by the [in, out·k·k] matrix, as the code's dim-0
    reshape; its largest singular value differs from that of the [out, in·k·k] filter matrix."""
    torch.manual_seed(0)
    net = create_backbone("ide_alexnet_f", num_classes=10, channels=[8, 6, 6, 6, 12], dropout=0.0)
    param = net.feedback.op.parametrizations.weight[0]
    w = net.feedback.op.parametrizations.weight.original.detach()  # [in=12, out=8, 3, 3]
    assert param.u.shape == (12,) and param.v.shape == (8 * 9,)
    code = torch.linalg.matrix_norm(w.reshape(12, -1), 2)
    filters = torch.linalg.matrix_norm(w.transpose(0, 1).reshape(8, -1), 2)
    assert abs(float(code - filters)) > 1e-3


@pytest.mark.parametrize("padding,count", [(1, 269_643), (None, 290_763)], ids=["official", "padding2"])
def test_nmnist_conv_parameter_count(padding, count):
    """64C5s (F64C5) on 2x34x34 frames: the code's N-MNIST script pads the input conv by 1 (34 -> 16x16 maps):
    2·64·25 + 64 (conv) + 128 (BN) + 64·64·25 (feedback) + 1 (gain) + 16·16·64·10 + 10 (readout) = 269,643."""
    net = create_backbone("ide_conv", num_classes=10, in_channels=2, input_size=(34, 34), padding=padding)
    assert net.first_shape == ((64, 16, 16) if padding == 1 else (64, 17, 17))
    assert sum(p.numel() for p in net.parameters()) == count
    with pytest.raises(ValueError, match="padding"):
        create_backbone("ide_conv", num_classes=10, padding=-1)
