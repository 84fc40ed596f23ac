"""Pre-activation ResNets of DSR (Meng et al., CVPR 2022), layer for layer as the official code.

Two variants share one class:

* ``preact_resnet18`` (CIFAR, ``cifar/modules/preresnet.py``): 3x3 stem convolution (no bias, no
  normalisation, no neuron), four stages of two pre-activation blocks (64/128/256/512 channels,
  strides 1/2/2/2) whose convolutions have biases and whose projection shortcut is a bare 1x1
  convolution; head ``BN - neuron - global average pool - neuron - dropout - FC - BN1d - neuron``.
* ``preact_resnet18_imagenet`` (ImageNet, ``imagenet/preresnet_snn.py`` / ``preresnet_ann.py``):
  7x7/2 stem convolution, BN, neuron, 3x3/2 average pooling; bias-free convolutions, projection
  shortcut 1x1 convolution + BN; head ``BN - neuron - global average pool - neuron - FC - BN1d -
  neuron``.

A block computes ``x' = SN(BN(x)); out = conv2(dropout(SN(BN(conv1(x'))))) + shortcut(x')``: the
shortcut, identity or projection, takes the *activated* input ``x'`` (as the official code does).
The network ends in a neuron, so its per-step output ``[T, B, K]`` is a spike train; the DSR method
reads it out as the (weighted) firing rate. With the ``ann_relu`` neuron factory and ``T = 1`` the same
module is the ANN of DSR's hybrid ImageNet pipeline, with identical parameter names.

The official CIFAR head pools with ``AvgPool2d(4)`` over the final 4x4 map of a 32x32 input; global
average pooling is the same there and also accepts other input sizes.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

from torch import nn

from ..neurons import NeuronFactory, StepMode, build_neuron_factory
from .layers import Flatten, SpikingBackbone, TimeDistributed
from .registry import register_backbone

__all__ = ["PreActBlock", "PreActResNet", "preact_resnet18", "preact_resnet18_imagenet"]

Variant = Literal["cifar", "imagenet"]


def _td_bn(channels: int) -> TimeDistributed:
    return TimeDistributed(nn.BatchNorm2d(channels))


class PreActBlock(nn.Module):
    """Pre-activation basic block (see the module docstring)."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int,
        neuron: NeuronFactory,
        variant: Variant = "cifar",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        bias = variant == "cifar"
        self.bn1 = _td_bn(in_channels)
        self.sn1 = neuron()
        self.conv1 = TimeDistributed(nn.Conv2d(in_channels, channels, 3, stride, 1, bias=bias))
        self.bn2 = _td_bn(channels)
        self.sn2 = neuron()
        self.dropout = TimeDistributed(nn.Dropout(dropout)) if dropout > 0 else nn.Identity()
        self.conv2 = TimeDistributed(nn.Conv2d(channels, channels, 3, 1, 1, bias=bias))
        if stride != 1 or in_channels != channels:
            conv = TimeDistributed(nn.Conv2d(in_channels, channels, 1, stride, 0, bias=bias))
            self.shortcut: nn.Module = conv if variant == "cifar" else nn.Sequential(conv, _td_bn(channels))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        x = self.sn1(self.bn1(x))
        out = self.conv2(self.dropout(self.sn2(self.bn2(self.conv1(x)))))
        return out + self.shortcut(x)


