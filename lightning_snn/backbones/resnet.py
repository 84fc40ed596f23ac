"""Spiking ResNets with threshold-dependent BatchNorm (Zheng et al., AAAI 2021, Sec. 4 and Fig. 3).

* ``resnet19``: the tdBN paper's CIFAR ResNet-19 — 128C3 stem, stages of 3/3/2 basic blocks with
  128/256/512 channels, global average pooling, FC256, FC. The STBP quantization repository's
  ``ResNet18`` has the same stages behind a 64C3 stem (hence a 1x1 shortcut into the first stage): it is
  registered as ``stbp_resnet18`` (``stbp_resnet.py``).
* ``resnet18``: the CIFAR ResNet-18 used by TET and Rate-BP — 64C3 stem, stages of 2/2/2/2 blocks with
  64/128/256/512 channels, global average pooling, FC.

A basic block computes ``S = SN(tdBN_{α=1/√2}(conv(SN(tdBN(conv(x))))) + shortcut(x))`` where the
shortcut is identity or conv1x1 + tdBN with α = 1/√2, so that the sum reaching the neuron keeps the
pre-activation variance the tdBN analysis asks for.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from ..neurons import NeuronFactory, StepMode, build_neuron_factory
from .layers import Flatten, SpikingBackbone, TimeDistributed, conv_bn
from .registry import register_backbone

__all__ = ["SpikingBasicBlock", "SpikingResNet", "resnet18", "resnet19"]


class SpikingBasicBlock(nn.Module):
    """Two 3x3 conv + tdBN layers with a residual connection and a neuron after the sum."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int,
        neuron: NeuronFactory,
        v_threshold: float,
        norm: str = "tdbn",
    ) -> None:
        super().__init__()
        alpha = 1.0 / math.sqrt(2.0)
        self.conv1 = conv_bn(in_channels, channels, 3, stride, norm=norm, v_threshold=v_threshold)
        self.sn1 = neuron()
        self.conv2 = conv_bn(channels, channels, 3, 1, norm=norm, alpha=alpha, v_threshold=v_threshold)
        if stride != 1 or in_channels != channels:
            self.shortcut: nn.Module = conv_bn(in_channels, channels, 1, stride, 0, norm=norm, alpha=alpha, v_threshold=v_threshold)
        else:
            self.shortcut = nn.Identity()
        self.sn2 = neuron()

    def forward(self, x):
        out = self.conv2(self.sn1(self.conv1(x)))
        return self.sn2(out + self.shortcut(x))


class SpikingResNet(SpikingBackbone):
    """Spiking ResNet for 32x32 inputs: stem conv, stages of basic blocks, pooling, classifier head.

    Args:
        stages: ``(channels, num_blocks, stride)`` per stage.
        stem_channels: width of the 3x3 stem convolution.
        hidden: width of an extra spiking FC layer before the classifier (ResNet-19's FC256), or None.
        spiking_output: put a neuron on the classifier output (as the STBP repository does).
        norm: ``"tdbn"`` (default) or ``"bn"`` (BN through time).
    """

    def __init__(
        self,
        stages: Sequence[Sequence[int]],
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int | Sequence[int] = 32,
        neuron: NeuronFactory | None = None,
        step_mode: StepMode = "m",
        stem_channels: int = 64,
        hidden: int | None = None,
        spiking_output: bool = False,
        norm: str = "tdbn",
    ) -> None:
        super().__init__(num_classes, build_neuron_factory(neuron), step_mode)
        del input_size  # global average pooling makes the head independent of the input size
        vth = self.threshold()
        layers: list[nn.Module] = [conv_bn(in_channels, stem_channels, 3, 1, norm=norm, v_threshold=vth), self.spiking()]
        cin = stem_channels
        for channels, blocks, stride in stages:
            for i in range(blocks):
                layers.append(SpikingBasicBlock(cin, channels, stride if i == 0 else 1, self.spiking, vth, norm))
                cin = channels
        layers += [TimeDistributed(nn.AdaptiveAvgPool2d(1)), Flatten()]
        if hidden:
            layers += [TimeDistributed(nn.Linear(cin, hidden)), self.spiking()]
            cin = hidden
        layers.append(TimeDistributed(nn.Linear(cin, num_classes)))
        if spiking_output:
            layers.append(self.spiking())
        self.body = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.finalize()


@register_backbone("resnet18")
def resnet18(**kwargs) -> SpikingResNet:
    """CIFAR spiking ResNet-18 (TET, Rate-BP): 64C3, [2, 2, 2, 2] blocks of 64/128/256/512, FC."""
    return SpikingResNet(stages=[(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)], stem_channels=64, **kwargs)


@register_backbone("resnet19")
def resnet19(**kwargs) -> SpikingResNet:
    """tdBN ResNet-19: 128C3, [3, 3, 2] blocks of 128/256/512, FC256, FC (the STBP repo's ``ResNet18`` is
    ``stbp_resnet18``: a 64C3 stem)."""
    kwargs.setdefault("hidden", 256)
    return SpikingResNet(stages=[(128, 3, 1), (256, 3, 2), (512, 2, 2)], stem_channels=128, **kwargs)
