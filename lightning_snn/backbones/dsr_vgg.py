"""VGG of DSR (Meng et al., CVPR 2022) for DVS-CIFAR10, layer for layer as ``cifar/modules/vgg.py``.

Every convolution (3x3, padding 1, with bias) is followed by BN, a neuron and dropout (0.1); "M" is
2x2 average pooling. After the five pooling stages an adaptive average pooling to 7x7 (for 48x48
inputs the 1x1 map is replicated, as in the official code) feeds ``FC(512*7*7, K) - BN1d - neuron``;
the per-step output ``[T, B, K]`` is a spike train read out as the (weighted) firing rate.

Initialisation as the official code: Kaiming-normal (fan-out) convolutions with zero bias, BN 1/0,
classifier weights ``N(0, 0.01)`` with zero bias.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..neurons import NeuronFactory, StepMode, build_neuron_factory
from .layers import Flatten, SpikingBackbone, TimeDistributed
from .ottt_vgg import TimeFixedDropout
from .registry import register_backbone

__all__ = ["DSR_VGG_CFGS", "DSRVGG", "dsr_vgg11"]

#: the official code's configurations, stage by stage ("M": 2x2 average pooling)
DSR_VGG_CFGS: dict[str, tuple[tuple[int | str, ...], ...]] = {
    "vgg11": ((64, "M"), (128, "M"), (256, 256, "M"), (512, 512, "M"), (512, 512, "M")),
    "vgg13": ((64, 64, "M"), (128, 128, "M"), (256, 256, "M"), (512, 512, "M"), (512, 512, "M")),
    "vgg16": ((64, 64, "M"), (128, 128, "M"), (256, 256, 256, "M"), (512, 512, 512, "M"), (512, 512, 512, "M")),
    "vgg19": (
        (64, 64, "M"), (128, 128, "M"), (256, 256, 256, 256, "M"), (512, 512, 512, 512, "M"), (512, 512, 512, 512, "M"),
    ),
}


class DSRVGG(SpikingBackbone):
    """DSR's VGG (see the module docstring).

    Args:
        num_classes: classifier outputs.
        in_channels: input channels (2 polarities for DVS-CIFAR10).
        input_size: accepted for the common interface (the adaptive pooling fixes the head size).
        neuron: neuron factory or spec (``{type: dsr_if, ...}`` / ``{type: dsr_lif, ...}``).
        step_mode: ``"m"`` for DSR neurons.
        cfg: ``"vgg11"`` (default), ``"vgg13"``, ``"vgg16"``, ``"vgg19"``.
        dropout: dropout after every neuron of the feature extractor (official default 0.1).
        pool_size: side of the adaptive average pooling before the classifier (official: 7).
        head: ``"spiking"`` (``FC - BN1d - neuron``, DSR) or ``"linear"`` (``FC``: SLTT's ``spiking_vgg11_bn``).
        time_fixed_dropout: draw the dropout mask once per sequence (SpikingJelly ``layer.Dropout``, as SLTT's
            code) instead of at every step.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 2,
        input_size: int | Sequence[int] = 48,
        neuron: NeuronFactory | None = None,
        step_mode: StepMode = "m",
        cfg: str = "vgg11",
        dropout: float = 0.1,
        pool_size: int = 7,
        head: str = "spiking",
        time_fixed_dropout: bool = False,
    ) -> None:
        super().__init__(num_classes, build_neuron_factory(neuron), step_mode)
        del input_size
        if head not in ("spiking", "linear"):
            raise ValueError(f"DSRVGG: head must be 'spiking' (FC - BN1d - neuron, DSR) or 'linear' (FC, SLTT), got {head!r}")
        if cfg not in DSR_VGG_CFGS:
            raise ValueError(f"DSRVGG: unknown cfg {cfg!r}; choose one of {sorted(DSR_VGG_CFGS)}")
        stages = []
        cin = in_channels
        for stage in DSR_VGG_CFGS[cfg]:
            layers: list[nn.Module] = []
            for item in stage:
                if item == "M":
                    layers.append(TimeDistributed(nn.AvgPool2d(kernel_size=2, stride=2)))
                else:
                    layers += [
                        TimeDistributed(nn.Conv2d(cin, int(item), 3, padding=1)),
                        TimeDistributed(nn.BatchNorm2d(int(item))),
                        self.spiking(),
                        TimeFixedDropout(dropout) if time_fixed_dropout else TimeDistributed(nn.Dropout(dropout)),
                    ]
                    cin = int(item)
            stages.append(nn.Sequential(*layers))
        self.body = nn.Sequential(
            *stages,
            TimeDistributed(nn.AdaptiveAvgPool2d((pool_size, pool_size))),
            Flatten(),
            TimeDistributed(nn.Linear(cin * pool_size * pool_size, num_classes)),
            *((TimeDistributed(nn.BatchNorm1d(num_classes)), self.spiking()) if head == "spiking" else ()),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        self.finalize()


@register_backbone("dsr_vgg11")
def dsr_vgg11(**kwargs) -> DSRVGG:
    """DSR's VGG-11 for DVS-CIFAR10 (``vgg.vgg11_if`` / ``vgg.vgg11_lif``)."""
    return DSRVGG(cfg="vgg11", **kwargs)
