"""sync_batchnorm with time-folded BatchNorm: the conversion keeps T folding, tdBN's scale and the state dict."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from lightning_snn.backbones import RateBPVGG
from lightning_snn.callbacks import SpikingSyncBatchNorm
from lightning_snn.methods import BPTT
from lightning_snn.neurons.norm import BatchNormThroughTime, SyncBatchNormThroughTime, ThresholdDependentBatchNorm


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(ThresholdDependentBatchNorm(4, alpha=0.7, v_threshold=0.5), BatchNormThroughTime(4), nn.BatchNorm1d(3))
    with torch.no_grad():
        for m in net[:2]:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
    return net


@pytest.mark.parametrize("training", [True, False])
def test_converted_layers_compute_the_same_and_keep_their_state_names(training):
    ref, net = _net(), _net()
    plugin = SpikingSyncBatchNorm()
    net = plugin.apply(net)
    assert type(net[0]) is SyncBatchNormThroughTime and type(net[1]) is SyncBatchNormThroughTime
    assert type(net[2]) is nn.SyncBatchNorm
    assert net[0].scale == pytest.approx(0.35) and net[1].scale == 1.0
    assert list(net.state_dict()) == list(ref.state_dict())
    ref.train(training)
    net.train(training)
    x = torch.randn(3, 5, 4, 6, 6)  # [T, B, C, H, W]
    for a, b in ((ref[0], net[0]), (ref[1], net[1])):
        torch.testing.assert_close(b(x), a(x))
        torch.testing.assert_close(b.running_mean, a.running_mean)
    back = plugin.revert(net)
    assert type(back[0]) is ThresholdDependentBatchNorm and back[0].alpha == 0.7 and back[0].v_threshold == 0.5
    assert type(back[1]) is BatchNormThroughTime and isinstance(back[2], nn.modules.batchnorm._BatchNorm)
    assert back[0].weight is net[0].weight  # the same parameters throughout


def test_trainer_sync_batchnorm_installs_the_spiking_plugin():
    """With ``Trainer(sync_batchnorm=True)`` the model's ``configure_model`` replaces Lightning's plain plugin, whose
    ``apply`` the strategy calls next; the converted model trains (one process: local statistics). DDP itself
    refuses SyncBatchNorm on CPU, so the multi-process run is left to GPU machines."""
    net = RateBPVGG(cfg=[4, "A", 8, "AA1"], num_classes=10, in_channels=1, input_size=8, norm="tdbn")
    model = BPTT(backbone=net, num_classes=10, input_shape=(1, 8, 8), T=2)
    trainer = L.Trainer(accelerator="cpu", devices=1, strategy="ddp", sync_batchnorm=True, logger=False)
    model.trainer = trainer
    model.configure_model()
    plugin = trainer.strategy._layer_sync
    assert isinstance(plugin, SpikingSyncBatchNorm)
    model = plugin.apply(model)
    kinds = {type(m).__name__ for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert kinds == {"SyncBatchNormThroughTime"}
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    loss = model.compute_loss(model(x), y)
    loss.backward()
    assert torch.isfinite(loss) and net.body[0].module.weight.grad is not None
    # an unrelated Trainer without sync_batchnorm is left alone
    plain = L.Trainer(accelerator="cpu", devices=1, logger=False)
    model.trainer = plain
    model.configure_model()
    assert getattr(plain.strategy, "_layer_sync", None) is None
