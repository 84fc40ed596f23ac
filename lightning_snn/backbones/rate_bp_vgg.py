"""The VGG networks of the Rate-BP repository (Yu et al., NeurIPS 2024): ``vggsnn_cifar`` and ``vggsnn_dvs``.

Layer for layer as ``model/vgg.py`` of github.com/Tab-ct/rate-based-backpropagation:

* ``vggsnn_cifar``: ``64-128-A-256-256-A-512-512-A-512-512-AA3`` on 3x32x32, then ``FC(4608 -> classes)``;
  9.27M parameters for 10 classes, 9.69M for 100.
* ``vggsnn_dvs``: ``64-128-A-256-256-A-512-512-A-512-512-A`` on 2x48x48 CIFAR10-DVS frames (48 -> 3), then
  ``FC(4608 -> classes)``; 9.27M parameters.

Every number is a unit ``Conv3x3(bias=True) -> BN -> LIF``; ``A`` is 2x2 average pooling and ``AA3`` adaptive
average pooling to 3x3. BN is plain BatchNorm over (T, B, H, W) (``norm="bn"``, the repository's
``nn.BatchNorm2d`` on time-folded tensors). Unlike this library's other backbones the convolutions keep
their bias although BN follows (as the repository does).

Initialisation (``init="rate_bp"``, default): conv and linear weights ``normal(0, 0.5)``, biases 0, BN
weight 1 / bias 0, exactly the repository's ``_initialize_weights``. The standard deviation 0.5 is large
(BN right after each conv absorbs it; the classifier sees spike counts); ``init="torch"`` keeps PyTorch's
default initialisation instead.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..neurons import NeuronFactory, StepMode, build_neuron_factory
from .layers import Flatten, SpikingBackbone, TimeDistributed, make_norm, to_pair
from .registry import register_backbone

__all__ = ["RateBPVGG", "VGGSNN_CIFAR_CFG", "VGGSNN_DVS_CFG", "vggsnn_cifar", "vggsnn_dvs"]

#: channel widths; "A": AvgPool2d(2), "AA3": AdaptiveAvgPool2d(3)
VGGSNN_CIFAR_CFG: tuple[int | str, ...] = (64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "AA3")
VGGSNN_DVS_CFG: tuple[int | str, ...] = (64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A")


class RateBPVGG(SpikingBackbone):
    """VGG of the Rate-BP repository: ``Conv3x3(bias)-BN-LIF`` units, average pooling, one linear classifier.

    Args:
        cfg: layer list (ints: conv widths, ``"A"``: 2x2 average pooling, ``"AA<k>"``: adaptive pooling to kxk).
        norm: ``"bn"`` (BN through time, default), ``"tdbn"`` or ``"none"``.
        bias: convolution and classifier bias (True in the repository).
        init: ``"rate_bp"`` (normal(0, 0.5) weights, zero bias; the repository) or ``"torch"`` (PyTorch default).
    """

    def __init__(
        self,
        cfg: Sequence[int | str] = VGGSNN_CIFAR_CFG,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int | Sequence[int] = 32,
        neuron: NeuronFactory | None = None,
        step_mode: StepMode = "m",
        norm: str = "bn",
        bias: bool = True,
        init: str = "rate_bp",
    ) -> None:
        super().__init__(num_classes, build_neuron_factory(neuron), step_mode)
        if init not in ("rate_bp", "torch"):
            raise ValueError(f"init must be 'rate_bp' (normal(0, 0.5)) or 'torch', got {init!r}")
        h, w = to_pair(input_size)
        vth = self.threshold()
        layers: list[nn.Module] = []
        cin = in_channels
        for item in cfg:
            if item == "A":
                layers.append(TimeDistributed(nn.AvgPool2d(2, 2)))
                h, w = h // 2, w // 2
            elif isinstance(item, str) and item.startswith("AA"):
                k = int(item[2:] or 1)
                layers.append(TimeDistributed(nn.AdaptiveAvgPool2d((k, k))))
                h, w = k, k
            else:
                cout = int(item)
                layers += [
                    TimeDistributed(nn.Conv2d(cin, cout, 3, 1, 1, bias=bias)),
                    make_norm(norm, cout, v_threshold=vth),
                    self.spiking(),
                ]
                cin = cout
        if h < 1 or w < 1:
            raise ValueError(f"{type(self).__name__}: input_size {input_size} is too small for the poolings of {list(cfg)}")
        layers += [Flatten(), TimeDistributed(nn.Linear(cin * h * w, num_classes, bias=bias))]
        self.body = nn.Sequential(*layers)
        if init == "rate_bp":
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.normal_(m.weight, 0.0, 0.5)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
        self.finalize()


@register_backbone("vggsnn_cifar")
def vggsnn_cifar(**kwargs) -> RateBPVGG:
    """Rate-BP's VGGSNN for CIFAR (3x32x32): 64-128-A-256-256-A-512-512-A-512-512-AA3, FC4608."""
    kwargs.setdefault("in_channels", 3)
    kwargs.setdefault("input_size", 32)
    return RateBPVGG(cfg=VGGSNN_CIFAR_CFG, **kwargs)


@register_backbone("vggsnn_dvs")
def vggsnn_dvs(**kwargs) -> RateBPVGG:
    """Rate-BP's VGGSNN for CIFAR10-DVS (2x48x48): 64-128-A-256-256-A-512-512-A-512-512-A, FC4608."""
    kwargs.setdefault("in_channels", 2)
    kwargs.setdefault("input_size", 48)
    return RateBPVGG(cfg=VGGSNN_DVS_CFG, **kwargs)
