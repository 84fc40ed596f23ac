"""Spike-driven Transformer (Yao et al., NeurIPS 2023): parameter count of the official model, the official
forward (transcribed from ``BICLab/Spike-Driven-Transformer`` ``module/sps.py``, ``module/ms_conv.py``,
``model/spikeformer.py``), SDSA against its formula, neurons, shapes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_snn.backbones import SpikeDrivenTransformer, create_backbone, list_backbones
from lightning_snn.backbones.spikformer import SPIKFORMER_LIF
from lightning_snn.backbones.spiking_transformer_blocks import Erode, SpikingSelfAttention
from lightning_snn.neurons import LIFNode
from lightning_snn.quantization import QuantSpec, is_quantized, quantize_model
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

# sum(p.numel() for p in model.parameters()) of the official SpikeDrivenTransformer, shape by shape (D = 512, 8 heads):
#   MS_SPS: Conv3x3 (no bias) 3->64, 64->128, 128->256, 256->512, 512->512 (rpe): 3,909,312; their BN: 2,944
#   MS_Block_Conv: q, k, v Conv2d 1x1 no bias 3 x 262,144 + 3 BN 3,072 + talking_heads Conv1d(8, 8, 1) 64
#     (never used in forward) + proj Conv2d 262,656 + BN 1,024 + fc1 Conv2d(512, 2048) 1,050,624 + BN 4,096
#     + fc2 Conv2d(2048, 512) 1,049,088 + BN 1,024 = 3,158,080
#   head Linear(512, K): 512 K + K
# 2-512, 10 classes: 3,912,256 + 2 x 3,158,080 + 5,130 = 10,233,546 (unused: 2 x 64)
# 2-512, 100 classes: 10,233,546 - 5,130 + 51,300 = 10,279,716 (unused: 128); the paper's "10.28M"
# CIFAR10-DVS 2-256 (conf/cifar10-dvs/2_256_200E_t10_TET.yml: in_channels 2, dim 256, 8 heads, layer 2, 10 classes;
# Erode is a MaxPool3d, no parameters):
#   MS_SPS: Conv3x3 2->32, 32->64, 64->128, 128->256, 256->256 (rpe): 576 + 18,432 + 73,728 + 294,912 + 589,824
#     = 977,472; BN 2 x (32 + 64 + 128 + 256 + 256) = 1,472
#   MS_Block_Conv: q, k, v 3 x 65,536 + 3 BN 1,536 + talking_heads 64 (unused) + proj 65,792 + BN 512
#     + fc1 Conv2d(256, 1024) 263,168 + BN 2,048 + fc2 Conv2d(1024, 256) 262,400 + BN 512 = 792,640
#   head Linear(256, 10): 2,570
# 978,944 + 2 x 792,640 + 2,570 = 2,566,794 (unused: 2 x 64)
OFFICIAL = [("spike_driven_transformer_2_512", 10, 10_233_546, 128), ("spike_driven_transformer_2_512", 100, 10_279_716, 128),
            ("spike_driven_transformer_dvs", 10, 2_566_794, 128)]


@pytest.mark.parametrize("name, num_classes, official, unused", OFFICIAL)
def test_parameter_count_equals_the_official_model_without_its_unused_parameters(name, num_classes, official, unused):
    model = create_backbone(name, num_classes=num_classes)
    assert sum(p.numel() for p in model.parameters()) == official - unused
    assert {"spike_driven_transformer", "spike_driven_transformer_2_512", "spike_driven_transformer_dvs"} <= set(list_backbones())


def official_sdt(model: SpikeDrivenTransformer, x: torch.Tensor, heads: int = 4) -> torch.Tensor:
    """``SpikeDrivenTransformer.forward`` (spike_mode lif, TET off) on ``[T, B, C, H, W]`` with the library
    model's weights; ``pooling_stat`` "0011" for the CIFAR stem, "1111" for the DVS stem; ``dvs_mode``: the
    ``Erode`` poolings of ``MS_SSA_Conv(dvs=True)``."""
    pool3d = torch.nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 1, 1), padding=(0, 1, 1))  # Erode

    def erode(t):
        y = pool3d(t)
        if y.requires_grad:  # MaxPool3d's CPU backward needs a contiguous gradient (the official ran on CUDA)
            y.register_hook(lambda g: g.contiguous())
        return y
    dvs = model.dvs_mode
    tok = model.body[0]
    convs, norms = layers(tok, torch.nn.Conv2d), layers(tok, torch.nn.modules.batchnorm._BatchNorm)
    pooling = "0011" if tok.kind == "cifar" else "1111"
    for i in range(3):  # proj_conv{i} -> proj_bn{i} -> proj_lif{i} [-> maxpool{i}]
        x = lif(conv_bn(x, convs[i], norms[i]))
        if pooling[i] == "1":
            x = max_pool(x)
    x = conv_bn(x, convs[3], norms[3])
    if pooling[3] == "1":
        x = max_pool(x)
    x = x + conv_bn(lif(x), convs[4], norms[4])  # x_feat + rpe_bn(rpe_conv(proj_lif3(x)))
    T, B, C, H, W = x.shape
    N = H * W
    for blk in model.body[1 : 1 + model.depth]:
        a, m = blk.attn, blk.mlp
        identity, s = x, lif(x)  # shortcut_lif

        def qkv(conv, norm, pool=False):
            y = F.conv2d(s.flatten(0, 1), conv.module.weight.unsqueeze(-1), conv.module.bias)
            y = lif(bn(y, norm).reshape(T, B, C, H, W))
            y = erode(y) if pool else y
            return y.flatten(3).transpose(-1, -2).reshape(T, B, N, heads, C // heads).permute(0, 1, 3, 2, 4).contiguous()

        q, k, v = qkv(a.q_conv, a.q_bn), qkv(a.k_conv, a.k_bn, dvs), qkv(a.v_conv, a.v_bn, dvs)
        kv = k.mul(v)
        kv = erode(kv) if dvs else kv
        kv = lif(kv.sum(dim=-2, keepdim=True), 0.5)  # talking_heads_lif
        y = q.mul(kv)
        y = erode(y) if dvs else y
        y = y.transpose(3, 4).reshape(T, B, C, H, W)
        y = F.conv2d(y.flatten(0, 1), a.proj_conv.module.weight.unsqueeze(-1), a.proj_conv.module.bias)
        x = bn(y, a.proj_bn).reshape(T, B, C, H, W) + identity
        identity = x  # MS_MLP_Conv
        y = F.conv2d(lif(x).flatten(0, 1), m.mlp1_conv.module.weight, m.mlp1_conv.module.bias)
        y = lif(bn(y, m.mlp1_bn).reshape(T, B, -1, H, W))
        y = F.conv2d(y.flatten(0, 1), m.mlp2_conv.module.weight, m.mlp2_conv.module.bias)
        x = bn(y, m.mlp2_bn).reshape(T, B, C, H, W) + identity
    head = model.body[-1].module
    return F.linear(lif(x.flatten(3).mean(3)), head.weight, head.bias).mean(0)  # head(head_lif(.)).mean(0)


@pytest.mark.parametrize(
    "tokenizer, dvs_mode, shape",
    [("cifar", False, (2, 2, 3, 16, 16)), ("dvs", False, (2, 2, 2, 32, 32)), ("cifar", True, (2, 2, 2, 16, 16))],
    ids=["cifar", "dvs-stem", "dvs-mode"],
)
def test_forward_and_gradients_equal_the_official_computation_float64(tokenizer, dvs_mode, shape):
    """``dvs-mode`` is the official CIFAR10-DVS model's arrangement (stem "0011", SDSA with Erode) at 4x4 tokens."""
    torch.manual_seed(0)
    model = SpikeDrivenTransformer(
        embed_dim=32, depth=2, num_heads=4, num_classes=5, in_channels=shape[2], tokenizer=tokenizer, dvs_mode=dvs_mode
    )
    model = model.double().train()
    spread_batchnorm(model, (-1.0, 1.0))  # firing rates 0.07-0.5 everywhere, the SDSA and head neurons included
    assert_same_forward_and_gradients(model, official_sdt, torch.randn(shape, dtype=torch.float64))


