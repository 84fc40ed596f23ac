"""RevSResNet: reversible spiking ResNets of RevSNN (Zhang & Zhang, AAAI 2024).

Every stage is a :class:`~lightning_snn.backbones.reversible.ReversibleSequence` of reversible spiking
blocks whose two sub-networks F and G are the same pre-activation double convolution
(``SN -> Conv3x3 -> BN -> SN -> Conv3x3 -> BN`` on one half of the channels, BN over T·B·H·W). Stages
are joined by non-reversible downsampling layers ``SN -> AvgPool(3, s2, p1) -> Conv1x1 -> BN``, and the
network ends with ``SN -> global average pooling -> Linear`` applied at every time step (the method
averages the logits over T).

* ``revs_resnet21`` / ``revs_resnet37`` (CIFAR, 32x32): stem ``Conv3x3(3 -> 128) + BN``, half-widths
  ("planes") 64/128/256/448, i.e. stage widths 128/256/512/896, blocks [1,1,1,1] / [1,2,3,2].
  Parameters: 11.05M / 23.59M with 100 classes (10.97M / 23.51M with 10), the RevSNN README's figures.
  Default neuron: IF, V_th 1, hard reset to 0, detached reset, ATan surrogate (α = 2).
* ``revs_resnet24`` (CIFAR10-DVS / DVS128 Gesture, 2x128x128): stem ``Conv3x3(2 -> 32, s2) + BN +
  AvgPool(3, s2, p1)``, half-widths 16/32/48, blocks [1,2,2]; 0.26M parameters. Default neuron: LIF
  τ = 1.5 with decay_input, V_th 1, hard reset to 0, detached reset, sigmoid surrogate (α = 4).
* ``revs_resnet109`` (code only, not in the README): blocks [2,4,16,4].

**Stem and direct encoding.** The official CIFAR model applies the stem conv + BN once to the static
image and repeats the result T times. Here the backbone receives ``[T, B, C, H, W]`` and by default
applies the stem **per time step** (``stem_once=False``), which is correct for any input (direct or
Poisson encoding, event frames). With a repeated image it gives the same forward values and gradients,
but not bit-identical ones: BN statistics are taken over T·B·H·W instead of B·H·W (identical mean and
batch variance in exact arithmetic; the unbiased running-variance correction n/(n-1) differs by O(1/n)).
``stem_once=True`` reproduces the official computation exactly (stem on the first frame only, BN over
B·H·W, output expanded over T, which also saves T-1 copies of the stem activations); it checks that the
input is the same at every step and raises otherwise.

``reversible=False`` builds the non-reversible twin: the same modules and parameter names (state dicts
are interchangeable), the same coupling ``Y1 = X1 + F(X2), Y2 = X2 + G(Y1)``, trained with ordinary
autograd (BPTT through every block).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from ..neurons import BatchNormThroughTime, NeuronFactory, StepMode, build_neuron_factory
from .layers import Flatten, SpikingBackbone, TimeDistributed
from .registry import register_backbone
from .reversible import ReversibleBackboneMixin, ReversibleBlock, ReversibleSequence

__all__ = [
    "REVSNN_IF",
    "REVSNN_LIF_DVS",
    "RevSResidualFunction",
    "RevSResNet",
    "revs_resnet",
    "revs_resnet21",
    "revs_resnet24",
    "revs_resnet37",
    "revs_resnet109",
]

#: RevSResNet's CIFAR neuron: SpikingJelly MultiStepIFNode(detach_reset=True, surrogate ATan(α=2)).
REVSNN_IF: dict[str, Any] = {
    "type": "if",
    "v_threshold": 1.0,
    "v_reset": 0.0,
    "detach_reset": True,
    "surrogate": {"name": "atan", "alpha": 2.0},
}

#: RevSNN's DVS neuron: SpikingJelly MultiStepLIFNode(tau=1.5, detach_reset=True), decay_input, sigmoid α=4.
REVSNN_LIF_DVS: dict[str, Any] = {
    "type": "lif",
    "tau": 1.5,
    "decay_input": True,
    "v_threshold": 1.0,
    "v_reset": 0.0,
    "detach_reset": True,
    "surrogate": {"name": "sigmoid", "alpha": 4.0},
}


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
    return nn.Sequential(TimeDistributed(conv), BatchNormThroughTime(cout))


class RevSResidualFunction(nn.Module):
    """F / G of a RevSResNet block: ``SN -> Conv3x3 -> BN -> SN -> Conv3x3 -> BN`` (``planes`` channels)."""

    def __init__(self, planes: int, neuron: NeuronFactory) -> None:
        super().__init__()
        self.sn1 = neuron()
        self.conv1 = _conv_bn(planes, planes, 3)
        self.sn2 = neuron()
        self.conv2 = _conv_bn(planes, planes, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.sn2(self.conv1(self.sn1(x))))


def _downsample(cin: int, cout: int, neuron: NeuronFactory) -> nn.Sequential:
    """RevSResNet's transition between stages: ``SN -> AvgPool(3, s2, p1) -> Conv1x1 -> BN``."""
    return nn.Sequential(
        neuron(),
        TimeDistributed(nn.AvgPool2d(kernel_size=3, stride=2, padding=1)),
        TimeDistributed(nn.Conv2d(cin, cout, 1, bias=False)),
        BatchNormThroughTime(cout),
    )


