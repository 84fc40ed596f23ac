"""Spikformer (Zhou et al., "Spikformer: When Spiking Neural Network Meets Transformer", ICLR 2023).

The official model of ``ZK-Zhou/spikformer`` (``cifar10/model.py``, ``cifar10dvs/model.py``), built from the
shared blocks of ``spiking_transformer_blocks.py``:

* SPS (Sec. 3.1): ``Conv3x3 -> BN -> SN`` to D/8, D/4, D/2, D (CIFAR stem: MaxPool(3, s2, p1) after the
  last two neurons, 32x32 -> 8x8 tokens; DVS stem: after all four, 128x128 -> 8x8), then the relative
  position embedding on the patch spikes x: ``x + SN(BN(Conv3x3(x)))``. Convolutions without bias.
* ``depth`` blocks (Sec. 3.1): ``x = x + SSA(x); x = x + MLP(x)`` on the (integer-valued) residual stream,
  post-activation as the official code: every branch ends in a neuron, so both branches add spikes.

  - SSA (Sec. 3.2, Eq. 9-11): ``Q, K, V = SN(BN(Linear(x)))``, heads split, ``SN_0.5(Q K^T V * s)``
    (no softmax; s = 0.125 on CIFAR, 0.25 on CIFAR10-DVS), ``SN(BN(Linear(.)))``;
  - MLP: ``SN(BN(Linear(D -> 4D)))``, ``SN(BN(Linear(4D -> D)))``.
  The official CIFAR model's q / k / v / proj / MLP are ``nn.Linear`` (bias, trunc-normal(0.02) init);
  the DVS model's are ``Conv1d`` 1x1 (q / k / v without bias, PyTorch's default init). Here both are
  1x1 convolutions with the same weights and bias flags (``qkv_bias``, ``linear_init`` follow the stem).
* Head: mean over tokens, ``Linear(D -> classes)`` at every step (the mean over T of a linear head equals
  the official head on the T-mean); the head is trunc-normal(0.02) initialised with zero bias.

Not built, because the official forward never uses them: each block's two ``LayerNorm`` (``norm1``,
``norm2``), the DVS model's ``pos_embed`` (num_patches x D), final ``norm``, ``attn_drop`` and ``res_lif``,
and ``DropPath`` (constructed with rate 0.1 on CIFAR10-DVS, never applied: ``drop_path_rate`` defaults to 0).
The paper's parameter counts leave them out too: Spikformer-4-384 (CIFAR-10) has 9,324,730 parameters here
and 9,330,874 in the official module (4 x 2 x 768 LayerNorm parameters), the paper's "9.32M".

Neurons (default): SpikingJelly ``MultiStepLIFNode(tau=2.0, detach_reset=True)``: LIF τ = 2 with
decay_input, V_th 1 (0.5 for the attention neuron), hard reset to 0, detached reset, sigmoid surrogate α = 4.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from torch import nn

from ..neurons import NeuronFactory, StepMode, build_neuron_factory
from .layers import SpikingBackbone, TimeDistributed
from .registry import register_backbone
from .revs_former import REVSFORMER_LIF_CIFAR
from .spiking_transformer_blocks import (
    ResidualBlock,
    SpikingMLP,
    SpikingSelfAttention,
    SpikingTokenizer,
    TokenMean,
    drop_path_rates,
    trunc_normal_init,
)

__all__ = ["SPIKFORMER_LIF", "Spikformer", "spikformer", "spikformer_4_384", "spikformer_8_384", "spikformer_dvs"]

#: Spikformer's neuron (CIFAR and DVS): SpikingJelly MultiStepLIFNode(tau=2.0, detach_reset=True).
SPIKFORMER_LIF: dict[str, Any] = dict(REVSFORMER_LIF_CIFAR)


class Spikformer(SpikingBackbone):
    """Spikformer-``depth``-``embed_dim`` (see the module docstring).

    Args:
        embed_dim, depth, num_heads, mlp_ratio: D, blocks, heads, MLP width / D.
        num_classes, in_channels, input_size (unused: the head averages over tokens), neuron, step_mode:
            the backbone contract; ``neuron=None`` is the official LIF.
        tokenizer: ``"cifar"`` (4x downsampling) or ``"dvs"`` (16x).
        qkv_bias: bias of q / k / v (None: True with the CIFAR stem, as its ``nn.Linear``; False with DVS).
        attn_scale: s of SSA (None: 0.125 CIFAR, 0.25 DVS).
        attn_threshold: threshold of the attention neuron (0.5).
        linear_init: trunc-normal(0.02) / zero-bias init of the blocks' 1x1 layers, as the official CIFAR
            model's ``nn.Linear`` (None: True with the CIFAR stem, False with DVS).
        drop_path_rate: stochastic depth on both branches, growing linearly over the blocks (0: off).
    """

    def __init__(
        self,
        embed_dim: int = 384,
        depth: int = 4,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int | Sequence[int] = 32,
        neuron: NeuronFactory | Mapping[str, Any] | None = None,
        step_mode: StepMode = "m",
        tokenizer: Literal["cifar", "dvs"] = "cifar",
        qkv_bias: bool | None = None,
        attn_scale: float | None = None,
        attn_threshold: float | None = 0.5,
        linear_init: bool | None = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__(num_classes, build_neuron_factory(neuron, default=SPIKFORMER_LIF), step_mode)
        del input_size
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        cifar = tokenizer == "cifar"
        self.embed_dim = int(embed_dim)
        self.depth = int(depth)
        hidden = int(embed_dim * mlp_ratio)
        qkv_bias = cifar if qkv_bias is None else qkv_bias
        attn_scale = (0.125 if cifar else 0.25) if attn_scale is None else attn_scale
        rates = drop_path_rates(drop_path_rate, depth)
        blocks = [
            ResidualBlock(
                SpikingSelfAttention(
                    embed_dim, num_heads, self.spiking, attn_threshold, attn_scale, rates[i],
                    qkv_bias=qkv_bias, neuron_first=False, attention="ssa",
                ),
                SpikingMLP(embed_dim, hidden, self.spiking, rates[i], neuron_first=False),
            )
            for i in range(depth)
        ]
        self.body = nn.Sequential(
            SpikingTokenizer(in_channels, embed_dim, self.spiking, tokenizer, shortcut="spike"),
            *blocks,
            TokenMean(),
            TimeDistributed(nn.Linear(embed_dim, num_classes)),
        )
        if cifar if linear_init is None else linear_init:
            trunc_normal_init(nn.ModuleList(blocks), (nn.Conv1d, nn.Conv2d))
        trunc_normal_init(self.body[-1], (nn.Linear,))
        self.finalize()

    @property
    def num_blocks(self) -> int:
        return self.depth


@register_backbone("spikformer")
def spikformer(**kwargs: Any) -> Spikformer:
    """A Spikformer of any size: ``embed_dim``, ``depth``, ``num_heads``, ``tokenizer``, ..."""
    return Spikformer(**kwargs)


@register_backbone("spikformer_4_384")
def spikformer_4_384(**kwargs: Any) -> Spikformer:
    """Spikformer-4-384 (CIFAR, 32x32): 4 blocks, D = 384, 12 heads; 9.32M parameters with 10 classes."""
    kwargs.setdefault("num_heads", 12)
    return Spikformer(embed_dim=384, depth=4, **kwargs)


@register_backbone("spikformer_8_384")
def spikformer_8_384(**kwargs: Any) -> Spikformer:
    """Spikformer-8-384 with the CIFAR stem: 8 blocks, D = 384, 12 heads; 16.44M parameters with 10 classes."""
    kwargs.setdefault("num_heads", 12)
    return Spikformer(embed_dim=384, depth=8, **kwargs)


@register_backbone("spikformer_dvs")
def spikformer_dvs(**kwargs: Any) -> Spikformer:
    """Spikformer-2-256 for CIFAR10-DVS (2x128x128 frames): 2 blocks, D = 256, 16 heads; 2.57M parameters."""
    kwargs.setdefault("num_heads", 16)
    kwargs.setdefault("tokenizer", "dvs")
    kwargs.setdefault("in_channels", 2)
    return Spikformer(embed_dim=256, depth=2, **kwargs)
