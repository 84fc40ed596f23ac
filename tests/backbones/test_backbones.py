"""Backbones: registry, shapes, step modes, neuron factory, STBP layouts."""
import pytest
import torch
from torch import nn

from lightning_snn.backbones import MNISTNet, create_backbone, list_backbones
from lightning_snn.neurons import IFNode, LIFNode, ThresholdDependentBatchNorm, reset_states

SHAPES = {
    "mnistnet": dict(in_channels=1, input_size=28),
    "cifarnet": dict(in_channels=3, input_size=32),
    "resnet18": dict(in_channels=3, input_size=32),
    "resnet19": dict(in_channels=3, input_size=32),
    "vggsnn": dict(in_channels=2, input_size=48),
}


def test_registry_lists_the_stbp_networks():
    assert set(SHAPES) <= set(list_backbones())


def test_unknown_backbone_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet99'.*resnet19"):
        create_backbone("resnet99")


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_output_shape_and_gradient(name):
    torch.manual_seed(0)
    kw = SHAPES[name]
    model = create_backbone(name, num_classes=7, **kw)
    x = torch.rand(2, 3, kw["in_channels"], kw["input_size"], kw["input_size"])
    y = model(x)
    assert y.shape == (2, 3, 7)
    y.mean().backward()
    first = next(p for p in model.parameters() if p.dim() == 4)
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["mnistnet", "resnet19"])
def test_single_step_equals_multi_step_in_eval(name):
    torch.manual_seed(1)
    kw = SHAPES[name]
    model = create_backbone(name, num_classes=10, **kw).eval()
    x = torch.rand(3, 2, kw["in_channels"], kw["input_size"], kw["input_size"])
    with torch.no_grad():
        y_m = model(x)
        reset_states(model)
        model.step_mode = "s"
        y_s = model(x)
    assert all(m.step_mode == "s" for m in model.modules() if isinstance(m, LIFNode))
    torch.testing.assert_close(y_m, y_s)


def test_neuron_factory_is_used_everywhere():
    model = MNISTNet(num_classes=10, input_size=8, neuron={"type": "if", "v_threshold": 0.5})
    nodes = [m for m in model.modules() if isinstance(m, IFNode) and not isinstance(m, LIFNode)]
    assert len(nodes) == 6 and all(float(n.v_threshold) == 0.5 for n in nodes)
    relu = create_backbone("resnet19", neuron=lambda: nn.ReLU())
    assert not any(isinstance(m, (IFNode, LIFNode)) for m in relu.modules())


def test_resnet19_layout_matches_tdbn_paper():
    model = create_backbone("resnet19", num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 19  # stem + 8 blocks x 2 + FC256 + FC
    assert [l.out_features for l in linears] == [256, 10]
    alphas = sorted({round(m.alpha, 4) for m in model.modules() if isinstance(m, ThresholdDependentBatchNorm)})
    assert alphas == [0.7071, 1.0]
    bns = [m for m in model.modules() if isinstance(m, ThresholdDependentBatchNorm)]
    assert all(m.v_threshold == pytest.approx(0.2) for m in bns)  # default neuron: STBP LIF, V_th = 0.2


def test_stbp_resnet18_is_the_repository_layout():
    """models/ResNet.py of the STBP repository: 64C3 stem, a 1x1 shortcut 64->128 into stage 1, 12,630,858 params."""
    model = create_backbone("stbp_resnet18", num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 12_630_858
    assert sum(p.numel() for p in create_backbone("resnet19", num_classes=10).parameters()) == 12_697_994
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert (convs[0].in_channels, convs[0].out_channels) == (3, 64)
    shortcuts = [(c.in_channels, c.out_channels, c.stride[0]) for c in convs if c.kernel_size == (1, 1)]
    assert shortcuts == [(64, 128, 1), (128, 256, 2), (256, 512, 2)]
    assert all(c.bias is None for c in convs)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features, l.bias is not None) for l in linears] == [(512, 256, True), (256, 10, True)]
    assert isinstance(model.body[-1], LIFNode)  # spiking output, as the repository
    y = model(torch.rand(2, 1, 3, 8, 8))
    assert y.shape == (2, 1, 10) and set(y.unique().tolist()) <= {0.0, 1.0}


def test_mnistnet_matches_stbp_repository_layout():
    model = create_backbone("mnistnet", num_classes=10, in_channels=1, input_size=28)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.bias) for c in convs] == [(1, 15, 5, None), (15, 40, 5, None)]
    assert [(l.in_features, l.out_features) for l in linears] == [(7 * 7 * 40, 300), (300, 10)]
    assert sum(isinstance(m, LIFNode) for m in model.modules()) == 6  # incl. after pooling and the output


def test_backbone_rejects_non_time_major_input():
    model = create_backbone("mnistnet", input_size=8)
    with pytest.raises(ValueError, match=r"time-major input \[T, B, ...\]"):
        model(torch.rand(4, 64))
