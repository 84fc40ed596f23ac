"""benchmarks/stbp_qat_update.py: its in-place update is the README-era quantize_layers of the STBP repository."""
from __future__ import annotations

import torch
from torch import nn

from benchmarks.stbp_qat_update import requantize_in_place
from lightning_snn.methods import BPTT
from lightning_snn.quantization import QuantSpec


def test_in_place_update_rounds_weights_and_biases_to_their_own_grid():
    torch.manual_seed(0)
    model = BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=2,
                 backbone_kwargs={"channels": [4, 8], "hidden": 16, "spiking_output": True})
    layers = [m for m in model.backbone.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    before = [(m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone()) for m in layers]
    requantize_in_place(model, QuantSpec(4))
    for m, (w, b) in zip(layers, before):
        for new, old in ((m.weight, w), (m.bias, b)):
            if old is None:
                continue
            scale = (2 ** 3 - 1) / old.abs().max()  # quantize_tensor of main.py @ 1de278bf: per tensor, max-abs
            torch.testing.assert_close(new.detach(), torch.round(old * scale) / scale)
    weights = [m.weight.detach().clone() for m in layers]
    requantize_in_place(model, QuantSpec(4))  # idempotent: the grid's maximum is a grid point
    for m, w in zip(layers, weights):
        torch.testing.assert_close(m.weight.detach(), w)
