"""Spike-Element-Wise ResNets (Fang et al., "Deep Residual Learning in Spiking Neural Networks", NeurIPS 2021).

A SEW block keeps the spiking neuron inside the residual branch and joins the branch output ``A`` (spikes)
and the shortcut ``S`` (spikes) with an element-wise *connect function* ``g`` (paper Sec. 3.2, Table 1)::

    O = g(A, S)      ADD:  A + S          AND:  A · S          IAND:  (1 - A) · S

so that with ``A = 0`` (ADD, IAND) or ``A = 1`` (AND) the block is an identity mapping of spikes. ADD
outputs integers in {0, 1, 2}; AND and IAND keep binary spikes. The shortcut is the identity or, where
the shape changes, ``conv1x1(stride) - BN - neuron`` (a spiking downsample, as in the official code).

Two families, layer for layer as the official code (github.com/fangwei123456/Spike-Element-Wise-ResNet):

* ``sew_resnet18/34/50`` (``imagenet/sew_resnet.py``; SpikingJelly's ``activation_based/model/sew_resnet.py``
  is the same network): the torchvision ResNet with every ReLU replaced by a neuron after BN. Stem
  ``conv7x7/2 - BN - neuron - maxpool3x3/2``, four stages of basic (18/34) or bottleneck (50) blocks at
  64/128/256/512 widths (x4 for bottlenecks), global average pooling, FC. The FC runs per time step; its
  mean over T equals the official ``fc(mean_t(x))`` because the FC is affine. Official neuron: IF,
  ``detach_reset``, ATan surrogate (alpha = 2), threshold 1, hard reset to 0 (:data:`SEW_IF`).
  ``zero_init_residual`` zeroes the last BN weight of every residual branch and, for AND, sets its bias
  to 1 (``zero_init_blocks`` of the official code), so every block starts as an identity.
  Note: SpikingJelly's bottleneck calls ``sew_function(out, identity)``, i.e. ``A · (1 - S)`` for IAND;
  the official code (followed here) computes ``(1 - A) · S`` in both block types, as the paper defines.
* ``sew_resnet_gesture`` / ``sew_resnet_cifar10dvs`` (``dvsgesture/smodels.py``, ``cifar10dvs/smodels.py``,
  model ``SEWResNet``): seven stages, each ``[conv1x1 - BN - neuron where the width changes] - SEWBlock -
  maxpool2x2``, where a SEWBlock is ``(conv3x3 - BN - neuron) x 2`` joined to its input by ``g``; then
  flatten and FC. DVS Gesture: widths 32 x 7, 11 classes (the paper's
  ``c32k3s1-BN-PLIF-{SEWBlock-c32-MPk2s2}*7-FC11``; the code's width-changing convolution is 1x1, not
  3x3, and the code is followed). CIFAR10-DVS: widths 64 x 4 then 128 x 3, 10 classes. Official neuron:
  PLIF with initial tau 2, ``detach_reset``, ATan surrogate (:data:`SEW_PLIF`). A 128x128 input leaves
  1x1 maps for the FC. The official net reads out ``fc(mean_t(x))``; per-step FC plus the method's mean is the same.

Every layer is the library's own (``TimeDistributed`` convolutions, BN through time, the neuron
factory), so methods, neuron swaps and quantization-aware training apply unchanged.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from ..neurons import NeuronFactory, StepMode, build_neuron_factory
from .layers import Flatten, SpikingBackbone, TimeDistributed, conv_bn, to_pair
from .registry import register_backbone
from .revs_resnet import REVSNN_IF

__all__ = [
    "CONNECT_FUNCTIONS",
    "SEW_IF",
    "SEW_PLIF",
    "SEWBasicBlock",
    "SEWBlock",
    "SEWBottleneck",
    "SEWDVSNet",
    "SEWResNet",
    "sew_connect",
    "sew_resnet18",
    "sew_resnet34",
    "sew_resnet50",
    "sew_resnet_cifar10dvs",
    "sew_resnet_gesture",
]

ConnectFunction = Literal["ADD", "AND", "IAND"]
CONNECT_FUNCTIONS: tuple[str, ...] = ("ADD", "AND", "IAND")

#: The ImageNet SEW ResNets' neuron: SpikingJelly MultiStepIFNode(detach_reset=True), ATan(alpha=2), V_th 1, hard reset
#: to 0 -- the same neuron as RevSNN's CIFAR nets, hence the same spec.
SEW_IF: dict[str, Any] = REVSNN_IF

#: The DVS nets' neuron: cext MultiStepParametricLIFNode(init_tau=2.0, detach_reset=True): PLIF (learned tau,
#: H = V + (X - V)/tau), V_th 1, hard reset to 0, the cext default surrogate ATan(alpha=2).
SEW_PLIF: dict[str, Any] = {
    "type": "plif",
    "init_tau": 2.0,
    "decay_input": True,
    "v_threshold": 1.0,
    "v_reset": 0.0,
    "detach_reset": True,
    "surrogate": {"name": "atan", "alpha": 2.0},
}


def _check_cnf(cnf: str) -> str:
    key = str(cnf).upper()
    if key not in CONNECT_FUNCTIONS:
        raise ValueError(f"cnf: unknown connect function {cnf!r}; choose one of {', '.join(CONNECT_FUNCTIONS)}")
    return key


def sew_connect(residual: torch.Tensor, shortcut: torch.Tensor, cnf: str) -> torch.Tensor:
    """``g(A, S)`` of the SEW paper (Table 1) for the residual-branch spikes ``A`` and shortcut spikes ``S``."""
    if cnf == "ADD":
        return residual + shortcut
    if cnf == "AND":
        return residual * shortcut
    if cnf == "IAND":
        return (1.0 - residual) * shortcut
    raise ValueError(f"cnf: unknown connect function {cnf!r}; choose one of {', '.join(CONNECT_FUNCTIONS)}")


def _conv_bn_sn(cin: int, cout: int, k: int, stride: int, neuron: NeuronFactory, norm: str) -> nn.Sequential:
    """``conv(k, stride, no bias) - BN - neuron`` (BN statistics over T and batch)."""
    layers = conv_bn(cin, cout, k, stride, norm=norm)
    layers.append(neuron())
    return layers


class _SEWJoin(nn.Module):
    """Base of the SEW blocks: ``g(residual(x), shortcut(x))``; subclasses set ``residual`` and ``shortcut``."""

    residual: nn.Sequential
    shortcut: nn.Module

    def __init__(self, cnf: str) -> None:
        super().__init__()
        self.cnf = _check_cnf(cnf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sew_connect(self.residual(x), self.shortcut(x), self.cnf)

    def last_bn(self) -> nn.Module:
        """The BN closing the residual branch (zeroed by ``zero_init_residual``): its last unit is
        ``[TimeDistributed(conv), BN, neuron]``."""
        return self.residual[-1][1]

    def extra_repr(self) -> str:
        return f"cnf={self.cnf}"


def _shortcut(cin: int, cout: int, stride: int, neuron: NeuronFactory, norm: str) -> nn.Module:
    if stride != 1 or cin != cout:
        return _conv_bn_sn(cin, cout, 1, stride, neuron, norm)
    return nn.Identity()


class SEWBasicBlock(_SEWJoin):
    """``g(SN(BN(conv3x3(SN(BN(conv3x3(x)))))), shortcut(x))`` (ResNet-18/34 block)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, neuron: NeuronFactory, cnf: str, norm: str = "bn") -> None:
        super().__init__(cnf)
        self.residual = nn.Sequential(
            _conv_bn_sn(cin, planes, 3, stride, neuron, norm), _conv_bn_sn(planes, planes, 3, 1, neuron, norm)
        )
        self.shortcut = _shortcut(cin, planes, stride, neuron, norm)


