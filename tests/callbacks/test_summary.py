"""SpikingSummary: hand-counted synaptic operations, no trace left on the model, printed once at fit start."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_snn.backbones import Flatten, TimeDistributed
from lightning_snn.callbacks import FiringRateMonitor, SpikingSummary, count_synaptic_ops
from lightning_snn.methods import BPTT
from lightning_snn.neurons import BatchNormThroughTime, IFNode


def two_layer_model() -> BPTT:
    """Flatten -> Linear(4, 3) (selects inputs 0, 1, 2) -> IF (V_th 1, reset to 0) -> Linear(3, 2), T = 2."""
    lin1, lin2 = nn.Linear(4, 3, bias=False), nn.Linear(3, 2)
    with torch.no_grad():
        lin1.weight.copy_(torch.eye(3, 4))
        lin2.weight.fill_(0.5)
    backbone = nn.Sequential(Flatten(), TimeDistributed(lin1), IFNode(v_threshold=1.0, v_reset=0.0), TimeDistributed(lin2))
    backbone.num_classes = 2
    return BPTT(backbone=backbone, num_classes=2, input_shape=(1, 2, 2), T=2)


def test_hand_counted_linear_network():
    """Sample 0 drives the neurons with currents (2, 0.6, 0): spikes (1,0,0) at t=0 and (1,1,0) at t=1.
    Sample 1 drives them with (0, 0, 3): spikes (0,0,1) at both steps. Five spikes in 2 samples x 2 steps.

    * Linear(4, 3) sees the real-valued image: 4·3 = 12 MACs per step, 24 per sample over T = 2.
    * Linear(3, 2) sees spikes: each spike fans out to 2 outputs, 5 spikes x 2 / 2 samples = 5 SOPs per
      sample (= its 3·2·2 = 12 dense MACs per sample times the input spike rate 5/12).
    """
    model = two_layer_model()
    x = torch.tensor([[2.0, 0.6, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]]).view(2, 1, 2, 2)
    ops = SpikingSummary().measure(model, x)
    assert ops.macs == pytest.approx(24.0)
    assert ops.sops == pytest.approx(5.0)
    assert ops.dense_macs == pytest.approx(24.0 + 12.0)
    assert ops.samples == 2
    assert ops.layers["backbone.1.module"] == pytest.approx({"sops": 0.0, "macs": 24.0, "dense_macs": 24.0, "input_rate": 3 / 8})
    assert ops.layers["backbone.3.module"] == pytest.approx({"sops": 5.0, "macs": 0.0, "dense_macs": 12.0, "input_rate": 5 / 12})
    assert ops.firing_rates == pytest.approx({"backbone.2": 5 / 12})


def test_hand_counted_grouped_convolution_on_binary_event_frames():
    """Event frames are 0/1 already, so even the first layer counts SOPs. Conv2d(2, 4, 3, padding 1, groups 2)
    on 4x4 frames: 4·4·4 outputs x (2/2)·3·3 = 576 dense MACs per step, T = 3 -> 1728 per sample. The 2
    samples hold 9 and 3 ones among 2·3·2·4·4 = 192 input values, so SOPs = 1728 · 12/192 = 108 per sample."""
    conv = nn.Conv2d(2, 4, 3, padding=1, groups=2, bias=False)
    backbone = nn.Sequential(TimeDistributed(conv), Flatten(), TimeDistributed(nn.Linear(64, 2)))
    backbone.num_classes = 2
    model = BPTT(backbone=backbone, num_classes=2, input_shape=(2, 4, 4), T=3)
    frames = torch.zeros(2, 3, 2, 4, 4)  # [B, T, C, H, W]
    frames.view(2, -1)[0, :9] = 1.0
    frames.view(2, -1)[1, 10:13] = 1.0
    ops = SpikingSummary().measure(model, frames)
    assert ops.layers["backbone.0.module"]["dense_macs"] == pytest.approx(1728.0)
    assert ops.layers["backbone.0.module"]["sops"] == pytest.approx(1728.0 * 12 / 192)
    assert ops.layers["backbone.0.module"]["macs"] == 0.0
    assert ops.layers["backbone.2.module"]["macs"] == pytest.approx(64 * 2 * 3)  # conv outputs are real-valued


def test_single_and_multi_step_give_the_same_counts():
    torch.manual_seed(0)
    kw = dict(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=3,
              backbone_kwargs={"channels": [4, 8], "hidden": 16})
    multi = BPTT(step_mode="m", **kw)
    single = BPTT(step_mode="s", **kw)
    single.load_state_dict(multi.state_dict())
    x = torch.rand(5, 1, 8, 8) * 2
    a, b = SpikingSummary().measure(multi, x), SpikingSummary().measure(single, x)
    assert a.sops > 0 and a.macs > 0
    assert a.sops == pytest.approx(b.sops) and a.macs == pytest.approx(b.macs)
    assert a.firing_rates == pytest.approx(b.firing_rates)


def test_the_extra_pass_leaves_no_trace():
    """Train mode, BN running statistics, neuron state, gradients and the RNG are as before (Poisson input)."""
    torch.manual_seed(0)
    model = BPTT(backbone="resnet18", num_classes=10, input_shape=(1, 8, 8), T=2, encoding="poisson",
                 backbone_kwargs={"norm": "bn"})
    bn_first = next(m for m in model.modules() if isinstance(m, BatchNormThroughTime))
    bn_first.eval()  # a submodule in eval mode stays in eval mode
    bn = [m for m in model.modules() if isinstance(m, BatchNormThroughTime)][-1]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    x = torch.rand(3, 1, 8, 8)
    state = torch.get_rng_state()
    ops = SpikingSummary().measure(model, x)
    assert ops.sops > 0
    assert torch.equal(torch.get_rng_state(), state)
    assert {n: m.training for n, m in model.named_modules()} == modes
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert int(bn.num_batches_tracked) == 0
    assert all(getattr(m, "v", None) is None for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_with_one_count_function_directly():
    lin = nn.Linear(3, 4)
    ops = count_synaptic_ops(lambda: lin(torch.tensor([[1.0, 0.0, 1.0]])), lin, batch_size=1)
    assert ops.sops == pytest.approx(12 * 2 / 3) and ops.macs == 0.0
    with pytest.raises(ValueError, match="batch_size"):
        count_synaptic_ops(lambda: None, lin, batch_size=0)


def _fit(tmp_path, callbacks, max_samples_seen: list | None = None) -> L.Trainer:
    torch.manual_seed(0)
    model = two_layer_model()
    data = TensorDataset(torch.rand(6, 1, 2, 2) * 3, torch.randint(0, 2, (6,)))
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=callbacks, default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(data, batch_size=3))
    return trainer


def test_printed_once_at_fit_start_and_added_once(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LIGHTNING_SNN_SUMMARY", raising=False)
    trainer = _fit(tmp_path, [])
    out = capsys.readouterr().out
    assert out.count("lightning-snn summary") == 1
    for text in ("method        BPTT", "backbone      Sequential", "T = 2", "parameters    20 (20 trainable)",
                 "(1, 2, 2) (C, H, W), 2 classes", "1 layers, mean firing rate", "SOPs", "MACs per sample"):
        assert text in out, text
    assert sum(isinstance(c, SpikingSummary) for c in trainer.callbacks) == 1
    assert sum(isinstance(c, FiringRateMonitor) for c in trainer.callbacks) == 1
    summary = next(c for c in trainer.callbacks if isinstance(c, SpikingSummary)).summary
    assert summary["macs_per_sample"] == pytest.approx(24.0)  # 4·3 MACs per step x T = 2
    assert summary["ops_source"] == "random input"  # plain dataloaders, no datamodule


def test_opt_out(tmp_path, capsys, monkeypatch):
    off = SpikingSummary(enabled=False)
    trainer = _fit(tmp_path, [off])
    assert [c for c in trainer.callbacks if isinstance(c, SpikingSummary)] == [off]  # kept, not replaced
    assert "lightning-snn summary" not in capsys.readouterr().out
    monkeypatch.setenv("LIGHTNING_SNN_SUMMARY", "0")
    _fit(tmp_path, [])
    assert "lightning-snn summary" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="max_samples"):
        SpikingSummary(max_samples=0)


def test_datamodule_batch_is_used(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LIGHTNING_SNN_SUMMARY", raising=False)
    from lightning_snn.data import DigitsDataModule

    model = BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=2,
                 backbone_kwargs={"channels": [4, 8], "hidden": 16, "spiking_output": False})
    summary = SpikingSummary(max_samples=16)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[summary], default_root_dir=tmp_path)
    trainer.fit(model, DigitsDataModule(batch_size=8))
    info = summary.summary
    assert info["ops_source"] == "8 training samples"  # capped at the loader's batch size
    assert info["batch_shape"] == (8, 1, 8, 8)
    assert info["data"] == "DigitsDataModule" and info["data_input_shape"] == (1, 8, 8) and info["data_num_classes"] == 10
    assert info["train_samples"] > 0
    # conv1 (1->4, 5x5) on the real-valued image: 8·8·4 outputs x 25 MACs per step, T = 2
    assert info["macs_per_sample"] == pytest.approx(8 * 8 * 4 * 25 * 2)
    assert "DigitsDataModule: input (1, 8, 8)" in capsys.readouterr().out


def test_fast_dev_run_prints_without_the_extra_pass(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LIGHTNING_SNN_SUMMARY", raising=False)
    summary = SpikingSummary()
    model = two_layer_model()
    data = TensorDataset(torch.rand(6, 1, 2, 2) * 3, torch.randint(0, 2, (6,)))
    L.Trainer(accelerator="cpu", fast_dev_run=True, logger=False, enable_progress_bar=False, enable_model_summary=False,
              callbacks=[summary], default_root_dir=tmp_path).fit(model, DataLoader(data, batch_size=3))
    assert "sops_per_sample" not in summary.summary and summary.summary["ops_skipped"] == "fast_dev_run"
    assert "synaptic ops  not counted (fast_dev_run)" in capsys.readouterr().out
