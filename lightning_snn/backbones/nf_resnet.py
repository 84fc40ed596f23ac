"""Normaliser-free spiking ResNets of SLTT / OTTT for ImageNet (``models/spiking_resnet_imagenet.py`` of
github.com/qymeng94/SLTT and github.com/pkuxmq/OTTT-SNN; NF-ResNets of Brock et al., ICLR 2021).

No BatchNorm: every convolution uses scaled weight standardisation
(:class:`~lightning_snn.backbones.ottt_vgg.ScaledWSConv2d`, with bias and gain), and the residual stream
keeps a known variance instead. A block computes, with ``β`` the expected standard deviation of its input
and ``α = 0.2``::

    h = SN(x / β) · 2.74                         (pre-activation; 2.74 restores unit variance after the neuron)
    shortcut = x, or WSConv1x1(h) where the shape changes
    out = shortcut + α · g · F(h)                (g: the "skipinit" gain, a learnable scalar initialised to 0)

with ``F`` = WSConv3x3 - SN·2.74 - WSConv3x3 (basic block) or WSConv1x1 - SN·2.74 - WSConv3x3 (stride) -
SN·2.74 - WSConv1x1 (bottleneck, expansion 4). The expected variance grows by ``α²`` per block and is reset to
``1 + α²`` after a projection shortcut. Stem: WSConv7x7/2 (64) and 3x3/2 average pooling; head: global average
pooling of the residual stream (no neuron) and a linear layer with zero-initialised weights.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..neurons import NeuronFactory, StepMode, build_neuron_factory
from .layers import Flatten, SpikingBackbone, TimeDistributed
from .ottt_vgg import WS_SCALE, ScaledWSConv2d
from .registry import register_backbone

__all__ = ["NFBasicBlock", "NFBottleneck", "SpikingNFResNet", "nf_resnet34", "nf_resnet50", "nf_resnet101"]


def _ws(cin: int, cout: int, k: int, stride: int = 1) -> TimeDistributed:
    return TimeDistributed(ScaledWSConv2d(cin, cout, k, stride=stride, padding=k // 2))


class _NFBlock(nn.Module):
    """What both NF blocks share: the scaled pre-activation, the shortcut and the skip-init residual."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, beta: float, alpha: float, neuron: NeuronFactory) -> None:
        super().__init__()
        self.beta, self.alpha = float(beta), float(alpha)
        self.sn1 = neuron()
        out = planes * self.expansion
        self.downsample = _ws(cin, out, 1, stride) if stride != 1 or cin != out else None
        self.skipinit_gain = nn.Parameter(torch.zeros(()))

    def residual(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.sn1(x / self.beta) * WS_SCALE
        identity = self.downsample(h) if self.downsample is not None else x
        return self.residual(h) * self.skipinit_gain * self.alpha + identity


class NFBasicBlock(_NFBlock):
    """Two 3x3 weight-standardised convolutions (NF-ResNet-34)."""

    def __init__(self, cin: int, planes: int, stride: int, beta: float, alpha: float, neuron: NeuronFactory) -> None:
        super().__init__(cin, planes, stride, beta, alpha, neuron)
        self.conv1 = _ws(cin, planes, 3, stride)
        self.sn2 = neuron()
        self.conv2 = _ws(planes, planes, 3)

    def residual(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.sn2(self.conv1(h)) * WS_SCALE)


class NFBottleneck(_NFBlock):
    """1x1 - 3x3 (stride) - 1x1 weight-standardised convolutions, expansion 4 (NF-ResNet-50/101)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, beta: float, alpha: float, neuron: NeuronFactory) -> None:
        super().__init__(cin, planes, stride, beta, alpha, neuron)
        self.conv1 = _ws(cin, planes, 1)
        self.sn2 = neuron()
        self.conv2 = _ws(planes, planes, 3, stride)
        self.sn3 = neuron()
        self.conv3 = _ws(planes, planes * self.expansion, 1)

    def residual(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.sn3(self.conv2(self.sn2(self.conv1(h)) * WS_SCALE)) * WS_SCALE)


class SpikingNFResNet(SpikingBackbone):
    """Normaliser-free spiking ResNet (module docstring).

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        layers: blocks per stage (ResNet-34 / 50: ``(3, 4, 6, 3)``; 101: ``(3, 4, 23, 3)``).
        alpha: the residual scale α (official 0.2).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int | Sequence[int] = 224,
        neuron: NeuronFactory | None = None,
        step_mode: StepMode = "m",
        block: str = "basic",
        layers: Sequence[int] = (3, 4, 6, 3),
        alpha: float = 0.2,
    ) -> None:
        super().__init__(num_classes, build_neuron_factory(neuron), step_mode)
        del input_size  # global average pooling
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"SpikingNFResNet: block must be 'basic' or 'bottleneck', got {block!r}")
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"SpikingNFResNet: layers must be 4 positive block counts, got {tuple(layers)}")
        cls = NFBasicBlock if block == "basic" else NFBottleneck
        parts: list[nn.Module] = [_ws(in_channels, 64, 7, 2), TimeDistributed(nn.AvgPool2d(3, stride=2, padding=1))]
        cin, var = 64, 1.0
        for planes, n, stride in zip((64, 128, 256, 512), layers, (1, 2, 2, 2)):
            for i in range(n):
                b = cls(cin, planes, stride if i == 0 else 1, math.sqrt(var), alpha, self.spiking)
                var = 1.0 + alpha**2 if b.downsample is not None else var + alpha**2
                parts.append(b)
                cin = planes * cls.expansion
        parts += [TimeDistributed(nn.AdaptiveAvgPool2d(1)), Flatten(), TimeDistributed(nn.Linear(cin, num_classes))]
        self.body = nn.Sequential(*parts)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        head = parts[-1].module
        nn.init.zeros_(head.weight)  # the official head: zero weights, PyTorch's default bias
        head.presynaptic_trace = False  # it reads the residual stream, not spikes (OTTT: no trace, as the official code)
        self.finalize()


@register_backbone("nf_resnet34")
def nf_resnet34(**kwargs) -> SpikingNFResNet:
    """``spiking_nfresnet34``: basic blocks ``(3, 4, 6, 3)``."""
    return SpikingNFResNet(block="basic", layers=(3, 4, 6, 3), **kwargs)


@register_backbone("nf_resnet50")
def nf_resnet50(**kwargs) -> SpikingNFResNet:
    """``spiking_nfresnet50``: bottleneck blocks ``(3, 4, 6, 3)``."""
    return SpikingNFResNet(block="bottleneck", layers=(3, 4, 6, 3), **kwargs)


@register_backbone("nf_resnet101")
def nf_resnet101(**kwargs) -> SpikingNFResNet:
    """``spiking_nfresnet101``: bottleneck blocks ``(3, 4, 23, 3)``."""
    return SpikingNFResNet(block="bottleneck", layers=(3, 4, 23, 3), **kwargs)
