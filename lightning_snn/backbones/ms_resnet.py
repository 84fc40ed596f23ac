"""Membrane-shortcut ResNets (MS-ResNet; Hu, Deng, Wu, Yao & Li, "Advancing Spiking Neural Networks
towards Deep Residual Learning", IEEE TNNLS 2024, arXiv 2112.08954, Sec. III-B and Fig. 2).

A block fires *before* each convolution and adds the shortcut to the real-valued (membrane-like) stream::

    X_{l+1} = X_l + BN(conv(SN(BN(conv(SN(X_l))))))       (identity shortcut)
    X_{l+1} = BN(conv1x1(X_l)) + BN(conv(SN(...)))         (projection where the shape changes)

so the spikes never pass through a shortcut and the identity path carries membrane potential between
blocks; one neuron after the last stage turns the stream into spikes for pooling and the classifier.

Two variants share :class:`MSResNet`:

* ``variant="imagenet"`` (the official ``models/MS_ResNet.py``, ``ResNet_origin_18`` of
  github.com/Ariande1/MS-ResNet; SpikingJelly's ``activation_based/model/ms_resnet.py`` builds the same
  network): stem ``conv7x7/2 - BN`` without a neuron and without max-pooling (the official code
  defines a max-pool it never calls); every stage starts with stride 2 (the first one too, in place of
  the pool); projection shortcut ``conv1x1(stride) - BN`` on the un-spiked input; head ``SN - global
  average pool - FC``. BN weights start at the threshold 0.5 (the official "tdBN" init) except the
  last BN of each residual branch, which starts at 0. Official neuron (:data:`MS_LIF`): leak 0.25, threshold
  0.5, hard reset to 0 with the reset detached, rectangular surrogate of width 1 and height 1.
* ``variant="cifar"`` (the MS-ResNet baselines ``ms_resnet18/34`` of RevSNN, github.com/mi804/RevSNN,
  ``cifar10/ms_resnet.py``): stem ``conv3x3 - BN``, stage strides 1/2/2/2, projection shortcut
  ``SN - conv1x1(stride) - BN`` (spike before conv there too), BN weights 1, IF neurons with ATan
  (alpha = 2) and a detached hard reset (:data:`~lightning_snn.backbones.revs_resnet.REVSNN_IF`).

The official nets average the pooled spikes over T before the FC; the FC here runs per time step and
the method averages its outputs, which is the same because the FC is affine.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

from torch import nn

from ..neurons import NeuronFactory, StepMode, build_neuron_factory
from .layers import Flatten, SpikingBackbone, TimeDistributed, conv_bn
from .registry import register_backbone
from .revs_resnet import REVSNN_IF

__all__ = ["MS_LIF", "MSBlock", "MSResNet", "ms_resnet18", "ms_resnet34"]

Variant = Literal["imagenet", "cifar"]

#: MS-ResNet's official neuron (``mem_update`` / ``ActFun``): u = 0.25·u·(1 - s) + x, s = [u > 0.5],
#: reset detached, gradient 1 for |u - 0.5| < 0.5.
MS_LIF: dict[str, Any] = {
    "type": "lif",
    "decay": 0.25,
    "v_threshold": 0.5,
    "v_reset": 0.0,
    "detach_reset": True,
    "surrogate": {"name": "rectangular", "width": 1.0},
}


def _init_bn(seq: nn.Sequential, weight: float) -> nn.Sequential:
    """Set the weight of the BN in a ``conv_bn`` pair (the official init: the threshold, or 0 / 1)."""
    nn.init.constant_(seq[1].weight, weight)
    return seq


class MSBlock(nn.Module):
    """``SN - conv3x3(stride) - BN - SN - conv3x3 - BN``, plus the identity or projection shortcut.

    Args:
        cin / cout / stride: block shape.
        neuron: neuron factory.
        spiking_shortcut: put a neuron before the projection's 1x1 convolution (RevSNN's CIFAR variant).
        bn_weight: initial weight of the first BN and the projection BN (official ImageNet: 0.5).
        last_bn_weight: initial weight of the residual branch's last BN (official ImageNet: 0).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        neuron: NeuronFactory,
        spiking_shortcut: bool = False,
        bn_weight: float = 1.0,
        last_bn_weight: float = 1.0,
        norm: str = "bn",
    ) -> None:
        super().__init__()
        self.sn1 = neuron()
        self.conv1 = _init_bn(conv_bn(cin, cout, 3, stride, norm=norm), bn_weight)
        self.sn2 = neuron()
        self.conv2 = _init_bn(conv_bn(cout, cout, 3, 1, norm=norm), last_bn_weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            proj = _init_bn(conv_bn(cin, cout, 1, stride, norm=norm), bn_weight)
            self.shortcut = nn.Sequential(neuron(), *proj) if spiking_shortcut else proj

    def forward(self, x):
        out = self.conv2(self.sn2(self.conv1(self.sn1(x))))
        return out + self.shortcut(x)


class MSResNet(SpikingBackbone):
    """MS-ResNet (module docstring).

    Args:
        layers: blocks per stage (four stages; 18: ``(2, 2, 2, 2)``, 34: ``(3, 4, 6, 3)``).
        variant: ``"imagenet"`` (official MS-ResNet) or ``"cifar"`` (RevSNN's baseline).
        num_classes / in_channels: classifier outputs / input channels.
        input_size: accepted for the common interface (global pooling makes the net size-agnostic).
        neuron: neuron factory or spec; default the variant's official neuron.
        step_mode: ``"m"`` or ``"s"``.
        width: channels of the first stage (doubled at each later stage).
        norm: ``"bn"`` (BN through time, the official) or ``"tdbn"``.
    """

    def __init__(
        self,
        layers: Sequence[int] = (2, 2, 2, 2),
        variant: Variant = "imagenet",
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int | Sequence[int] = 224,
        neuron: NeuronFactory | dict[str, Any] | None = None,
        step_mode: StepMode = "m",
        width: int = 64,
        norm: str = "bn",
    ) -> None:
        if variant not in ("imagenet", "cifar"):
            raise ValueError(f"MSResNet: variant must be 'imagenet' or 'cifar', got {variant!r}")
        default = MS_LIF if variant == "imagenet" else REVSNN_IF
        super().__init__(num_classes, build_neuron_factory(neuron, default=default), step_mode)
        del input_size
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"MSResNet: layers must be 4 positive block counts, got {tuple(layers)}")
        self.variant = variant
        imagenet = variant == "imagenet"
        bn_weight = 0.5 if imagenet else 1.0
        if imagenet:
            stem = _init_bn(conv_bn(in_channels, width, 7, 2, norm=norm), bn_weight)
        else:
            stem = conv_bn(in_channels, width, 3, 1, norm=norm)
        parts: list[tuple[str, nn.Module]] = [("stem", stem)]
        strides = (2, 2, 2, 2) if imagenet else (1, 2, 2, 2)
        cin = width
        for i, (n, stride) in enumerate(zip(layers, strides), start=1):
            cout = width * 2 ** (i - 1)
            stage = []
            for j in range(int(n)):
                stage.append(
                    MSBlock(cin, cout, stride if j == 0 else 1, self.spiking, spiking_shortcut=not imagenet,
                            bn_weight=bn_weight, last_bn_weight=0.0 if imagenet else 1.0, norm=norm)
                )
                cin = cout
            parts.append((f"layer{i}", nn.Sequential(*stage)))
        parts += [
            ("sn_out", self.spiking()),
            ("avgpool", TimeDistributed(nn.AdaptiveAvgPool2d(1))),
            ("flatten", Flatten()),
            ("fc", TimeDistributed(nn.Linear(cin, num_classes))),
        ]
        self.body = nn.Sequential(OrderedDict(parts))
        if not imagenet:  # RevSNN: kaiming-normal (fan_out) convolutions; the official ImageNet code keeps torch's init
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.finalize()


register_backbone("ms_resnet")(MSResNet)


@register_backbone("ms_resnet18")
def ms_resnet18(**kwargs: Any) -> MSResNet:
    """MS-ResNet-18: blocks [2, 2, 2, 2] (ImageNet variant, 1000 classes: 11,693,736 parameters; CIFAR variant,
    10 / 100 classes: 11,173,962 / 11,220,132)."""
    return MSResNet(layers=(2, 2, 2, 2), **kwargs)


@register_backbone("ms_resnet34")
def ms_resnet34(**kwargs: Any) -> MSResNet:
    """MS-ResNet-34: blocks [3, 4, 6, 3] (ImageNet variant, 1000 classes: 21,801,896 parameters; CIFAR variant,
    10 / 100 classes: 21,282,122 / 21,328,292)."""
    return MSResNet(layers=(3, 4, 6, 3), **kwargs)