class PreActResNet(SpikingBackbone):
    """Pre-activation ResNet of DSR.

    Args:
        num_classes: classifier outputs.
        in_channels: input channels.
        input_size: accepted for the common backbone interface (global pooling makes the net size-agnostic).
        neuron: neuron factory or spec (DSR: ``{type: dsr_if, ...}`` / ``{type: dsr_lif, ...}``;
            the hybrid pipeline's ANN: ``{type: ann_relu}``).
        step_mode: ``"m"`` (DSR neurons need it) or ``"s"`` (ANN / other neurons only).
        layers: blocks per stage (ResNet-18: ``(2, 2, 2, 2)``).
        width: channels of the first stage (doubled at every later stage).
        variant: ``"cifar"`` or ``"imagenet"`` (module docstring).
        dropout: dropout rate inside the blocks and before the classifier (CIFAR variant; official default 0).
        head: ``"spiking"`` (DSR: ``... - pool - neuron - dropout - FC - BN1d - neuron``) or ``"linear"``
            (SLTT's ``spiking_resnet18``: ``BN - neuron - pool - dropout - FC``, real-valued logits).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int | Sequence[int] = 32,
        neuron: NeuronFactory | None = None,
        step_mode: StepMode = "m",
        layers: Sequence[int] = (2, 2, 2, 2),
        width: int = 64,
        variant: Variant = "cifar",
        dropout: float = 0.0,
        head: Literal["spiking", "linear"] = "spiking",
    ) -> None:
        super().__init__(num_classes, build_neuron_factory(neuron), step_mode)
        del input_size
        if head not in ("spiking", "linear"):
            raise ValueError(f"PreActResNet: head must be 'spiking' or 'linear', got {head!r}")
        if variant not in ("cifar", "imagenet"):
            raise ValueError(f"PreActResNet: variant must be 'cifar' or 'imagenet', got {variant!r}")
        if variant == "imagenet" and dropout > 0:
            raise ValueError("PreActResNet: the ImageNet variant has no dropout (the official model has none)")
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"PreActResNet: layers must be 4 positive block counts, got {tuple(layers)}")
        self.variant = variant
        parts: list[tuple[str, nn.Module]] = []
        if variant == "cifar":
            parts.append(("conv1", TimeDistributed(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False))))
        else:
            parts += [
                ("conv1", TimeDistributed(nn.Conv2d(in_channels, width, 7, 2, 3, bias=False))),
                ("bn1", _td_bn(width)),
                ("sn1", self.spiking()),
                ("pool1", TimeDistributed(nn.AvgPool2d(kernel_size=3, stride=2, padding=1))),
            ]
        cin = width
        for i, (blocks, stride) in enumerate(zip(layers, (1, 2, 2, 2)), start=1):
            channels = width * 2 ** (i - 1)
            stage = []
            for j in range(blocks):
                stage.append(PreActBlock(cin, channels, stride if j == 0 else 1, self.spiking, variant, dropout))
                cin = channels
            parts.append((f"layer{i}", nn.Sequential(*stage)))
        parts += [
            ("bn_out", _td_bn(cin)),
            ("sn_out", self.spiking()),
            ("pool", TimeDistributed(nn.AdaptiveAvgPool2d(1))),
        ]
        if head == "spiking":
            parts.append(("sn_pool", self.spiking()))
        parts.append(("flatten", Flatten()))
        if dropout > 0:
            parts.append(("dropout", TimeDistributed(nn.Dropout(dropout))))
        parts.append(("fc", TimeDistributed(nn.Linear(cin, num_classes))))
        if head == "spiking":
            parts += [("bn_fc", TimeDistributed(nn.BatchNorm1d(num_classes))), ("sn_fc", self.spiking())]
        self.body = nn.Sequential(OrderedDict(parts))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and variant == "cifar":
                nn.init.zeros_(m.bias)
        self.finalize()


register_backbone("preact_resnet")(PreActResNet)


@register_backbone("preact_resnet18")
def preact_resnet18(**kwargs) -> PreActResNet:
    """DSR's CIFAR pre-activation ResNet-18 (``preresnet.resnet18_if`` / ``resnet18_lif``)."""
    kwargs.setdefault("variant", "cifar")
    return PreActResNet(layers=(2, 2, 2, 2), **kwargs)


@register_backbone("preact_resnet18_imagenet")
def preact_resnet18_imagenet(**kwargs) -> PreActResNet:
    """DSR's ImageNet pre-activation ResNet-18 (``preresnet_snn.resnet18_if``, ``preresnet_ann.resnet18``)."""
    kwargs.setdefault("variant", "imagenet")
    return PreActResNet(layers=(2, 2, 2, 2), **kwargs)
