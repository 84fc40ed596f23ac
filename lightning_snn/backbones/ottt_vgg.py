"""The VGG of OTTT (Xiao et al., NeurIPS 2022; ``models/spiking_vgg.py`` of github.com/pkuxmq/OTTT-SNN).

``online_spiking_vgg11_ws``: no BatchNorm (it would mix the time steps of online training); instead every
convolution uses *scaled weight standardisation* (Qiao et al. 2019 / Brock et al. 2021, NF-nets):

    Ŵ = gain · (W - mean(W)) / sqrt(Var(W) · fan_in + ε)          per output channel, ε = 1e-4

(unbiased variance, as ``torch.var``; ``gain`` a learnable per-channel scale initialised to 1). Each
convolution is followed by a neuron and a constant scale of 2.74, which restores unit variance after
the neuron for standardised weights::

    64C3 - 128C3 - AP2 - 256C3 - 256C3 - AP2 - 512C3 - 512C3 - AP2 - 512C3 - 512C3 - GAP - FC

(the "light classifier": adaptive average pooling to ``fc_hw x fc_hw``, 1 in every official command, and
one plain linear layer initialised N(0, 0.01)). ``dropout`` is the official ``neuron_dropout``: one
Bernoulli mask per neuron drawn at the first time step and kept for the whole sequence
(:class:`TimeFixedDropout`). The OTTT method turns the backbone's weight gradients into presynaptic
trace x error products with hooks; the network itself is plain (ARCHITECTURE.md, mechanism 2).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..neurons import NeuronFactory, StepMode, build_neuron_factory
from .feedback import VariationalDropout
from .layers import Flatten, SpikingBackbone, TimeDistributed
from .registry import register_backbone

__all__ = ["OTTT_VGG11_CFG", "OTTTVGG", "ScaledWSConv2d", "Scale", "TimeFixedDropout", "ottt_vgg11_ws"]

#: cfg "A" of the official code: channel widths, "M" marks 2x2 average pooling (no pooling after the last pair)
OTTT_VGG11_CFG: tuple[int | str, ...] = (64, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)

#: the constant after every neuron of the weight-standardised network (official ``Scale(2.74)``)
WS_SCALE = 2.74


class ScaledWSConv2d(nn.Conv2d):
    """Conv2d with scaled weight standardisation (module docstring); bias kept, as the official layer."""

    def __init__(self, *args, gain: bool = True, eps: float = 1e-4, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gain = nn.Parameter(torch.ones(self.out_channels, 1, 1, 1)) if gain else None
        self.eps = float(eps)

    def standardized_weight(self) -> torch.Tensor:
        fan_in = self.weight[0].numel()
        mean = self.weight.mean(dim=(1, 2, 3), keepdim=True)
        var = self.weight.var(dim=(1, 2, 3), keepdim=True)
        weight = (self.weight - mean) / (var * fan_in + self.eps).sqrt()
        return weight * self.gain if self.gain is not None else weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class Scale(nn.Module):
    """Multiply by a constant."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class TimeFixedDropout(VariationalDropout):
    """Dropout whose mask is drawn once per sequence and reused at every time step, in both step modes
    (IDE's :class:`~lightning_snn.backbones.feedback.VariationalDropout`, whose mask covers one step's input,
    applied to every frame of a multi-step input); identity in evaluation. SpikingJelly's ``layer.Dropout``,
    the neuron dropout of the SLTT and OTTT codes."""

    def __init__(self, p: float, step_mode: StepMode = "m") -> None:
        super().__init__(p)
        self.step_mode: StepMode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s" or not self.training or self.p == 0.0:
            return super().forward(x)
        return x * super().forward(torch.ones_like(x[0]))  # the [B, ...] mask of the sequence, every step


class OTTTVGG(SpikingBackbone):
    """OTTT's weight-standardised VGG (module docstring).

    Args:
        cfg: channel widths and ``"M"`` (2x2 average pooling).
        fc_hw: side of the adaptive average pooling before the classifier (official: 1).
        dropout: per-neuron dropout with a mask fixed over time (official ``-drop_rate``; 0.1 on DVS-CIFAR10).
        weight_standardization: False gives the official ``online_spiking_vgg11`` (plain convolutions).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int | Sequence[int] = 32,
        neuron: NeuronFactory | None = None,
        step_mode: StepMode = "m",
        cfg: Sequence[int | str] = OTTT_VGG11_CFG,
        fc_hw: int = 1,
        dropout: float = 0.0,
        weight_standardization: bool = True,
    ) -> None:
        super().__init__(num_classes, build_neuron_factory(neuron), step_mode)
        del input_size  # adaptive pooling makes the head independent of the input size
        layers: list[nn.Module] = []
        cin = in_channels
        for item in cfg:
            if item == "M":
                layers.append(TimeDistributed(nn.AvgPool2d(2)))
                continue
            conv_cls = ScaledWSConv2d if weight_standardization else nn.Conv2d
            layers += [TimeDistributed(conv_cls(cin, int(item), 3, padding=1)), self.spiking(), Scale(WS_SCALE)]
            if dropout > 0:
                layers.append(TimeFixedDropout(dropout))
            cin = int(item)
        layers += [TimeDistributed(nn.AdaptiveAvgPool2d(fc_hw)), Flatten(), TimeDistributed(nn.Linear(cin * fc_hw * fc_hw, num_classes))]
        self.body = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        self.finalize()


register_backbone("ottt_vgg")(OTTTVGG)


@register_backbone("ottt_vgg11_ws")
def ottt_vgg11_ws(**kwargs) -> OTTTVGG:
    """``online_spiking_vgg11_ws`` of the OTTT code (cfg "A", weight standardisation, light classifier)."""
    return OTTTVGG(cfg=OTTT_VGG11_CFG, **kwargs)