class SEWBottleneck(_SEWJoin):
    """Bottleneck ``1x1 - 3x3(stride) - 1x1(x4)``, each with BN and a neuron, joined by ``g`` (ResNet-50)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, neuron: NeuronFactory, cnf: str, norm: str = "bn") -> None:
        super().__init__(cnf)
        cout = planes * self.expansion
        self.residual = nn.Sequential(
            _conv_bn_sn(cin, planes, 1, 1, neuron, norm),
            _conv_bn_sn(planes, planes, 3, stride, neuron, norm),
            _conv_bn_sn(planes, cout, 1, 1, neuron, norm),
        )
        self.shortcut = _shortcut(cin, cout, stride, neuron, norm)


class SEWBlock(_SEWJoin):
    """The DVS nets' block: ``g((conv3x3 - BN - SN) x 2 (x), x)``, width-preserving, stride 1."""

    def __init__(self, channels: int, mid_channels: int, neuron: NeuronFactory, cnf: str, norm: str = "bn") -> None:
        super().__init__(cnf)
        self.residual = nn.Sequential(
            _conv_bn_sn(channels, mid_channels, 3, 1, neuron, norm), _conv_bn_sn(mid_channels, channels, 3, 1, neuron, norm)
        )
        self.shortcut = nn.Identity()