def test_sdsa_is_q_masking_the_spiking_column_sum_of_k_times_v():
    """SDSA(Q, K, V) = Q ⊗ SN(SUM_c(K ⊗ V)) per head, checked element by element with explicit loops."""
    torch.manual_seed(0)
    attn = SpikingSelfAttention(8, 2, lambda: LIFNode(tau=2.0, decay_input=True, detach_reset=True), attention="sdsa")
    q, k, v = (torch.rand(1, 1, 2, 6, 4).round() for _ in range(3))  # [T, B, heads, N, d] spikes
    kv = attn.attn_lif((k * v).sum(-2, keepdim=True))
    for h in range(2):
        for j in range(4):
            col = sum(float(k[0, 0, h, n, j] * v[0, 0, h, n, j]) for n in range(6))
            assert float(kv[0, 0, h, 0, j]) == float(col / 2.0 >= 0.5)  # one LIF step: H = X / tau, V_th 0.5
    assert set(torch.unique(q * kv).tolist()) <= {0.0, 1.0}


def test_erode_is_a_shape_keeping_3x3_max_over_the_last_two_axes():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5, 6)
    expected = F.max_pool2d(x.flatten(0, 2), 3, 1, 1, ceil_mode=False).reshape(x.shape)
    torch.testing.assert_close(Erode()(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(Erode()(x[0]), expected[0], rtol=0, atol=0)  # single-step [B, A, H, W]
    with pytest.raises(ValueError, match="at least 3-d"):
        Erode()(x[0, 0, 0])
    lif_factory = lambda: LIFNode(tau=2.0, decay_input=True, detach_reset=True)  # noqa: E731
    with pytest.raises(ValueError, match="attention='sdsa' only"):
        SpikingSelfAttention(8, 2, lif_factory, attention="ssa", erode=True)


def test_official_cifar10dvs_model_runs_forward_and_backward_at_t2():
    """The registered CIFAR10-DVS model (DVS mode in both blocks) on two 2x64x64 frames of one sample."""
    torch.manual_seed(0)
    model = create_backbone("spike_driven_transformer_dvs", num_classes=10)
    assert model.dvs_mode and all(blk.attn.erode is not None for blk in model.body[1:3])
    assert model.body[0].kind == "cifar" and model.body[1].attn.num_heads == 8
    x = (torch.rand(2, 1, 2, 64, 64) < 0.3).float()
    out = model(x)
    assert out.shape == (2, 1, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_official_defaults_and_neurons():
    model = create_backbone("spike_driven_transformer_2_512", num_classes=10)
    a = model.body[1].attn
    assert a.attention == "sdsa" and a.neuron_first and a.q_conv.module.bias is None and a.num_heads == 8
    nodes = layers(model, LIFNode)
    assert len(nodes) == 4 + 2 * (5 + 2) + 1 and all(n.tau == 2.0 and n.detach_reset for n in nodes)
    assert float(a.attn_lif.v_threshold) == 0.5 and float(a.q_lif.v_threshold) == 1.0
    convs = layers(model, torch.nn.Conv2d) + layers(model, torch.nn.Conv1d)
    assert all(abs(float(c.weight.detach().std()) - 0.02) < 0.002 for c in convs if c.weight.numel() > 10_000)  # trunc_normal(0.02)
    assert all(c.bias is None or not c.bias.any() for c in convs)


def test_quantization_aware_training_reaches_every_weight_layer():
    """QAT's fake quantization wraps the 1x1 token convolutions (Conv1d) as well as the tokenizer and the head."""
    model = SpikeDrivenTransformer(embed_dim=16, depth=1, num_heads=2, num_classes=3)
    names = quantize_model(model, QuantSpec(bits=4))
    weights = [m for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear))]
    assert len(names) == len(weights) == 5 + 4 + 2 + 1  # tokenizer, q / k / v / proj, MLP, head
    assert all(is_quantized(m, "weight") for m in weights)
    torch.manual_seed(0)
    out = model(torch.randn(2, 2, 3, 16, 16))
    out.sum().backward()
    assert out.shape == (2, 2, 3) and all(p.grad is not None for p in model.parameters())


def test_single_step_equals_multi_step_in_eval():
    torch.manual_seed(0)
    model = SpikeDrivenTransformer(embed_dim=16, depth=2, num_heads=2, num_classes=3)
    assert assert_single_step_equals_multi_step(model, torch.randn(3, 2, 3, 16, 16)).shape == (3, 2, 3)


@pytest.mark.slow
def test_small_model_learns_digits():
    """D = 64, one block, 4 heads, the official LIF, T = 2, 10 epochs of BPTT on the 1,293 training digits (8x8 ->
    2x2 tokens): >= 90% on the 360 test digits (observed 96.9%, ~15 s on one CPU thread)."""
    acc = digits_test_accuracy("spike_driven_transformer", SPIKFORMER_LIF, {"embed_dim": 64, "depth": 1, "num_heads": 4})
    assert acc >= 0.90, acc
