"""The STBP training-and-compression repository's "ResNet18" (github.com/ZLkanyo009/STBP-train-and-compression,
``models/ResNet.py``, unchanged from the README-era commit ``1de278bf`` to HEAD ``8769231b``).

Despite its name it is neither the ImageNet ResNet-18 nor the tdBN paper's ResNet-19 (``resnet19`` here,
128-channel stem): a 3x3 stem of **64** channels with tdBN and a neuron, then basic blocks ``[3, 3, 2]`` of
128 / 256 (stride 2) / 512 (stride 2) channels, so that the first block of the first stage has a 1x1
convolution + tdBN (alpha = 1/sqrt 2) shortcut from 64 to 128 channels; global average pooling without a
neuron after it; FC 512->256 + neuron; FC 256->classes + neuron (the output spikes, read out as their rate).
Convolutions have no bias, the two linear layers do. 12,630,858 parameters for 10 classes
(``resnet19``: 12,697,994). The repository hard-codes 10 classes; ``num_classes`` is kept as an argument.
"""
from __future__ import annotations

from typing import Any

from .registry import register_backbone
from .resnet import SpikingResNet

__all__ = ["stbp_resnet18"]


@register_backbone("stbp_resnet18")
def stbp_resnet18(**kwargs: Any) -> SpikingResNet:
    """The STBP repository's ``ResNet18``: 64C3 stem, [3, 3, 2] blocks of 128/256/512, FC256, FC, spiking output."""
    kwargs.setdefault("hidden", 256)
    kwargs.setdefault("spiking_output", True)
    return SpikingResNet(stages=[(128, 3, 1), (256, 3, 2), (512, 2, 2)], stem_channels=64, **kwargs)
