"""The Rate-BP repository's networks: vggsnn_cifar / vggsnn_dvs (new) and resnet18 / resnet19 (shared)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_snn.backbones import RateBPVGG, SpikingBasicBlock, create_backbone, list_backbones
from lightning_snn.methods._rate_graph import RATE_BP_LIF
from lightning_snn.neurons import BaseNode, BatchNormThroughTime, build_neuron_factory, reset_states


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name,num_classes,kwargs,expected_m",
    [  # parameter counts computed from the repository's layer shapes (methods/rev_rate.md B3)
        ("vggsnn_cifar", 10, {}, 9.27),
        ("vggsnn_cifar", 100, {}, 9.69),
        ("vggsnn_dvs", 10, {}, 9.27),
        ("resnet18", 10, {"norm": "bn"}, 11.17),
        ("resnet18", 100, {"norm": "bn"}, 11.22),
        ("resnet19", 10, {"norm": "bn"}, 12.70),
        ("resnet19", 100, {"norm": "bn"}, 12.72),
    ],
)
def test_parameter_counts(name, num_classes, kwargs, expected_m):
    assert name in list_backbones()
    model = create_backbone(name, num_classes=num_classes, **kwargs)
    assert round(n_params(model) / 1e6, 2) == expected_m


def test_vgg_layout_and_init():
    torch.manual_seed(0)
    model = create_backbone("vggsnn_cifar", num_classes=10, neuron=build_neuron_factory(RATE_BP_LIF))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert all(c.bias is not None and c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, BatchNormThroughTime) for m in model.modules()) == 8
    assert sum(isinstance(m, BaseNode) for m in model.modules()) == 8
    fc = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(fc) == 1 and fc[0].in_features == 4608 and fc[0].bias is not None
    # the repository's init: weights ~ normal(0, 0.5), biases 0
    w = torch.cat([c.weight.detach().flatten() for c in convs])
    assert abs(float(w.std()) - 0.5) < 0.01 and abs(float(w.mean())) < 0.01
    assert all(float(c.bias.detach().abs().max()) == 0.0 for c in convs)
    assert abs(float(fc[0].weight.detach().std()) - 0.5) < 0.02
    torch_init = create_backbone("vggsnn_cifar", num_classes=10, init="torch")
    assert float(next(m for m in torch_init.modules() if isinstance(m, nn.Conv2d)).weight.detach().std()) < 0.3
    with pytest.raises(ValueError, match="init"):
        create_backbone("vggsnn_cifar", init="xavier")


def test_resnets_match_the_repository_layout():
    """Post-activation basic blocks, stem conv-BN-LIF, GAP + FC (resnet19: FC256 + LIF + FC), plain BN."""
    r18 = create_backbone("resnet18", num_classes=10, norm="bn")
    blocks = [m for m in r18.modules() if isinstance(m, SpikingBasicBlock)]
    assert len(blocks) == 8
    assert sum(isinstance(m.shortcut, nn.Sequential) for m in blocks) == 3  # conv1x1 + BN at each downsampling
    assert all(isinstance(m, BatchNormThroughTime) and type(m) is BatchNormThroughTime
               for m in r18.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    r19 = create_backbone("resnet19", num_classes=10, norm="bn")
    assert len([m for m in r19.modules() if isinstance(m, SpikingBasicBlock)]) == 8
    head = list(r19.body)[-3:]
    assert head[0].module.out_features == 256 and isinstance(head[1], BaseNode) and head[2].module.in_features == 256


@pytest.mark.parametrize("step_mode", ["m", "s"])
@pytest.mark.parametrize("name,shape", [("vggsnn_cifar", (3, 32, 32)), ("vggsnn_dvs", (2, 48, 48))])
def test_vgg_forward_both_step_modes(name, shape, step_mode):
    torch.manual_seed(0)
    model = create_backbone(name, num_classes=10, neuron=build_neuron_factory(RATE_BP_LIF), step_mode=step_mode)
    x = torch.rand(2, 1, *shape)
    reset_states(model)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 1, 10) and torch.isfinite(out).all()


def test_vgg_rejects_tiny_inputs():
    with pytest.raises(ValueError, match="too small"):
        RateBPVGG(cfg=(8, "A", 8, "A", 8, "A"), input_size=4, in_channels=1)
