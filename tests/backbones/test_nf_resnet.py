"""Normaliser-free spiking ResNets (SLTT / OTTT ImageNet): variance bookkeeping, skip-init, shapes."""
from __future__ import annotations

import math

import pytest
import torch

from lightning_snn.backbones import create_backbone
from lightning_snn.backbones.nf_resnet import NFBasicBlock, NFBottleneck


@pytest.mark.parametrize("name,block,layers", [("nf_resnet34", NFBasicBlock, (3, 4, 6, 3)), ("nf_resnet50", NFBottleneck, (3, 4, 6, 3))])
def test_expected_variance_schedule(name, block, layers):
    net = create_backbone(name, num_classes=7)
    blocks = [m for m in net.modules() if isinstance(m, block)]
    assert len(blocks) == sum(layers)
    var, want = 1.0, []
    for b in blocks:  # β = sqrt(expected variance); +α² per block, reset to 1 + α² after a projection shortcut
        want.append(math.sqrt(var))
        var = 1 + 0.2**2 if b.downsample is not None else var + 0.2**2
    assert [b.beta for b in blocks] == pytest.approx(want)
    assert (blocks[0].downsample is None) == (block is NFBasicBlock)


def test_skip_init_blocks_start_as_identity_and_head_starts_at_zero():
    torch.manual_seed(0)
    net = create_backbone("nf_resnet34", num_classes=5, in_channels=2).double()
    x = torch.randn(2, 3, 2, 32, 32, dtype=torch.float64)
    block = net.body[2]  # layer1's first block: no projection, residual gated by a zero gain
    h = torch.randn(2, 3, 64, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(block(h), h)
    out = net(x)
    assert out.shape == (2, 3, 5)
    torch.testing.assert_close(out, net.body[-1].module.bias.expand_as(out))  # zero-initialised classifier weights