class RevSResNet(ReversibleBackboneMixin, SpikingBackbone):
    """Reversible spiking ResNet (see the module docstring).

    Args:
        planes: channels of each stream per stage (the stage width is ``2 * planes``).
        layers: reversible blocks per stage.
        num_classes: classifier outputs.
        in_channels: input channels (3 for CIFAR, 2 for event frames).
        input_size: unused (global average pooling); accepted for the registry contract.
        neuron: neuron factory or spec; None uses the variant's neuron (IF/ATan for ``stem="cifar"``,
            LIF τ=1.5 for ``stem="dvs"``).
        step_mode: ``"m"``; ``"s"`` only with ``reversible=False``.
        stem: ``"cifar"`` (Conv3x3 s1 + BN) or ``"dvs"`` (Conv3x3 s2 + BN + AvgPool(3, s2, p1)).
        reversible: reversible blocks (True) or the non-reversible twin (False), same weights layout.
        stem_once: apply the stem to the first frame only (official CIFAR behaviour; input must be
            constant over T).
        preserve_rng_state: passed to every block (None: automatic).
    """

    def __init__(
        self,
        planes: Sequence[int] = (64, 128, 256, 448),
        layers: Sequence[int] = (1, 1, 1, 1),
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int | Sequence[int] = 32,
        neuron: NeuronFactory | Mapping[str, Any] | None = None,
        step_mode: StepMode = "m",
        stem: Literal["cifar", "dvs"] = "cifar",
        reversible: bool = True,
        stem_once: bool = False,
        preserve_rng_state: bool | None = None,
    ) -> None:
        if stem not in ("cifar", "dvs"):
            raise ValueError(f"stem must be 'cifar' or 'dvs', got {stem!r}")
        planes = [int(p) for p in planes]
        layers = [int(n) for n in layers]
        if not planes or len(planes) != len(layers):
            raise ValueError(f"planes {planes} and layers {layers} must be non-empty and of the same length")
        if any(n < 0 for n in layers) or any(p < 1 for p in planes):
            raise ValueError(f"planes must be >= 1 and layers >= 0, got {planes} / {layers}")
        default = REVSNN_IF if stem == "cifar" else REVSNN_LIF_DVS
        super().__init__(num_classes, build_neuron_factory(neuron, default=default), step_mode)
        del input_size
        self.planes = planes
        self.layers = layers
        self.stem_kind = stem
        self.stem_once = bool(stem_once)
        width = 2 * planes[0]
        if stem == "cifar":
            stem_layers: nn.Module = _conv_bn(in_channels, width, 3, 1)
        else:
            stem_layers = nn.Sequential(
                *_conv_bn(in_channels, width, 3, 2),
                TimeDistributed(nn.AvgPool2d(kernel_size=3, stride=2, padding=1)),
            )
        body: list[nn.Module] = [stem_layers]
        for i, (p, n) in enumerate(zip(planes, layers)):
            if i > 0:
                body.append(_downsample(2 * planes[i - 1], 2 * p, self.spiking))
            blocks = [
                ReversibleBlock(
                    RevSResidualFunction(p, self.spiking),
                    RevSResidualFunction(p, self.spiking),
                    step_mode=step_mode,
                    preserve_rng_state=preserve_rng_state,
                )
                for _ in range(n)
            ]
            body.append(ReversibleSequence(blocks, reversible=reversible, reuse_output_storage=True))
        body += [
            self.spiking(),
            TimeDistributed(nn.AdaptiveAvgPool2d(1)),
            Flatten(),
            TimeDistributed(nn.Linear(2 * planes[-1], num_classes)),
        ]
        self.body = nn.Sequential(*body)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.finalize()

    @property
    def num_blocks(self) -> int:
        return sum(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.stem_once and self.step_mode == "m"):
            return super().forward(x)
        if x.dim() != 5:
            raise ValueError(f"{type(self).__name__} expects [T, B, C, H, W], got shape {tuple(x.shape)}")
        if not (x.shape[0] == 1 or x.stride(0) == 0 or torch.equal(x, x[:1].expand_as(x))):
            raise ValueError(
                "stem_once=True needs the same frame at every time step (direct encoding of a static image); "
                "this input changes over T. Use stem_once=False for Poisson encoding or event data."
            )
        h = self.body[0](x[:1])  # the stem on one frame: BN statistics over B*H*W, as the official code
        h = h.expand(x.shape[0], *h.shape[1:])
        for layer in list(self.body)[1:]:
            h = layer(h)
        return h


