"""RevSFormer: the reversible spiking transformer of RevSNN (Zhang & Zhang, AAAI 2024).

The reversible counterpart of Spikingformer: a spiking tokenizer, ``depth`` reversible blocks on a
two-stream residual of ``2 * embed_dim`` channels, and a linear head on the mean over tokens.

* Tokenizer (``tokenizer="cifar"``, 32x32 -> 8x8 tokens): ``Conv3x3(C -> D/8) + BN``, then
  ``SN -> Conv3x3 -> BN`` to D/4 and D/2, then ``SN -> MaxPool(3, s2, p1) -> Conv3x3 -> BN`` to D and D.
  ``tokenizer="dvs"`` (128x128 -> 8x8): ``Conv3x3(C -> D/8) + BN``, then four
  ``SN -> MaxPool(3, s2, p1) -> Conv3x3 -> BN`` to D/4, D/2, D, D. All convolutions without bias.
* Streams: the tokenizer output is duplicated, ``X = cat(tok, tok)`` (so X1 = X2 at the start).
* F = spiking self-attention (SSA) on D channels: ``SN -> {q, k, v}: Conv1d(1x1, no bias) -> BN -> SN``,
  heads split, ``(q k^T) v * 0.125`` without softmax (a fixed scale whatever the head size), an attention
  neuron with threshold 0.5, ``Conv1d(1x1, bias) -> BN``.
* G = spiking MLP: ``SN -> Conv1x1(D -> 4D, bias) -> BN -> SN -> Conv1x1(4D -> D, bias) -> BN``.
* Head: mean over the 8x8 tokens of the ``2D`` channels, ``Linear(2D -> classes)`` at every time step
  (the method's mean over T then equals the official head applied to the T-mean; the head is linear).
  No neuron before the head. Linear weights trunc-normal (std 0.02), zero bias (timm's init).

Registered: ``revsformer_2_384`` and ``revsformer_4_384`` (CIFAR; 5.77M / 9.32M parameters with 10
classes, the README's 5.76M / 9.32M; 12 heads for CIFAR-10 and 8 for CIFAR-100 in the official configs),
``revsformer_2_256`` (DVS, 16 heads, 2.57M parameters). Default neuron: LIF τ = 2 (CIFAR) or τ = 1.5
(DVS) with decay_input, V_th 1, hard reset to 0, detached reset, sigmoid surrogate (α = 4).

``drop_path_rate`` > 0 puts timm-style stochastic depth (one mask per sample, shared over the T steps)
at the end of F and G, rates growing linearly over the blocks. The official models construct DropPath
but never apply it, so the default is 0; when active, the reversible blocks replay the RNG in the
recompute (see ``reversible.py``). ``reversible=False`` builds the non-reversible twin with the same
parameter names. The tokenizer, F and G are the shared blocks of ``spiking_transformer_blocks.py``
(Spikformer and the Spike-driven Transformer arrange the same blocks differently).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from ..neurons import NeuronFactory, StepMode, build_neuron_factory
from .layers import SpikingBackbone, TimeDistributed
from .registry import register_backbone
from .reversible import ReversibleBackboneMixin, ReversibleBlock, ReversibleSequence
from .spiking_transformer_blocks import (
    SpikingDropPath,
    SpikingMLP,
    SpikingSelfAttention,
    SpikingTokenizer,
    TokenMean,
    drop_path_rates,
    trunc_normal_init,
)

__all__ = [
    "REVSFORMER_LIF_CIFAR",
    "REVSFORMER_LIF_DVS",
    "RevSFormer",
    "SpikingDropPath",
    "SpikingMLP",
    "SpikingSelfAttention",
    "SpikingTokenizer",
    "revsformer",
    "revsformer_2_256",
    "revsformer_2_384",
    "revsformer_4_384",
]

#: RevSFormer's CIFAR neuron: SpikingJelly MultiStepLIFNode(tau=2.0, detach_reset=True).
REVSFORMER_LIF_CIFAR: dict[str, Any] = {
    "type": "lif",
    "tau": 2.0,
    "decay_input": True,
    "v_threshold": 1.0,
    "v_reset": 0.0,
    "detach_reset": True,
    "surrogate": {"name": "sigmoid", "alpha": 4.0},
}

#: RevSFormer's DVS neuron: SpikingJelly MultiStepLIFNode(tau=1.5, detach_reset=True).
REVSFORMER_LIF_DVS: dict[str, Any] = {**REVSFORMER_LIF_CIFAR, "tau": 1.5}


class _Duplicate(nn.Module):
    """``cat([x, x])`` along the channel dimension: both streams start from the tokens."""

    def __init__(self, step_mode: StepMode = "m") -> None:
        super().__init__()
        self.step_mode: StepMode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x], dim=2 if self.step_mode == "m" else 1)


class RevSFormer(ReversibleBackboneMixin, SpikingBackbone):
    """Reversible spiking transformer (see the module docstring).

    Args:
        embed_dim: channels D of each stream (the residual is 2D wide).
        depth: number of reversible blocks.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP relative to D.
        num_classes, in_channels, input_size (unused: the head averages over tokens), neuron, step_mode:
            the backbone contract; ``neuron=None`` uses the variant's LIF (τ 2 CIFAR, τ 1.5 DVS).
        tokenizer: ``"cifar"`` (4x downsampling) or ``"dvs"`` (16x).
        reversible: reversible blocks (True) or the non-reversible twin (False).
        attn_threshold: threshold of the attention neuron (0.5; None keeps the neuron spec's).
        attn_scale: the fixed scale of ``(q k^T) v`` (0.125).
        drop_path_rate: stochastic depth at the end of F and G (0: off, as the official models).
        preserve_rng_state: passed to every block (None: automatic).
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
        reversible: bool = True,
        attn_threshold: float | None = 0.5,
        attn_scale: float = 0.125,
        drop_path_rate: float = 0.0,
        preserve_rng_state: bool | None = None,
    ) -> None:
        default = REVSFORMER_LIF_CIFAR if tokenizer == "cifar" else REVSFORMER_LIF_DVS
        super().__init__(num_classes, build_neuron_factory(neuron, default=default), step_mode)
        del input_size
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.embed_dim = int(embed_dim)
        self.depth = int(depth)
        hidden = int(embed_dim * mlp_ratio)
        rates = drop_path_rates(drop_path_rate, depth)
        blocks = [
            ReversibleBlock(
                SpikingSelfAttention(embed_dim, num_heads, self.spiking, attn_threshold, attn_scale, rates[i]),
                SpikingMLP(embed_dim, hidden, self.spiking, rates[i]),
                step_mode=step_mode,
                preserve_rng_state=preserve_rng_state,
            )
            for i in range(depth)
        ]
        self.body = nn.Sequential(
            SpikingTokenizer(in_channels, embed_dim, self.spiking, tokenizer),
            _Duplicate(),
            ReversibleSequence(blocks, reversible=reversible, reuse_output_storage=True),
            TokenMean(),
            TimeDistributed(nn.Linear(2 * embed_dim, num_classes)),
        )
        trunc_normal_init(self, (nn.Linear,))  # timm's init of the official model: the head only
        self.finalize()

    @property
    def num_blocks(self) -> int:
        return self.depth


