"""SLTT and OTTT compose with spike_storage, the QAT callback, bf16-mixed and 2-process DDP."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_snn.callbacks import QuantizationAwareTraining
from lightning_snn.data import DigitsDataModule
from lightning_snn.methods import OTTT, SLTT
from lightning_snn.quantization import quantized_layers

ROOT = Path(__file__).parents[2]
SMALL = {"channels": [4, 8], "hidden": 16, "spiking_output": False}
STBP_LIF = {"type": "lif", "decay": 0.25, "v_threshold": 0.2, "v_reset": 0.0, "surrogate": {"name": "rectangular", "width": 1.0}}

METHODS = {
    "sltt": lambda **kw: SLTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=3, neuron=STBP_LIF,
                              backbone_kwargs=SMALL, **kw),
    "sltt_k": lambda **kw: SLTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=3, K=1, neuron=STBP_LIF,
                                backbone_kwargs=SMALL, **kw),
    "ottt_a": lambda **kw: OTTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=3, neuron=STBP_LIF,
                                backbone_kwargs=SMALL, **kw),
    "ottt_o": lambda **kw: OTTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=3, variant="O",
                                neuron=STBP_LIF, backbone_kwargs=SMALL, **kw),
}


@pytest.mark.parametrize("method", ["sltt", "ottt_a"])
def test_spike_storage_bits_gives_identical_gradients(method):
    grads = []
    for storage in ("float", "bits"):
        torch.manual_seed(0)
        model = METHODS[method](spike_storage=storage)
        x, y = torch.rand(6, 1, 8, 8) * 4, torch.arange(6)
        model.run_sequence(x, y, backward=lambda loss: loss.backward())
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _fit(model, tmp_path, **kw) -> L.Trainer:
    trainer = L.Trainer(accelerator="cpu", fast_dev_run=True, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, **kw)
    trainer.fit(model, DigitsDataModule(batch_size=8))
    return trainer


def _updates(method: str) -> int:
    return 3 if method == "ottt_o" else 1  # OTTT_O updates after each of the T = 3 steps


@pytest.mark.parametrize("method", sorted(METHODS))
def test_fast_dev_run_with_qat(method, tmp_path):
    torch.manual_seed(0)
    model = METHODS[method]()
    layers = [m for m in model.backbone.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    before = [m.weight.detach().clone() for m in layers]
    cb = QuantizationAwareTraining(bits=4)
    trainer = _fit(model, tmp_path, callbacks=[cb])
    assert trainer.global_step == _updates(method)
    assert len(dict(quantized_layers(model.backbone))) == len(layers)
    assert all(m.weight.unique().numel() <= 16 for m in layers)
    assert any(not torch.equal(m.parametrizations.weight.original, w0) for m, w0 in zip(layers, before))


@pytest.mark.parametrize("method", ["sltt", "ottt_o"])
def test_fast_dev_run_bf16_mixed_and_bit_packed_spikes(method, tmp_path):
    torch.manual_seed(0)
    model = METHODS[method](spike_storage="bits")
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _fit(model, tmp_path, precision="bf16-mixed")
    assert trainer.global_step == _updates(method)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_schedulers_are_stepped_under_manual_optimisation(tmp_path):
    model = METHODS["ottt_a"]()
    model.configure_optimizers = lambda: {
        "optimizer": (opt := torch.optim.SGD(model.parameters(), lr=0.1)),
        "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5), "interval": "step"},
    }
    trainer = L.Trainer(accelerator="cpu", max_steps=3, limit_val_batches=0, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(model, DigitsDataModule(batch_size=8))
    assert trainer.global_step == 3
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


DDP_SCRIPT = """
import sys, torch, lightning as L
from lightning_snn.data import DigitsDataModule
from tests.methods.test_online_composition import METHODS

class Dump(L.Callback):
    def on_train_end(self, trainer, module):
        torch.save({k: v.detach().clone() for k, v in module.state_dict().items()}, f"{sys.argv[2]}/rank{trainer.global_rank}.pt")

L.seed_everything(0)
model = METHODS[sys.argv[1]]()
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=int(sys.argv[3]), limit_val_batches=0,
                    logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                    callbacks=[Dump()], default_root_dir=sys.argv[2])
trainer.fit(model, DigitsDataModule(batch_size=8))
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sltt_k", "ottt_a", "ottt_o"])
def test_ddp_two_processes_keep_identical_weights(method, tmp_path):
    """Each rank sees different samples; the weights stay identical only if every update's gradient is
    all-reduced (A: once per batch after the no_sync steps; O: at every time step)."""
    script = tmp_path / "ddp_online.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    updates = 2
    out = subprocess.run([sys.executable, str(script), method, str(tmp_path), str(updates * _updates(method))],
                         capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    start = METHODS[method]().state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert any(not torch.equal(a[k], start[k]) for k in a if k.endswith("weight"))


@pytest.mark.parametrize("method", ["sltt", "ottt_o"])
def test_mixup_soft_targets_reach_the_per_step_loss(method, tmp_path):
    """Mixup under manual optimisation: the per-step loss takes the soft targets (CE against the mixture, the
    mixture itself as the MSE goal) and a fit with mixup on runs and updates the weights."""
    torch.manual_seed(0)
    model = METHODS[method](mixup={"mixup_alpha": 0.5, "label_smoothing": 0.0}, tet_lambda=0.5, mse_target="onehot")
    out = torch.randn(4, 10)
    soft = torch.softmax(torch.randn(4, 10), -1)
    expected = 0.5 * -(soft * out.log_softmax(-1)).sum(-1).mean() + 0.5 * torch.nn.functional.mse_loss(out, soft)
    torch.testing.assert_close(model.step_loss(out, soft), expected)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _fit(model, tmp_path)
    assert trainer.global_step == _updates(method)
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))