def revs_resnet(**kwargs: Any) -> RevSResNet:
    """A RevSResNet of any layout: pass ``planes`` (per stream) and ``layers`` (blocks per stage)."""
    return RevSResNet(**kwargs)


def _cifar(layers: Sequence[int], kwargs: dict[str, Any]) -> RevSResNet:
    kwargs.setdefault("planes", (64, 128, 256, 448))
    kwargs.setdefault("stem", "cifar")
    return RevSResNet(layers=layers, **kwargs)


@register_backbone("revs_resnet21")
def revs_resnet21(**kwargs: Any) -> RevSResNet:
    """RevSResNet21 (CIFAR): planes 64/128/256/448, blocks [1,1,1,1]; 11.05M params with 100 classes."""
    return _cifar((1, 1, 1, 1), kwargs)


@register_backbone("revs_resnet37")
def revs_resnet37(**kwargs: Any) -> RevSResNet:
    """RevSResNet37 (CIFAR): planes 64/128/256/448, blocks [1,2,3,2]; 23.59M params with 100 classes."""
    return _cifar((1, 2, 3, 2), kwargs)


@register_backbone("revs_resnet109")
def revs_resnet109(**kwargs: Any) -> RevSResNet:
    """RevSResNet109 (in the official code only): blocks [2,4,16,4]; 70.08M params with 100 classes."""
    return _cifar((2, 4, 16, 4), kwargs)


@register_backbone("revs_resnet24")
def revs_resnet24(**kwargs: Any) -> RevSResNet:
    """RevSResNet24 (CIFAR10-DVS / DVS128 Gesture): planes 16/32/48, blocks [1,2,2], DVS stem; 0.26M params."""
    kwargs.setdefault("planes", (16, 32, 48))
    kwargs.setdefault("stem", "dvs")
    kwargs.setdefault("in_channels", 2)
    return RevSResNet(layers=(1, 2, 2), **kwargs)


register_backbone("revs_resnet")(revs_resnet)
