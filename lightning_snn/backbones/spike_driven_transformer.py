"""Spike-driven Transformer (Yao et al., "Spike-driven Transformer", NeurIPS 2023).

The official model of ``BICLab/Spike-Driven-Transformer`` (``model/spikeformer.py``, ``module/sps.py``,
``module/ms_conv.py``; ``spike_mode="lif"``), built from the shared blocks of
``spiking_transformer_blocks.py``:

* MS-SPS (Sec. 3, Fig. 2): ``Conv3x3 -> BN -> SN`` to D/8, D/4, D/2, then ``Conv3x3 -> BN`` to D; with the
  CIFAR stem (official ``pooling_stat="0011"``) MaxPool(3, s2, p1) after the third neuron and after the
  fourth BN (32x32 -> 8x8 tokens; the official CIFAR10-DVS model uses it too, on 64x64 frames -> 16x16
  tokens), with the DVS stem (``"1111"``) after every stage. The pooled membrane
  input u is the shortcut: output ``u + BN(Conv3x3(SN(u)))`` (relative position embedding on the membrane).
* ``depth`` blocks with membrane shortcuts (Sec. 3, Fig. 2): the residual stream carries membrane
  potentials and every branch starts with a neuron, so all convolutions see spikes.

  - SDSA (Sec. 3, spike-driven self-attention): ``S = SN(x)``; ``Q, K, V = SN(BN(Conv1x1(S)))`` (no
    bias), heads split; ``SDSA(Q, K, V) = Q ⊗ SN_0.5(SUM_c(K ⊗ V))``: a Hadamard product, the column sum
    over the N tokens and a threshold-0.5 neuron, then ``Q`` masks the result (linear in N and D, no
    matrix multiplication, no scale; every operation is per channel, so the head split changes no value);
    then ``BN(Conv1x1(.))`` and ``x + .``;
  - SDSA's DVS mode (``dvs_mode=True``; the official ``dvs_mode``, which ``train.py`` sets for the
    ``cifar10-dvs`` datasets, passed to ``MS_SSA_Conv(dvs=True)``): the ``Erode`` max-pooling
    ``MaxPool3d((1, 3, 3), stride 1, padding (0, 1, 1))`` after ``k_lif`` and ``v_lif`` (3x3 over the token
    grid), on ``K ⊗ V`` before the column sum and on ``Q ⊗ SN_0.5(.)`` (3x3 over the token and the
    channel-in-head axes of the ``[T, B, heads, N, C/heads]`` tensors). Nothing else of the model changes;
  - MLP: ``SN -> Conv1x1(D -> 4D) -> BN -> SN -> Conv1x1(4D -> D) -> BN``, ``x + .``.
* Head: mean over tokens, ``SN``, ``Linear(D -> classes)`` at every step (the official head; the method's
  mean over T gives the official ``x.mean(0)``, its ``loss: tet`` the official TET per-step loss).

Init as the official ``_init_weights``: every convolution trunc-normal(0.02) with zero bias, BN weight 1
bias 0, the head ``nn.Linear`` PyTorch's default. Not built, because the official forward never uses
them: each SDSA's ``talking_heads`` ``Conv1d(heads, heads, 1)`` (heads² parameters) and ``DropPath``
(``drop_path_rate`` defaults to 0).

The official CIFAR10-DVS model (``conf/cifar10-dvs/2_256_200E_t10_TET.yml``: 2 blocks, D = 256, 8 heads,
``pooling_stat="0011"``, 2 input channels, frames resized to 64x64, T = 10, ``dvs_mode``) is
``spike_driven_transformer_dvs``; its ``TET=True`` only returns the per-step outputs to the TET loss
(the method's ``loss: tet``).

Neurons (default): SpikingJelly ``MultiStepLIFNode(tau=2.0, detach_reset=True)``: LIF τ = 2 with
decay_input, V_th 1 (0.5 for the SDSA neuron), hard reset to 0, detached reset, sigmoid surrogate α = 4.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from torch import nn

from ..neurons import NeuronFactory, StepMode, build_neuron_factory
from .layers import SpikingBackbone, TimeDistributed
from .registry import register_backbone
from .spikformer import SPIKFORMER_LIF
from .spiking_transformer_blocks import (
    ResidualBlock,
    SpikingMLP,
    SpikingSelfAttention,
    SpikingTokenizer,
    TokenMean,
    drop_path_rates,
    trunc_normal_init,
)

__all__ = [
    "SpikeDrivenTransformer",
    "spike_driven_transformer",
    "spike_driven_transformer_2_512",
    "spike_driven_transformer_dvs",
]


class SpikeDrivenTransformer(SpikingBackbone):
    """Spike-driven Transformer-``depth``-``embed_dim`` (see the module docstring).

    Args:
        embed_dim, depth, num_heads, mlp_ratio: D, blocks, heads, MLP width / D.
        num_classes, in_channels, input_size (unused: the head averages over tokens), neuron, step_mode:
            the backbone contract; ``neuron=None`` is the official LIF.
        tokenizer: ``"cifar"`` (``pooling_stat="0011"``, 4x downsampling) or ``"dvs"`` (``"1111"``, 16x).
        attn_threshold: threshold of the SDSA neuron (0.5).
        drop_path_rate: stochastic depth on both branches, growing linearly over the blocks (0: off).
        dvs_mode: the official DVS mode of SDSA (the ``Erode`` max-poolings, see the module docstring).
    """

    def __init__(
        self,
        embed_dim: int = 512,
        depth: int = 2,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int | Sequence[int] = 32,
        neuron: NeuronFactory | Mapping[str, Any] | None = None,
        step_mode: StepMode = "m",
        tokenizer: Literal["cifar", "dvs"] = "cifar",
        attn_threshold: float | None = 0.5,
        drop_path_rate: float = 0.0,
        dvs_mode: bool = False,
    ) -> None:
        super().__init__(num_classes, build_neuron_factory(neuron, default=SPIKFORMER_LIF), step_mode)
        del input_size
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.embed_dim = int(embed_dim)
        self.depth = int(depth)
        self.dvs_mode = bool(dvs_mode)
        hidden = int(embed_dim * mlp_ratio)
        rates = drop_path_rates(drop_path_rate, depth)
        blocks = [
            ResidualBlock(
                SpikingSelfAttention(
                    embed_dim, num_heads, self.spiking, attn_threshold, drop_path=rates[i], attention="sdsa",
                    erode=dvs_mode,
                ),
                SpikingMLP(embed_dim, hidden, self.spiking, rates[i]),
            )
            for i in range(depth)
        ]
        self.body = nn.Sequential(
            SpikingTokenizer(in_channels, embed_dim, self.spiking, tokenizer, shortcut="membrane"),
            *blocks,
            TokenMean(),
            self.spiking(),
            TimeDistributed(nn.Linear(embed_dim, num_classes)),
        )
        trunc_normal_init(self.body, (nn.Conv1d, nn.Conv2d))
        self.finalize()

    @property
    def num_blocks(self) -> int:
        return self.depth


@register_backbone("spike_driven_transformer")
def spike_driven_transformer(**kwargs: Any) -> SpikeDrivenTransformer:
    """A Spike-driven Transformer of any size (default 2-512, CIFAR stem, 8 heads)."""
    return SpikeDrivenTransformer(**kwargs)


@register_backbone("spike_driven_transformer_2_512")
def spike_driven_transformer_2_512(**kwargs: Any) -> SpikeDrivenTransformer:
    """Spike-driven Transformer-2-512 (CIFAR, 32x32): 2 blocks, D = 512, 8 heads; 10.28M parameters with 100 classes."""
    kwargs.setdefault("num_heads", 8)
    return SpikeDrivenTransformer(embed_dim=512, depth=2, **kwargs)


@register_backbone("spike_driven_transformer_dvs")
def spike_driven_transformer_dvs(**kwargs: Any) -> SpikeDrivenTransformer:
    """The official CIFAR10-DVS Spike-driven Transformer-2-256: 2 blocks, D = 256, 8 heads, SDSA in DVS mode,
    the ``"0011"`` stem on 2x64x64 frames (16x16 tokens); 2.57M parameters with 10 classes."""
    kwargs.setdefault("num_heads", 8)
    kwargs.setdefault("in_channels", 2)
    kwargs.setdefault("dvs_mode", True)
    return SpikeDrivenTransformer(embed_dim=256, depth=2, tokenizer="cifar", **kwargs)
