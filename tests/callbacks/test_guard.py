"""SpikingGuard: non-finite inputs, losses, gradients and weights stop the run naming step, batch and tensor;
no non-finite checkpoint is written; divergence and dead layers are warned about; the off switch works."""
from __future__ import annotations

import math
import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_snn.callbacks import NonFiniteError, SpikingGuard
from lightning_snn.callbacks.guard import fused_norms, named_tensors
from lightning_snn.data import DigitsDataModule
from lightning_snn.methods import BPTT


def tiny(**kw) -> BPTT:
    return BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=2,
                backbone_kwargs={"channels": [4, 8], "hidden": 16, "spiking_output": False}, **kw)


def digits(n: int = 64, nan_at: tuple[int, ...] | None = None) -> TensorDataset:
    """The first ``n`` real training digits; ``nan_at`` = (sample, channel, row, col) gets a NaN pixel."""
    dm = DigitsDataModule()
    dm.setup()
    x, y = (t[:n].clone() for t in dm.train_set.tensors)
    if nan_at is not None:
        x[nan_at] = float("nan")
    return TensorDataset(x, y)


def trainer(tmp_path, **kw) -> L.Trainer:
    kw.setdefault("enable_checkpointing", False)
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path, num_sanity_val_steps=0, **kw)


def assert_finite(model: torch.nn.Module) -> None:
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name


def test_fused_norms_and_the_exact_confirmation():
    """One fused 2-norm per tensor: finite only for finite tensors (float16 squares accumulate in float32); a
    non-finite norm of huge finite values (sum of squares beyond float32) is confirmed exactly before a report."""
    ts = [torch.tensor([1.0, float("nan")]), torch.tensor([3e38, -3e38]), torch.tensor([300.0, 60000.0]).half(),
          torch.tensor([1.0, float("-inf")]).half(), torch.empty(0), torch.tensor([[1e100, 2.0]], dtype=torch.float64)]
    assert [bool(torch.isfinite(t).all()) for t in ts] == [False, True, True, False, True, True]
    assert [math.isfinite(float(n)) for n in fused_norms(ts)] == [False, False, True, False, True, True]  # [1]: overflow
    guard, reported = SpikingGuard(), []
    guard._check_now([(f"t{i}", t) for i, t in enumerate(ts)], lambda name, t: reported.append(name))
    assert reported == ["t0", "t3"]
    batch = {"x": torch.zeros(2), "meta": ["a.png", "b.png"], "pair": (torch.ones(1), torch.arange(3))}
    assert [n for n, _ in named_tensors(batch)] == ["batch['x']", "batch['pair'][0]"]  # integer labels are skipped


def test_nan_pixels_stop_training_naming_step_batch_and_input_and_no_nan_checkpoint(tmp_path):
    """Three NaN pixels in batch 2: the run stops there, before the optimizer step, and every checkpoint
    written before is finite (without the guard: NaN weights, loss ln 10, exit 0, NaN checkpoint)."""
    torch.manual_seed(0)
    data = digits(96)
    data.tensors[0][70, 0, 3, 3:6] = float("nan")  # sample 70 is in batch 2 (batch size 32)
    model = tiny()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1, save_last=True)
    t = trainer(tmp_path, max_epochs=1, enable_checkpointing=True, callbacks=[ckpt], limit_val_batches=0)
    with pytest.raises(NonFiniteError, match=r"non-finite training input batch\[0\] \(3 NaN and 0 inf among 2048 values\) "
                                             r"at global step 2 \(epoch 0, batch 2\)"):
        t.fit(model, DataLoader(data, batch_size=32))
    assert_finite(model)  # the step on the bad batch was never taken
    saved = sorted((tmp_path / "ckpt").glob("*.ckpt"))
    assert saved, "the two good steps were checkpointed"
    for path in saved:
        state = torch.load(path, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), path


def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    model = tiny()
    t = trainer(tmp_path, max_steps=1, limit_val_batches=0)
    t.fit(model, DataLoader(digits(32), batch_size=32))
    with torch.no_grad():
        model.backbone.body[0].module.weight[0, 0, 0, 0] = float("inf")
    target = tmp_path / "bad.ckpt"
    with pytest.raises(NonFiniteError, match=r"refusing to save a checkpoint: state_dict entry "
                                             r"'backbone.body.0.module.weight' is non-finite \(0 NaN and 1 inf"):
        t.save_checkpoint(target)
    assert not target.exists()


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_nan_input_at_inference_raises_naming_the_batch(tmp_path, stage):
    """An SNN turns a NaN image into silence and a finite, confident prediction: the guard raises instead."""
    model = tiny()
    data = digits(24, nan_at=(17, 0, 4, 4))  # sample 17: batch 2 with batch size 8
    loader = DataLoader(data, batch_size=8)
    name = {"validate": "validation", "test": "test", "predict": "predict"}[stage]
    with pytest.raises(NonFiniteError, match=rf"non-finite {name} input batch\[0\] \(1 NaN .* at {name} batch 2 "):
        getattr(trainer(tmp_path), stage)(model, loader)


