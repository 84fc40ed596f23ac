"""Blocks shared by the spiking vision transformers: RevSFormer, Spikformer, Spike-driven Transformer.

All three papers build on the same pieces, arranged differently:

* a convolutional **tokenizer** (Spikformer's SPS, "spiking patch splitting", Zhou et al. ICLR 2023, Sec. 3.1, overall architecture):
  ``Conv3x3 + BN`` to D/8, then ``SN -> [MaxPool] -> Conv3x3 -> BN`` to D/4, D/2, D and D (4x downsampling with
  the CIFAR stem, 16x with the DVS stem). How the last stage closes differs (``shortcut``):

  - ``"none"`` (Spikingformer / RevSFormer): the last ``SN -> MaxPool -> Conv -> BN`` is the output;
  - ``"spike"`` (Spikformer's relative position embedding, Sec. 3.1): ``x = MaxPool(SN(.))`` are the patch
    spikes, ``RPE = SN(BN(Conv(x)))``, output ``x + RPE``;
  - ``"membrane"`` (Spike-driven Transformer's membrane shortcut, Yao et al. NeurIPS 2023, Sec. 3, Fig. 2):
    ``u = MaxPool(.)`` on the membrane input (pooled before the neuron), output ``u + BN(Conv(SN(u)))``.

* **spiking self-attention** on ``[..., C, H, W]`` tokens, q/k/v = ``SN(BN(Conv1x1(x)))`` split into heads:

  - ``attention="ssa"`` (Spikformer Sec. 3.2, Eq. 9-11): ``SN_0.5((q k^T) v * s)``, no softmax, fixed scale s;
  - ``attention="sdsa"`` (Spike-driven Transformer Sec. 3, SDSA): ``q * SN_0.5(SUM_c(k * v))``, the
    Hadamard products and the column sum over tokens replacing both matrix products; ``erode=True`` is the
    official DVS mode (``MS_SSA_Conv(dvs=True)``): the :class:`Erode` 3x3 max-pooling (stride 1) on the k and
    v spikes over the token grid, and on ``k * v`` and ``q * SN(.)`` over the (token, channel-in-head) axes;

  then ``Conv1x1 -> BN``. ``neuron_first=True`` fires the input first (pre-activation: Spikingformer,
  RevSFormer, the Spike-driven Transformer's membrane shortcut, where the block input is a membrane
  potential); ``neuron_first=False`` fires the output instead (Spikformer: ``SN(BN(Linear(.)))``).
* **spiking MLP**: ``SN -> Conv1x1 -> BN -> SN -> Conv1x1 -> BN`` (``neuron_first``) or
  ``Conv1x1 -> BN -> SN -> Conv1x1 -> BN -> SN`` (Spikformer).
* :class:`ResidualBlock`: ``x = x + F(x); x = x + G(x)`` (Spikformer Sec. 3.1; the Spike-driven Transformer's MS blocks).

A 1x1 convolution on tokens is the official ``nn.Linear`` on ``[T, B, N, C]`` (same weights, same
parameter count); every layer takes ``[T, B, ...]`` (multi-step) or ``[B, ...]`` (single-step).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..neurons import BatchNormThroughTime, NeuronFactory, StepMode
from .layers import TimeDistributed

__all__ = [
    "Erode",
    "ResidualBlock",
    "SpikingDropPath",
    "SpikingMLP",
    "SpikingSelfAttention",
    "SpikingTokenizer",
    "TokenMean",
    "drop_path_rates",
    "trunc_normal_init",
    "with_threshold",
]


def with_threshold(node: nn.Module, value: float | None) -> nn.Module:
    """Give a neuron from the factory another firing threshold (the attention neuron's 0.5)."""
    if value is None:
        return node
    th = getattr(node, "v_threshold", None)
    if isinstance(th, torch.Tensor):
        with torch.no_grad():
            th.fill_(float(value))
    elif th is not None:
        node.v_threshold = float(value)
    return node


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """timm's stochastic-depth decay rule: ``linspace(0, rate, depth)``, one rate per block (all 0 when off)."""
    if rate <= 0:
        return [0.0] * depth
    return torch.linspace(0.0, float(rate), max(depth, 1)).tolist()


def trunc_normal_init(module: nn.Module, types: tuple[type[nn.Module], ...]) -> None:
    """timm's ``trunc_normal_(std=0.02)`` on the weights of every ``types`` layer in ``module``, zero bias."""
    for m in module.modules():
        if isinstance(m, types):
            nn.init.trunc_normal_(m.weight, std=0.02)  # a=-2, b=2 absolute: the distribution of timm's
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Erode(nn.Module):
    """The official ``Erode`` of the Spike-driven Transformer's DVS mode (``module/ms_conv.py``):
    ``nn.MaxPool3d(kernel_size=(1, 3, 3), stride=1, padding=(0, 1, 1))`` on ``[T, B, A, H, W]``, a 3x3 max
    over the last two axes that keeps the shape. Computed as the equal 2-d max-pooling of every ``H x W``
    plane of ``[..., H, W]`` (at least 3-d): the official MaxPool3d's CPU backward rejects the non-contiguous
    gradient that the head merge after it sends back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:
            raise ValueError(f"Erode needs a [..., A, H, W] input (at least 3-d), got shape {tuple(x.shape)}")
        return F.max_pool2d(x.reshape(-1, *x.shape[-2:]), kernel_size=3, stride=1, padding=1).reshape(x.shape)


class SpikingDropPath(nn.Module):
    """timm's DropPath (``timm.layers.drop_path``) with one mask per *sample*: in multi-step mode
    ``[T, B, ...]`` the mask is drawn over B and shared by the T steps (timm's own would draw it over the
    leading T axis). timm is imported on first use, not with the package."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True, step_mode: StepMode = "m") -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)
        self.scale_by_keep = bool(scale_by_keep)
        self.step_mode: StepMode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from timm.layers import drop_path

        if self.step_mode == "m":
            return drop_path(x.transpose(0, 1), self.drop_prob, self.training, self.scale_by_keep).transpose(0, 1)
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:g}"


