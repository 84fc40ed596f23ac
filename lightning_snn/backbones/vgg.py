"""VGGSNN of TET (Deng et al., ICLR 2022) for event data: 64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-
512C3-512C3-AP2-FC, BN through time (tdBN optional), a neuron after every convolution.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..neurons import NeuronFactory, StepMode, build_neuron_factory
from .layers import Flatten, SpikingBackbone, TimeDistributed, conv_bn, to_pair
from .registry import register_backbone

__all__ = ["VGGSNN", "VGGSNN_CFG"]

#: channel widths, "A" marks 2x2 average pooling
VGGSNN_CFG: tuple[int | str, ...] = (64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A")


class VGGSNN(SpikingBackbone):
    """VGGSNN; the classifier sees ``512·(H/16)·(W/16)`` features (3x3 for the usual 48x48 CIFAR10-DVS)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 2,
        input_size: int | Sequence[int] = 48,
        neuron: NeuronFactory | None = None,
        step_mode: StepMode = "m",
        cfg: Sequence[int | str] = VGGSNN_CFG,
        norm: str = "bn",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(num_classes, build_neuron_factory(neuron), step_mode)
        h, w = to_pair(input_size)
        vth = self.threshold()
        layers: list[nn.Module] = []
        cin = in_channels
        for item in cfg:
            if item == "A":
                layers.append(TimeDistributed(nn.AvgPool2d(2)))
                h, w = h // 2, w // 2
            else:
                layers += [conv_bn(cin, int(item), 3, norm=norm, v_threshold=vth), self.spiking()]
                cin = int(item)
        if h < 1 or w < 1:
            raise ValueError(f"VGGSNN: input_size {input_size} is too small for {cfg.count('A')} poolings")
        layers.append(Flatten())
        if dropout > 0:
            layers.append(TimeDistributed(nn.Dropout(dropout)))
        layers.append(TimeDistributed(nn.Linear(cin * h * w, num_classes)))
        self.body = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.finalize()


register_backbone("vggsnn")(VGGSNN)