def test_non_finite_weights_are_refused_before_evaluation(tmp_path):
    model = tiny()
    bad, param = list(model.named_parameters())[-1]
    with torch.no_grad():
        param.view(-1)[3] = float("nan")
    with pytest.raises(NonFiniteError, match=rf"parameter '{bad}' is non-finite before test"):
        trainer(tmp_path).test(model, DataLoader(digits(8), batch_size=8))


def test_half_precision_adam_is_caught_at_the_first_step(tmp_path):
    """precision 16-true with Adam: the first update makes weights non-finite (eps underflows in float16)."""
    torch.manual_seed(0)
    model = tiny()
    t = trainer(tmp_path, precision="16-true", max_steps=3, limit_val_batches=0)
    with pytest.raises(NonFiniteError, match=r"parameter '.*' is non-finite after the optimizer step .* at global step 0 "
                                             r"\(epoch 0, batch 0\); with precision='16-true'"):
        t.fit(model, DataLoader(digits(96), batch_size=32))


def test_non_finite_loss_names_the_loss(tmp_path):
    class InfLoss(BPTT):
        def compute_loss(self, outputs, target):
            return super().compute_loss(outputs, target) * (math.inf if self.trainer.global_step == 1 else 1.0)

    model = InfLoss(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=2,
                    backbone_kwargs={"channels": [4, 8], "hidden": 16, "spiking_output": False})
    with pytest.raises(NonFiniteError, match=r"the training loss is inf at global step 1 \(epoch 0, batch 1\)"):
        trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(model, DataLoader(digits(96), batch_size=32))


def test_divergence_is_warned_once_per_epoch(tmp_path):
    """lr 1e8: the loss jumps from ln 10 to ~1e9 in one step and stays finite for a while: a warning, not silence."""
    torch.manual_seed(0)
    model = tiny()
    model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=1e8)
    with pytest.warns(UserWarning, match=r"training loss diverges at global step 1 \(epoch 0, batch 1\): .* more than "
                                         r"10x its running level") as record:
        trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(model, DataLoader(digits(96), batch_size=32))
    assert sum("diverges" in str(w.message) for w in record) == 1


def test_normal_training_raises_no_guard_warning(tmp_path):
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer(tmp_path, max_epochs=2, limit_train_batches=6, limit_val_batches=2).fit(tiny(), DigitsDataModule(batch_size=32))
    assert not [w for w in record if "SpikingGuard" in str(w.message)]


def test_a_dead_layer_is_warned_with_its_name(tmp_path):
    """A threshold far above the input scale silences one layer: the validation-epoch rates name it, once per epoch."""
    model = tiny()
    dead = "backbone.body.3"
    model.get_submodule(dead).v_threshold.fill_(1e6)
    with pytest.warns(UserWarning, match=r"epoch 0: .* neuron layers are silent \(firing rate 0\) over the validation "
                                         r"epoch: .*backbone\.body\.3.* check v_threshold") as record:
        trainer(tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=2, val_check_interval=1).fit(
            model, DigitsDataModule(batch_size=16))
    silent = [str(w.message) for w in record if "silent (firing rate 0)" in str(w.message)]
    assert len(silent) == 2 and "epoch 1" in silent[1]  # once per epoch, though validated after every batch
    assert "backbone.body.1," not in silent[0] and "backbone.body.1." not in silent[0]  # the live first layer is not named


def test_saturated_layers_are_reported():
    guard = SpikingGuard()
    with pytest.warns(UserWarning, match=r"1 of 3 neuron layers are saturated \(firing rate 1\) over x: b\. .*v_threshold"):
        guard._warn_rates({"a": 0.3, "b": 1.0, "c": 0.999}, "over x", epoch=0)


def test_the_off_switch(tmp_path, monkeypatch):
    """With the guard switched off (in Python, or by the environment) the old, silent behaviour comes back."""
    for switch in ("python", "env"):
        torch.manual_seed(0)
        model = tiny()
        callbacks = [SpikingGuard(enabled=False)] if switch == "python" else []
        if switch == "env":
            monkeypatch.setenv("LIGHTNING_SNN_GUARD", "0")
        trainer(tmp_path, max_steps=1, limit_val_batches=0, callbacks=callbacks).fit(
            model, DataLoader(digits(32, nan_at=(0, 0, 3, 3)), batch_size=32))
        assert not torch.isfinite(model.backbone.body[0].module.weight).all(), switch