def revsformer(**kwargs: Any) -> RevSFormer:
    """A RevSFormer of any size: ``embed_dim``, ``depth``, ``num_heads``, ``tokenizer``, ..."""
    return RevSFormer(**kwargs)


@register_backbone("revsformer_2_384")
def revsformer_2_384(**kwargs: Any) -> RevSFormer:
    """RevSFormer-2-384 (CIFAR): 2 blocks, D = 384, 12 heads; 5.77M params with 10 classes."""
    kwargs.setdefault("num_heads", 12)
    return RevSFormer(embed_dim=384, depth=2, **kwargs)


@register_backbone("revsformer_4_384")
def revsformer_4_384(**kwargs: Any) -> RevSFormer:
    """RevSFormer-4-384 (CIFAR): 4 blocks, D = 384, 12 heads; 9.32M params with 10 classes."""
    kwargs.setdefault("num_heads", 12)
    return RevSFormer(embed_dim=384, depth=4, **kwargs)


@register_backbone("revsformer_2_256")
def revsformer_2_256(**kwargs: Any) -> RevSFormer:
    """RevSFormer-2-256 (CIFAR10-DVS / DVS128 Gesture, 128x128): 2 blocks, D = 256, 16 heads; 2.57M params."""
    kwargs.setdefault("num_heads", 16)
    kwargs.setdefault("tokenizer", "dvs")
    kwargs.setdefault("in_channels", 2)
    return RevSFormer(embed_dim=256, depth=2, **kwargs)


register_backbone("revsformer")(revsformer)