def _zero_init(blocks: Sequence[_SEWJoin], cnf: str) -> None:
    """Official ``zero_init_blocks``: last BN weight 0 (and bias 1 for AND), so each block starts as identity."""
    for block in blocks:
        bn = block.last_bn()
        nn.init.zeros_(bn.weight)
        if cnf == "AND":
            nn.init.ones_(bn.bias)


class SEWResNet(SpikingBackbone):
    """SEW ResNet of the ImageNet experiments (module docstring).

    Args:
        layers: blocks per stage (four stages).
        block: ``"basic"`` (18/34) or ``"bottleneck"`` (50 and deeper).
        cnf: connect function, ``"ADD"``, ``"AND"`` or ``"IAND"``.
        num_classes: classifier outputs.
        in_channels: input channels (3 for images, 2 for event frames).
        input_size: accepted for the common interface (global pooling makes the net size-agnostic).
        neuron: neuron factory or spec; default the official IF neuron (:data:`SEW_IF`).
        step_mode: ``"m"`` or ``"s"``.
        zero_init_residual: zero the last BN of each residual branch (official option, off by default).
        norm: ``"bn"`` (BN through time, the official) or ``"tdbn"``.
    """

    def __init__(
        self,
        layers: Sequence[int],
        block: Literal["basic", "bottleneck"] = "basic",
        cnf: ConnectFunction = "ADD",
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int | Sequence[int] = 224,
        neuron: NeuronFactory | dict[str, Any] | None = None,
        step_mode: StepMode = "m",
        zero_init_residual: bool = False,
        norm: str = "bn",
    ) -> None:
        super().__init__(num_classes, build_neuron_factory(neuron, default=SEW_IF), step_mode)
        del input_size
        self.cnf = _check_cnf(cnf)
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"SEWResNet: block must be 'basic' or 'bottleneck', got {block!r}")
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"SEWResNet: layers must be 4 positive block counts, got {tuple(layers)}")
        block_cls = SEWBasicBlock if block == "basic" else SEWBottleneck
        parts: list[tuple[str, nn.Module]] = [
            ("stem", _conv_bn_sn(in_channels, 64, 7, 2, self.spiking, norm)),
            ("maxpool", TimeDistributed(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))),
        ]
        cin = 64
        blocks: list[_SEWJoin] = []
        for i, (n, planes, stride) in enumerate(zip(layers, (64, 128, 256, 512), (1, 2, 2, 2)), start=1):
            stage = []
            for j in range(int(n)):
                stage.append(block_cls(cin, planes, stride if j == 0 else 1, self.spiking, self.cnf, norm))
                cin = planes * block_cls.expansion
            blocks += stage
            parts.append((f"layer{i}", nn.Sequential(*stage)))
        parts += [
            ("avgpool", TimeDistributed(nn.AdaptiveAvgPool2d(1))),
            ("flatten", Flatten()),
            ("fc", TimeDistributed(nn.Linear(cin, num_classes))),
        ]
        self.body = nn.Sequential(OrderedDict(parts))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            _zero_init(blocks, self.cnf)
        self.finalize()


register_backbone("sew_resnet")(SEWResNet)


@register_backbone("sew_resnet18")
def sew_resnet18(**kwargs: Any) -> SEWResNet:
    """SEW ResNet-18: basic blocks [2, 2, 2, 2] (11,689,512 parameters for 1000 classes)."""
    return SEWResNet(layers=(2, 2, 2, 2), block="basic", **kwargs)


@register_backbone("sew_resnet34")
def sew_resnet34(**kwargs: Any) -> SEWResNet:
    """SEW ResNet-34: basic blocks [3, 4, 6, 3] (21,797,672 parameters for 1000 classes)."""
    return SEWResNet(layers=(3, 4, 6, 3), block="basic", **kwargs)


