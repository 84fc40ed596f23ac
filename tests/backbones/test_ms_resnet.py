"""MS-ResNet (Hu et al., TNNLS 2024): parameter counts, the membrane shortcut, and the forward / input gradient
against SpikingJelly's MS-ResNet (the official ImageNet network) carrying the same weights."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_snn.backbones import create_backbone, list_backbones
from lightning_snn.backbones.ms_resnet import MSBlock
from lightning_snn.neurons import LIFNode, build_neuron_factory

from .test_sew_resnet import copy_weights, n_params


def test_registered_names():
    assert {"ms_resnet18", "ms_resnet34"} <= set(list_backbones())


# Official ImageNet counts (Ariande1/MS-ResNet models/MS_ResNet.py, ResNet_origin_18; SpikingJelly's ms_resnet18/34
# builds the same layers): the torchvision ResNet counts plus stage 1's projection (its first block has stride 2),
# conv1x1 64->64 + BN = 4,224. CIFAR (RevSNN cifar10/ms_resnet.py): 3x3 stem and no stage-1 projection, the CIFAR
# ResNet-18/34 counts (RevSNN's notes: 11.17M / 21.28M for 10 classes, 11.22M / 21.33M for 100).
@pytest.mark.parametrize(
    "name, official, cifar10, cifar100",
    [("ms_resnet18", 11_693_736, 11_173_962, 11_220_132),
     pytest.param("ms_resnet34", 21_801_896, 21_282_122, 21_328_292, marks=pytest.mark.slow)],
)
def test_parameter_counts_equal_the_official_definitions(name, official, cifar10, cifar100):
    from spikingjelly.activation_based.model import ms_resnet as sj

    ours = n_params(create_backbone(name, num_classes=1000))
    assert ours == n_params(getattr(sj, name)()) == official
    assert ours == {"ms_resnet18": 11_689_512, "ms_resnet34": 21_797_672}[name] + 4224
    cifar = create_backbone(name, num_classes=10, variant="cifar")
    assert n_params(cifar) == cifar10
    assert n_params(cifar) + 90 * 512 + 90 == cifar100  # the FC 512 -> 100 instead of 512 -> 10


def test_official_layout_and_init():
    net = create_backbone("ms_resnet18", num_classes=10)
    assert all(type(m) is LIFNode for m in net.modules() if hasattr(m, "v_threshold"))
    node = net.body.sn_out
    assert node.v_threshold == 0.5 and node.v_reset == 0.0 and node.detach_reset
    block = net.body.layer1[0]
    assert block.conv1[0].module.stride == (2, 2)  # no stem pooling: stage 1 downsamples
    assert torch.all(block.conv1[1].weight == 0.5) and torch.all(block.conv2[1].weight == 0.0)
    assert not any(hasattr(m, "v_threshold") for m in block.shortcut.modules())  # projection on the membrane stream
    cifar = create_backbone("ms_resnet18", num_classes=10, variant="cifar")
    assert cifar.body.layer1[0].conv1[0].module.stride == (1, 1)
    assert hasattr(cifar.body.layer2[0].shortcut[0], "v_threshold")  # RevSNN: SN - conv1x1 - BN


def test_shortcut_adds_to_the_membrane_stream():
    """The block output is residual + x exactly (no neuron after the sum): real values pass unchanged."""
    torch.manual_seed(0)
    block = MSBlock(4, 4, 1, build_neuron_factory({"type": "if"}), last_bn_weight=0.0)
    x = torch.randn(2, 3, 4, 5, 5)
    torch.testing.assert_close(block(x), x)  # zero-initialised branch: identity on a real-valued input
    nn.init.ones_(block.conv2[1].weight)
    assert not torch.equal(block(x), x)


def _sj_ms18(num_classes: int):
    from spikingjelly.activation_based import surrogate
    from spikingjelly.activation_based.model import ms_resnet as sj

    # the official neuron: leak 0.25 (tau 4/3 without input decay), threshold 0.5, detached hard reset,
    # rectangular gradient of height 1 on |u - 0.5| < 0.5 (SpikingJelly's default Rect(alpha=2) is narrower)
    return sj.MSResNet(T=2, num_classes=num_classes, surrogate_function=surrogate.Rect(alpha=1.0))


def test_forward_and_input_gradient_equal_spikingjelly():
    torch.manual_seed(0)
    ours = create_backbone("ms_resnet18", num_classes=10).double()
    ref = _sj_ms18(10).double()
    with torch.no_grad():
        for p in ours.parameters():  # the zero-initialised BNs would hide the second convolution of each block
            if p.dim() == 1:
                p.add_(0.3 * torch.rand_like(p))
    copy_weights(ours, ref)
    x = torch.rand(2, 1, 3, 32, 32, dtype=torch.float64) * 2
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours = ours(x1)
    y_ref = ref(x2)  # [N, K]: the mean over T
    torch.testing.assert_close(y_ours.mean(0), y_ref)
    w = torch.randn_like(y_ref)
    (y_ours.mean(0) * w).sum().backward()
    (y_ref * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    assert x1.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", ["imagenet", "cifar"])
def test_forward_backward_at_t2(variant):
    model = create_backbone("ms_resnet18", num_classes=7, variant=variant)
    y = model(torch.rand(2, 1, 3, 16, 16))
    assert y.shape == (2, 1, 7)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_variant():
    with pytest.raises(ValueError, match="variant"):
        create_backbone("ms_resnet18", variant="tiny")