class SpikingTokenizer(nn.Module):
    """The convolutional tokenizer (see the module docstring); 4x (``cifar``) or 16x (``dvs``) downsampling.

    ``shortcut``: ``"none"`` (RevSFormer), ``"spike"`` (Spikformer's RPE on the patch spikes, adds the
    neuron ``rpe_lif``) or ``"membrane"`` (Spike-driven Transformer: pooled membrane input plus RPE).
    """

    def __init__(
        self,
        in_channels: int,
        embed_dim: int,
        neuron: NeuronFactory,
        kind: Literal["cifar", "dvs"] = "cifar",
        shortcut: Literal["none", "spike", "membrane"] = "none",
    ) -> None:
        super().__init__()
        if kind not in ("cifar", "dvs"):
            raise ValueError(f"tokenizer must be 'cifar' or 'dvs', got {kind!r}")
        if shortcut not in ("none", "spike", "membrane"):
            raise ValueError(f"tokenizer shortcut must be 'none', 'spike' or 'membrane', got {shortcut!r}")
        if embed_dim % 8:
            raise ValueError(f"embed_dim must be a multiple of 8, got {embed_dim}")
        widths = [embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim, embed_dim]
        pools = [False, False, True, True] if kind == "cifar" else [True, True, True, True]
        stages: list[nn.Module] = [
            nn.Sequential(
                TimeDistributed(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)), BatchNormThroughTime(widths[0])
            )
        ]
        for cin, cout, pool in zip(widths[:-1], widths[1:], pools):
            layers: list[nn.Module] = [neuron()]
            if pool:
                layers.append(TimeDistributed(nn.MaxPool2d(kernel_size=3, stride=2, padding=1)))
            layers += [TimeDistributed(nn.Conv2d(cin, cout, 3, 1, 1, bias=False)), BatchNormThroughTime(cout)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.kind = kind
        self.shortcut = shortcut
        if shortcut == "spike":
            self.rpe_lif = neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut == "none":
            return self.stages(x)
        x = self.stages[:-1](x)
        node, pool, conv, bn = self.stages[-1]  # the last stage: SN -> MaxPool -> Conv -> BN
        if self.shortcut == "spike":  # Spikformer: x = MaxPool(SN(.)); x + SN(BN(Conv(x)))
            x = pool(node(x))
            return x + self.rpe_lif(bn(conv(x)))
        x = pool(x)  # Spike-driven Transformer: pool the membrane input; u + BN(Conv(SN(u)))
        return x + bn(conv(node(x)))


class SpikingSelfAttention(nn.Module):
    """Spiking self-attention on ``[..., C, H, W]`` (``...`` = T, B or B); see the module docstring.

    Args:
        dim, num_heads, neuron: channels, heads, neuron factory.
        attn_threshold: threshold of the attention neuron (0.5 in all three papers; None keeps the spec's).
        scale: the fixed scale s of SSA (unused by SDSA).
        drop_path: stochastic depth on the output (0: off).
        qkv_bias: bias of the q / k / v projections (Spikformer's CIFAR ``nn.Linear``: True).
        neuron_first: fire the input (``proj_lif`` first) or the output (``proj_lif`` last).
        attention: ``"ssa"`` or ``"sdsa"``.
        erode: the official SDSA DVS mode (the :class:`Erode` max-poolings; ``"sdsa"`` only). The k / v
            pooling runs on the token grid, so the input must be ``[..., C, H, W]``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        neuron: NeuronFactory,
        attn_threshold: float | None = 0.5,
        scale: float = 0.125,
        drop_path: float = 0.0,
        *,
        qkv_bias: bool = False,
        neuron_first: bool = True,
        attention: Literal["ssa", "sdsa"] = "ssa",
        erode: bool = False,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        if attention not in ("ssa", "sdsa"):
            raise ValueError(f"attention must be 'ssa' or 'sdsa', got {attention!r}")
        if erode and attention != "sdsa":
            raise ValueError("erode (the Spike-driven Transformer's DVS mode) applies to attention='sdsa' only")
        self.dim = dim
        self.num_heads = num_heads
        self.scale = float(scale)
        self.neuron_first = bool(neuron_first)
        self.attention = attention
        self.proj_lif = neuron()
        self.q_conv = TimeDistributed(nn.Conv1d(dim, dim, 1, bias=qkv_bias))
        self.q_bn = BatchNormThroughTime(dim)
        self.q_lif = neuron()
        self.k_conv = TimeDistributed(nn.Conv1d(dim, dim, 1, bias=qkv_bias))
        self.k_bn = BatchNormThroughTime(dim)
        self.k_lif = neuron()
        self.v_conv = TimeDistributed(nn.Conv1d(dim, dim, 1, bias=qkv_bias))
        self.v_bn = BatchNormThroughTime(dim)
        self.v_lif = neuron()
        self.attn_lif = with_threshold(neuron(), attn_threshold)
        self.proj_conv = TimeDistributed(nn.Conv1d(dim, dim, 1, bias=True))
        self.proj_bn = BatchNormThroughTime(dim)
        self.drop_path = SpikingDropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.erode = Erode() if erode else None

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        # [..., C, N] -> [..., heads, N, C / heads]
        *lead, c, n = t.shape
        return t.transpose(-1, -2).reshape(*lead, n, self.num_heads, c // self.num_heads).transpose(-2, -3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        if self.neuron_first:
            x = self.proj_lif(x)
        x = x.flatten(-2)  # [..., C, N]
        q = self._heads(self.q_lif(self.q_bn(self.q_conv(x))))
        k = self.k_lif(self.k_bn(self.k_conv(x)))
        v = self.v_lif(self.v_bn(self.v_conv(x)))
        if self.erode is not None:  # DVS mode: the k and v spikes pooled on the token grid
            k, v = (self.erode(t.reshape(shape)).flatten(-2) for t in (k, v))
        k, v = self._heads(k), self._heads(v)
        if self.attention == "ssa":
            out = (q @ k.transpose(-2, -1)) @ v * self.scale  # [..., heads, N, d], no softmax
            out = self.attn_lif(out.transpose(-1, -2).reshape(x.shape))  # [..., C, N], heads concatenated
        else:  # SDSA: q masks the spiking column sum (over the N tokens) of k * v
            kv = k * v
            if self.erode is not None:  # DVS mode: pooled over (token, channel-in-head), before and after
                kv = self.erode(kv)
            out = q * self.attn_lif(kv.sum(-2, keepdim=True))
            if self.erode is not None:
                out = self.erode(out)
            out = out.transpose(-1, -2).reshape(x.shape)
        out = self.proj_bn(self.proj_conv(out))
        if not self.neuron_first:
            out = self.proj_lif(out)
        return self.drop_path(out.reshape(shape))


class SpikingMLP(nn.Module):
    """Spiking MLP: ``SN -> Conv1x1 -> BN -> SN -> Conv1x1 -> BN`` (``neuron_first``, the default) or
    ``Conv1x1 -> BN -> SN -> Conv1x1 -> BN -> SN`` (Spikformer); biased 1x1 convolutions."""

    def __init__(
        self, dim: int, hidden: int, neuron: NeuronFactory, drop_path: float = 0.0, *, neuron_first: bool = True
    ) -> None:
        super().__init__()
        self.neuron_first = bool(neuron_first)
        self.mlp1_lif = neuron()
        self.mlp1_conv = TimeDistributed(nn.Conv2d(dim, hidden, 1, bias=True))
        self.mlp1_bn = BatchNormThroughTime(hidden)
        self.mlp2_lif = neuron()
        self.mlp2_conv = TimeDistributed(nn.Conv2d(hidden, dim, 1, bias=True))
        self.mlp2_bn = BatchNormThroughTime(dim)
        self.drop_path = SpikingDropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.neuron_first:
            x = self.mlp1_bn(self.mlp1_conv(self.mlp1_lif(x)))
            x = self.mlp2_bn(self.mlp2_conv(self.mlp2_lif(x)))
        else:
            x = self.mlp1_lif(self.mlp1_bn(self.mlp1_conv(x)))
            x = self.mlp2_lif(self.mlp2_bn(self.mlp2_conv(x)))
        return self.drop_path(x)


class ResidualBlock(nn.Module):
    """A transformer block with plain residuals: ``x = x + attn(x); x = x + mlp(x)``."""

    def __init__(self, attn: nn.Module, mlp: nn.Module) -> None:
        super().__init__()
        self.attn = attn
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class TokenMean(nn.Module):
    """``[..., C, H, W] -> [..., C]``: the mean over tokens (global average pooling)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(-2).mean(-1)