@register_backbone("sew_resnet50")
def sew_resnet50(**kwargs: Any) -> SEWResNet:
    """SEW ResNet-50: bottleneck blocks [3, 4, 6, 3] (25,557,032 parameters for 1000 classes)."""
    return SEWResNet(layers=(3, 4, 6, 3), block="bottleneck", **kwargs)


class SEWDVSNet(SpikingBackbone):
    """The SEW paper's DVS networks (official ``ResNetN`` with ``SEWBlock`` s; module docstring).

    Args:
        widths: channels of each stage; each stage is ``[conv1x1 - BN - SN if the width changes] -
            SEWBlock x blocks - maxpool 2x2``.
        blocks: SEW blocks per stage (official: 1).
        cnf: connect function, ``"ADD"``, ``"AND"`` or ``"IAND"``.
        num_classes: classifier outputs.
        in_channels: input channels (2 polarities).
        input_size: ``(H, W)`` of the frames (official 128x128); sizes the FC input.
        neuron: neuron factory or spec; default the official PLIF (:data:`SEW_PLIF`).
        step_mode: ``"m"`` or ``"s"``.
        stem_kernel_size: kernel of the width-changing convolutions (official code: 1; the paper's table: 3).
        norm: ``"bn"`` (official) or ``"tdbn"``.
    """

    def __init__(
        self,
        widths: Sequence[int],
        blocks: int = 1,
        cnf: ConnectFunction = "ADD",
        num_classes: int = 11,
        in_channels: int = 2,
        input_size: int | Sequence[int] = 128,
        neuron: NeuronFactory | dict[str, Any] | None = None,
        step_mode: StepMode = "m",
        stem_kernel_size: int = 1,
        norm: str = "bn",
    ) -> None:
        super().__init__(num_classes, build_neuron_factory(neuron, default=SEW_PLIF), step_mode)
        self.cnf = _check_cnf(cnf)
        if not widths or any(int(w) < 1 for w in widths) or blocks < 1:
            raise ValueError(f"SEWDVSNet: widths must be positive channel counts and blocks >= 1, got {tuple(widths)}, {blocks}")
        if stem_kernel_size not in (1, 3):
            raise ValueError(f"SEWDVSNet: stem_kernel_size must be 1 (official code) or 3 (paper table), got {stem_kernel_size}")
        h, w = to_pair(input_size)
        n_pool = len(widths)
        if h >> n_pool < 1 or w >> n_pool < 1:
            raise ValueError(f"SEWDVSNet: input_size {(h, w)} is too small for {n_pool} 2x2 max-poolings")
        parts: list[nn.Module] = []
        cin = in_channels
        for width in widths:
            width = int(width)
            if cin != width:
                parts.append(_conv_bn_sn(cin, width, stem_kernel_size, 1, self.spiking, norm))
                cin = width
            parts += [SEWBlock(width, width, self.spiking, self.cnf, norm) for _ in range(blocks)]
            parts.append(TimeDistributed(nn.MaxPool2d(2, 2)))
        parts += [Flatten(), TimeDistributed(nn.Linear(cin * (h >> n_pool) * (w >> n_pool), num_classes))]
        self.body = nn.Sequential(*parts)
        self.finalize()


@register_backbone("sew_resnet_gesture")
def sew_resnet_gesture(**kwargs: Any) -> SEWDVSNet:
    """SEW ResNet of the DVS Gesture experiments: 7 stages of width 32, 11 classes (130,426 parameters with the
    official PLIF neurons: 130,411 weights and 15 time constants)."""
    kwargs.setdefault("num_classes", 11)
    return SEWDVSNet(widths=(32,) * 7, **kwargs)


@register_backbone("sew_resnet_cifar10dvs")
def sew_resnet_cifar10dvs(**kwargs: Any) -> SEWDVSNet:
    """SEW ResNet of the CIFAR10-DVS experiments: widths 64 x 4, 128 x 3, 10 classes (1,192,218 parameters with
    the official PLIF neurons: 1,192,202 weights and 16 time constants)."""
    kwargs.setdefault("num_classes", 10)
    return SEWDVSNet(widths=(64,) * 4 + (128,) * 3, **kwargs)
