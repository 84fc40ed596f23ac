"""The example networks of the STBP training-and-compression repository: MNISTNet and CifarNet.

Layer for layer as in that repository (``models/ExampleNet.py``): every convolution, pooling and
linear layer is followed by a spiking neuron, pooling is average pooling, the output layer spikes too
(``spiking_output=True``) and the method decodes by the mean over T (frequency coding).
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..neurons import NeuronFactory, StepMode, build_neuron_factory
from .layers import Flatten, SpikingBackbone, TimeDistributed, conv_bn, to_pair
from .registry import register_backbone

__all__ = ["MNISTNet", "CifarNet"]


class MNISTNet(SpikingBackbone):
    """MNISTNet: 15C5-AP2-40C5-AP2-FC300-FC(num_classes), LIF after every layer, no normalisation.

    ``input_size`` sets the first linear layer (7·7·40 for 28x28 MNIST, 2·2·40 for 8x8 digits).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int | Sequence[int] = 28,
        neuron: NeuronFactory | None = None,
        step_mode: StepMode = "m",
        channels: Sequence[int] = (15, 40),
        hidden: int = 300,
        spiking_output: bool = True,
    ) -> None:
        super().__init__(num_classes, build_neuron_factory(neuron), step_mode)
        h, w = to_pair(input_size)
        c1, c2 = channels
        layers: list[nn.Module] = [
            TimeDistributed(nn.Conv2d(in_channels, c1, 5, 1, 2, bias=False)),
            self.spiking(),
            TimeDistributed(nn.AvgPool2d(2)),
            self.spiking(),
            TimeDistributed(nn.Conv2d(c1, c2, 5, 1, 2, bias=False)),
            self.spiking(),
            TimeDistributed(nn.AvgPool2d(2)),
            self.spiking(),
            Flatten(),
            TimeDistributed(nn.Linear(c2 * (h // 4) * (w // 4), hidden)),
            self.spiking(),
            TimeDistributed(nn.Linear(hidden, num_classes)),
        ]
        if spiking_output:
            layers.append(self.spiking())
        self.body = nn.Sequential(*layers)
        self.finalize()


class CifarNet(SpikingBackbone):
    """CifarNet: 128C3-256C3-AP2-512C3-AP2-1024C3-512C3-FC1024-FC512-FC(num_classes) with tdBN."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int | Sequence[int] = 32,
        neuron: NeuronFactory | None = None,
        step_mode: StepMode = "m",
        norm: str = "tdbn",
        spiking_output: bool = True,
    ) -> None:
        super().__init__(num_classes, build_neuron_factory(neuron), step_mode)
        h, w = to_pair(input_size)
        vth = self.threshold()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [conv_bn(cin, cout, 3, norm=norm, v_threshold=vth), self.spiking()]

        def pool() -> list[nn.Module]:
            return [TimeDistributed(nn.AvgPool2d(2)), self.spiking()]

        layers: list[nn.Module] = [
            *block(in_channels, 128),
            *block(128, 256),
            *pool(),
            *block(256, 512),
            *pool(),
            *block(512, 1024),
            *block(1024, 512),
            Flatten(),
            TimeDistributed(nn.Linear(512 * (h // 4) * (w // 4), 1024)),
            self.spiking(),
            TimeDistributed(nn.Linear(1024, 512)),
            self.spiking(),
            TimeDistributed(nn.Linear(512, num_classes)),
        ]
        if spiking_output:
            layers.append(self.spiking())
        self.body = nn.Sequential(*layers)
        self.finalize()


register_backbone("mnistnet")(MNISTNet)
register_backbone("cifarnet")(CifarNet)
