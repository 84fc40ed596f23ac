"""Spikformer (Zhou et al., ICLR 2023): parameter counts of the official model, the official forward
(transcribed from ``ZK-Zhou/spikformer`` ``cifar10/model.py`` / ``cifar10dvs/model.py``), neurons, shapes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_snn.backbones import Spikformer, create_backbone, list_backbones
from lightning_snn.backbones.spikformer import SPIKFORMER_LIF
from lightning_snn.neurons import IFNode, LIFNode
from tests.backbones.sj_reference import (
    assert_same_forward_and_gradients,
    assert_single_step_equals_multi_step,
    digits_test_accuracy,
    bn,
    conv_bn,
    layers,
    lif,
    max_pool,
    spread_batchnorm,
)

# sum(p.numel() for p in model.parameters()) of the official modules, transcribed shape by shape:
#   SPS(D, C):  Conv3x3 C->D/8, D/8->D/4, D/4->D/2, D/2->D, D->D (rpe), no bias: 9 (C D/8 + D²/32 + D²/8 + D²/2 + D²)
#               + BN 2 (D/8 + D/4 + D/2 + D + D);  D = 384, C = 3: 2,199,312 + 2,208 = 2,201,520
#                                                   D = 256, C = 2:   977,472 + 1,472 =   978,944
#   CIFAR Block(D): q, k, v, proj nn.Linear(D, D) 4 (D² + D) + 4 BN1d 8D + fc1 Linear(D, 4D) 4D² + 4D + BN 8D
#               + fc2 Linear(4D, D) 4D² + D + BN 2D + norm1, norm2 LayerNorm(D) 4D (never used in forward)
#               D = 384: 1,781,376, of which 1,536 LayerNorm
#   DVS Block(D): q, k, v Conv1d no bias 3 D² + proj Conv1d D² + D + 4 BN 8D + MLP Conv1d as above
#               + 2 unused LayerNorm 4D;  D = 256: 793,600, of which 1,024 LayerNorm
#   head Linear(D, K): D K + K; DVS also has pos_embed (1, 64, D) and norm LayerNorm(D), never used.
# Spikformer-4-384, 10 classes: 2,201,520 + 4 x 1,781,376 + 3,850 = 9,330,874 (unused: 4 x 1,536)
# Spikformer-4-384, 100 classes: 9,330,874 - 3,850 + 38,500 = 9,365,524 (unused: 6,144)
# Spikformer-8-384, 10 classes: 2,201,520 + 8 x 1,781,376 + 3,850 = 16,456,378 (unused: 8 x 1,536)
# Spikformer-2-256 DVS, 10 classes: 978,944 + 2 x 793,600 + 2,570 + 16,384 + 512 = 2,585,610
#   (unused: 2 x 1,024 + 16,384 + 512 = 18,944)
# The paper's "9.32M" (CIFAR) and "2.57M" (CIFAR10-DVS) are the counts without the unused parameters.
OFFICIAL = [
    ("spikformer_4_384", 10, 9_330_874, 6_144),
    ("spikformer_4_384", 100, 9_365_524, 6_144),
    ("spikformer_8_384", 10, 16_456_378, 12_288),
    ("spikformer_dvs", 10, 2_585_610, 18_944),
]


@pytest.mark.parametrize("name, num_classes, official, unused", OFFICIAL)
def test_parameter_count_equals_the_official_model_without_its_unused_parameters(name, num_classes, official, unused):
    model = create_backbone(name, num_classes=num_classes)
    assert sum(p.numel() for p in model.parameters()) == official - unused


def test_registered_and_paper_count():
    assert {"spikformer", "spikformer_4_384", "spikformer_8_384", "spikformer_dvs"} <= set(list_backbones())
    assert round((9_330_874 - 6_144) / 1e6, 2) == 9.32 and round((2_585_610 - 18_944) / 1e6, 2) == 2.57


def official_spikformer_cifar(model: Spikformer, x: torch.Tensor, heads: int = 4) -> torch.Tensor:
    """``cifar10/model.py``'s forward on ``[T, B, C, H, W]`` ([T, B, N, C] tokens, nn.Linear layers),
    with the library model's weights; the DVS model (``pools``: after all four neurons, scale 0.25) differs
    only in its [T, B, C, N] layout, which changes no value."""
    convs, norms = layers(model.body[0], nn.Conv2d), layers(model.body[0], nn.modules.batchnorm._BatchNorm)
    dvs = model.body[0].kind == "dvs"
    scale = 0.25 if dvs else 0.125  # SSA.scale of cifar10dvs/model.py and cifar10/model.py
    for i in range(4):  # proj_conv{i} -> proj_bn{i} -> proj_lif{i} [-> maxpool{i}]
        x = lif(conv_bn(x, convs[i], norms[i]))
        if dvs or i >= 2:
            x = max_pool(x)
    x = x + lif(conv_bn(x, convs[4], norms[4]))  # x_feat + rpe_lif(rpe_bn(rpe_conv(x)))
    T, B, C = x.shape[:3]
    x = x.flatten(-2).transpose(-1, -2)  # T, B, N, C
    N = x.shape[2]
    for blk in model.body[1 : 1 + model.depth]:
        a, m = blk.attn, blk.mlp
        h = heads

        def qkv(conv, norm, t=x):
            y = F.linear(t.flatten(0, 1), conv.module.weight.squeeze(-1), conv.module.bias)  # [TB, N, C]
            y = lif(bn(y.transpose(-1, -2), norm).transpose(-1, -2).reshape(T, B, N, C))
            return y.reshape(T, B, N, h, C // h).permute(0, 1, 3, 2, 4)

        q, k, v = qkv(a.q_conv, a.q_bn), qkv(a.k_conv, a.k_bn), qkv(a.v_conv, a.v_bn)
        attn = (q @ k.transpose(-2, -1)) * scale
        y = lif((attn @ v).transpose(2, 3).reshape(T, B, N, C), 0.5).flatten(0, 1)
        y = F.linear(y, a.proj_conv.module.weight.squeeze(-1), a.proj_conv.module.bias)
        x = x + lif(bn(y.transpose(-1, -2), a.proj_bn).transpose(-1, -2).reshape(T, B, N, C))
        y = F.linear(x.flatten(0, 1), m.mlp1_conv.module.weight.flatten(1), m.mlp1_conv.module.bias)
        y = lif(bn(y.transpose(-1, -2), m.mlp1_bn).transpose(-1, -2).reshape(T, B, N, -1)).flatten(0, 1)
        y = F.linear(y, m.mlp2_conv.module.weight.flatten(1), m.mlp2_conv.module.bias)
        x = x + lif(bn(y.transpose(-1, -2), m.mlp2_bn).transpose(-1, -2).reshape(T, B, N, C))
    head = model.body[-1].module
    return F.linear(x.mean(2).mean(0), head.weight, head.bias)  # head(forward_features(x).mean(0))


@pytest.mark.parametrize(
    "tokenizer, shape", [("cifar", (2, 2, 3, 32, 32)), ("dvs", (2, 2, 2, 32, 32))], ids=["cifar", "dvs"]
)
def test_forward_and_gradients_equal_the_official_computation_float64(tokenizer, shape):
    torch.manual_seed(0)
    model = Spikformer(embed_dim=32, depth=2, num_heads=4, num_classes=5, in_channels=shape[2], tokenizer=tokenizer)
    model = model.double().train()
    spread_batchnorm(model, (1.0, 2.0))  # firing rates 0.2-0.9 everywhere, the attention neuron included
    x = torch.randn(shape, dtype=torch.float64)
    assert_same_forward_and_gradients(model, official_spikformer_cifar, x)


def test_official_variant_defaults_and_neurons():
    cifar = create_backbone("spikformer_4_384", num_classes=10)
    dvs = create_backbone("spikformer_dvs", num_classes=10)
    a_c, a_d = cifar.body[1].attn, dvs.body[1].attn
    assert a_c.q_conv.module.bias is not None and a_d.q_conv.module.bias is None  # nn.Linear vs Conv1d(bias=False)
    assert a_c.scale == 0.125 and a_d.scale == 0.25 and a_c.num_heads == 12 and a_d.num_heads == 16
    assert float(a_c.attn_lif.v_threshold) == 0.5 and float(a_c.q_lif.v_threshold) == 1.0
    nodes = layers(cifar, LIFNode)
    assert len(nodes) == 4 + 1 + 4 * (5 + 2) and all(n.tau == 2.0 and n.detach_reset and n.v_reset == 0.0 for n in nodes)
    assert a_c.q_conv.module.weight.std() < 0.03  # trunc-normal(0.02), as the official nn.Linear
    assert a_d.q_conv.module.weight.std() > 0.03  # PyTorch's default Conv1d init (std 1/sqrt(3 D))
    assert dvs.body[0].stages[0][0].module.in_channels == 2 and dvs.body[-1].module.in_features == 256


def test_neuron_factory_swaps_every_neuron():
    model = Spikformer(embed_dim=16, depth=1, num_heads=2, neuron={"type": "if", "v_threshold": 1.0})
    nodes = [m for m in model.modules() if isinstance(m, (IFNode, LIFNode))]
    assert nodes and all(type(n) is IFNode for n in nodes)
    assert float(model.body[1].attn.attn_lif.v_threshold) == 0.5


def test_single_step_equals_multi_step_in_eval():
    torch.manual_seed(0)
    model = Spikformer(embed_dim=16, depth=2, num_heads=2, num_classes=3)
    assert assert_single_step_equals_multi_step(model, torch.randn(3, 2, 3, 16, 16)).shape == (3, 2, 3)


@pytest.mark.slow
def test_small_model_learns_digits():
    """D = 64, one block, 4 heads, the official LIF, T = 2, 10 epochs of BPTT on the 1,293 training digits (8x8 ->
    2x2 tokens): >= 90% on the 360 test digits (observed 94.4%, ~15 s on one CPU thread)."""
    acc = digits_test_accuracy("spikformer", SPIKFORMER_LIF, {"embed_dim": 64, "depth": 1, "num_heads": 4})
    assert acc >= 0.90, acc
