"""SEW ResNets (Fang et al., NeurIPS 2021): parameter counts, connect functions, identity init, and the
forward / input gradient against SpikingJelly's own SEW ResNet carrying the same weights."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_snn.backbones import SEWDVSNet, create_backbone, list_backbones
from lightning_snn.backbones.sew_resnet import SEWBasicBlock, SEWBlock, SEWBottleneck, sew_connect
from lightning_snn.neurons import IFNode, build_neuron_factory, reset_states
from lightning_snn.neurons.plif import PLIFNode


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters and buffers in registration order (both nets register layers in the same order)."""
    a, b = src.state_dict(), dst.state_dict()
    assert len(a) == len(b)
    for (ka, va), (kb, vb) in zip(a.items(), b.items()):
        assert va.shape == vb.shape, (ka, kb)
        vb.copy_(va)


def test_registered_names():
    assert {"sew_resnet18", "sew_resnet34", "sew_resnet50", "sew_resnet_gesture", "sew_resnet_cifar10dvs"} <= set(list_backbones())


# official counts: SpikingJelly's sew_resnet{18,34,50}(cnf='ADD') with 1000 classes (the torchvision ResNet
# counts, since SEW adds no parameters); built below as well, so the literal numbers cannot drift
@pytest.mark.parametrize(
    "name, official",
    [("sew_resnet18", 11_689_512), pytest.param("sew_resnet34", 21_797_672, marks=pytest.mark.slow), ("sew_resnet50", 25_557_032)],
)
def test_imagenet_parameter_counts_equal_spikingjelly(name, official):
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.model import sew_resnet as sj

    ours = create_backbone(name, num_classes=1000, cnf="IAND")
    reference = getattr(sj, name)(cnf="ADD", spiking_neuron=neuron.IFNode)
    assert n_params(ours) == n_params(reference) == official


def test_dvs_parameter_counts_match_the_official_definition():
    # dvsgesture/smodels.py SEWResNet: conv1x1(2->32)+BN = 64+64; 7 SEWBlocks of 2 x (conv3x3 32->32 + BN)
    # = 7 x 2 x (9216+64); FC 32->11 = 363. The official PLIF neurons add one parameter each: 1 + 14 = 15.
    gesture = create_backbone("sew_resnet_gesture")  # default neuron: the official PLIF
    assert n_params(gesture) == 128 + 7 * 2 * 9280 + 363 + 15 == 130_426
    assert sum(type(m) is PLIFNode for m in gesture.modules()) == 15
    assert n_params(create_backbone("sew_resnet_gesture", neuron={"type": "if"})) == 130_411
    # cifar10dvs/smodels.py SEWResNet: conv1x1(2->64)+BN = 256; 4 blocks of 2 x (36864+128); conv1x1(64->128)+BN
    # = 8192+256; 3 blocks of 2 x (147456+256); FC 128->10 = 1290. PLIF neurons: 1 + 8 + 1 + 6 = 16.
    c10dvs = create_backbone("sew_resnet_cifar10dvs")
    assert n_params(c10dvs) == 256 + 4 * 2 * 36992 + 8448 + 3 * 2 * 147712 + 1290 + 16 == 1_192_218
    assert sum(type(m) is PLIFNode for m in c10dvs.modules()) == 16


def test_connect_functions_follow_table_1():
    a = torch.tensor([0.0, 0.0, 1.0, 1.0])  # residual-branch spikes A
    s = torch.tensor([0.0, 1.0, 0.0, 1.0])  # shortcut spikes S
    assert sew_connect(a, s, "ADD").tolist() == [0, 1, 1, 2]
    assert sew_connect(a, s, "AND").tolist() == [0, 0, 0, 1]
    assert sew_connect(a, s, "IAND").tolist() == [0, 1, 0, 0]  # (not A) and S
    with pytest.raises(ValueError, match="cnf"):
        create_backbone("sew_resnet18", cnf="OR")


@pytest.mark.parametrize("cnf", ["ADD", "AND", "IAND"])
@pytest.mark.parametrize("block", ["basic", "bottleneck", "dvs"])
def test_zero_init_residual_makes_each_block_an_identity(cnf, block):
    """The official zero_init_blocks: last BN weight 0 (bias 1 for AND) -> g(A, S) = S for binary S."""
    torch.manual_seed(0)
    neuron = build_neuron_factory({"type": "if", "v_reset": 0.0, "detach_reset": True})
    if block == "basic":
        m = SEWBasicBlock(8, 8, 1, neuron, cnf)
    elif block == "bottleneck":
        m = SEWBottleneck(16, 4, 1, neuron, cnf)
    else:
        m = SEWBlock(8, 8, neuron, cnf)
    from lightning_snn.backbones.sew_resnet import _zero_init

    _zero_init([m], cnf)
    x = (torch.rand(2, 3, m.residual[0][0].module.in_channels, 5, 5) > 0.5).float()
    assert torch.equal(m(x), x)


def _sj_sew18(cnf: str):
    from spikingjelly.activation_based import functional, neuron, surrogate
    from spikingjelly.activation_based.model import sew_resnet as sj

    net = sj.sew_resnet18(cnf=cnf, num_classes=10, spiking_neuron=neuron.IFNode, detach_reset=True,
                          surrogate_function=surrogate.ATan(alpha=2.0))
    functional.set_step_mode(net, "m")
    return net


@pytest.mark.parametrize("cnf", ["IAND", pytest.param("ADD", marks=pytest.mark.slow)])
def test_forward_and_input_gradient_equal_spikingjelly(cnf):
    """Same weights, T = 2, float64: identical outputs and input gradients (IF, ATan alpha 2, detached reset)."""
    torch.manual_seed(0)
    ours = create_backbone("sew_resnet18", num_classes=10, cnf=cnf).double()
    ref = _sj_sew18(cnf).double()
    with torch.no_grad():
        for p in ours.parameters():  # non-trivial BN affine so that neurons fire in every layer
            if p.dim() == 1:
                p.add_(0.3 * torch.rand_like(p))
    copy_weights(ours, ref)
    x = torch.rand(2, 1, 3, 32, 32, dtype=torch.float64) * 2
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_ref = ours(x1), ref(x2)
    torch.testing.assert_close(y_ours, y_ref)
    w = torch.randn_like(y_ours)
    (y_ours * w).sum().backward()
    (y_ref * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    assert x1.grad.abs().sum() > 0


@pytest.mark.parametrize("name, shape", [("sew_resnet50", (2, 1, 3, 16, 16)), ("sew_resnet_gesture", (2, 1, 2, 128, 128))])
def test_forward_backward_at_t2(name, shape):
    torch.manual_seed(0)
    model = create_backbone(name, num_classes=5, cnf="IAND", zero_init_residual=False) if name == "sew_resnet50" else create_backbone(name, num_classes=5)
    y = model(torch.rand(shape))
    assert y.shape == (2, 1, 5)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_single_step_equals_multi_step():
    torch.manual_seed(0)
    net = SEWDVSNet(widths=(4, 4, 8), cnf="ADD", num_classes=3, input_size=16, neuron={"type": "if", "detach_reset": True})
    net.eval()
    x = torch.rand(3, 2, 2, 16, 16) * 3
    y_m = net(x)
    reset_states(net)
    net.step_mode = "s"
    torch.testing.assert_close(net(x), y_m)
    assert all(isinstance(m, IFNode) for m in net.modules() if hasattr(m, "v_threshold"))


def test_dvs_net_rejects_too_small_frames():
    with pytest.raises(ValueError, match="input_size"):
        create_backbone("sew_resnet_gesture", input_size=64)


def _sj_dvs_reference(widths, num_classes: int, cnf: str, size: int) -> nn.Module:
    """The DVS SEW net assembled from SpikingJelly layers as dvsgesture/smodels.py describes it (PLIF init_tau 2,
    detach_reset, ATan(2)): [conv1x1-BN-PLIF where the width changes] - SEWBlock - MaxPool2d(2) per stage, FC."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def unit(cin, cout, k):
        return [layer.SeqToANNContainer(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout)),
                neuron.ParametricLIFNode(init_tau=2.0, detach_reset=True, surrogate_function=surrogate.ATan(alpha=2.0))]

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Sequential(*unit(c, c, 3), *unit(c, c, 3))

        def forward(self, x):
            return sew_connect(self.conv(x), x, cnf)

    layers, cin = [], 2
    for w in widths:
        if cin != w:
            layers += unit(cin, w, 1)
            cin = w
        layers += [Block(w), layer.SeqToANNContainer(nn.MaxPool2d(2, 2))]
    layers += [nn.Flatten(2), nn.Linear(cin * (size >> len(widths)) ** 2, num_classes)]
    net = nn.Sequential(*layers)
    functional.set_step_mode(net, "m")
    return net


def test_dvs_net_equals_a_spikingjelly_assembly_with_the_same_weights():
    """PLIF neurons, the 1x1 width change, IAND joins and the per-step FC, float64, T = 2: same outputs and input
    gradients as SpikingJelly's ParametricLIFNode network built to the official description."""
    torch.manual_seed(0)
    widths = (4, 4, 8)
    ours = SEWDVSNet(widths=widths, cnf="IAND", num_classes=3, input_size=16).double()
    ref = _sj_dvs_reference(widths, 3, "IAND", 16).double()
    with torch.no_grad():
        for p in ours.parameters():
            if p.dim() == 0:  # PLIF w: distinct time constants per layer
                p.add_(0.5 * torch.randn(()))
    copy_weights(ours, ref)
    x = torch.rand(2, 2, 2, 16, 16, dtype=torch.float64) * 3
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_ref = ours(x1), ref(x2)
    torch.testing.assert_close(y_ours, y_ref)
    (y_ours ** 2).sum().backward()
    (y_ref ** 2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    w_ours = [p.grad for p in ours.parameters() if p.dim() == 0]
    w_ref = [p.grad for p in ref.parameters() if p.dim() == 0]
    torch.testing.assert_close(torch.stack(w_ours), torch.stack(w_ref).reshape(-1))
