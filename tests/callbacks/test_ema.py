"""EMA of the weights: differs from the live weights, follows the formula, validates on the average, checkpoints both."""
from __future__ import annotations

import lightning as L
import torch

from lightning_snn.callbacks import EMA, ema_state_dict
from lightning_snn.data import DigitsDataModule
from lightning_snn.methods import BPTT


def _model() -> BPTT:
    return BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=2,
                backbone_kwargs={"channels": [4, 8], "hidden": 16, "spiking_output": False})


def _trainer(tmp_path, ema: EMA, **kw) -> L.Trainer:
    return L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, logger=False, enable_progress_bar=False,
                     default_root_dir=tmp_path, callbacks=[ema], enable_model_summary=False, **kw)


def test_ema_follows_the_update_rule_and_checkpoints_both(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_SNN_SUMMARY", "0")
    torch.manual_seed(0)
    model, ema = _model(), EMA(decay=0.5)
    snapshots = []

    class Tap(L.Callback):  # the live weights after each optimiser step, before EMA's update
        def on_train_batch_end(self, trainer, pl_module, *args):
            snapshots.append({k: v.clone() for k, v in pl_module.backbone.state_dict().items()})

    trainer = _trainer(tmp_path, ema)
    trainer.callbacks.insert(0, Tap())
    initial = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    trainer.fit(model, DigitsDataModule(batch_size=16))
    # timm: decay 0 at the first counted step (a copy), then θ_ema <- 0.5 θ_ema + 0.5 θ
    expected = {k: snapshots[0][k].clone() for k in initial}
    for snap in snapshots[1:]:
        for k, v in expected.items():
            if v.is_floating_point():
                v.mul_(0.5).add_(0.5 * snap[k])
            else:
                v.copy_(snap[k])
    averaged = ema.ema.module.state_dict()
    live = model.backbone.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(averaged[k], v)
    assert any(not torch.equal(averaged[k], live[k]) for k in live if live[k].is_floating_point())
    # the checkpoint keeps the live weights in state_dict and the average in the callback state
    path = tmp_path / "ema.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    for k, v in live.items():
        torch.testing.assert_close(ckpt["state_dict"][f"backbone.{k}"], v)
    stored = ema_state_dict(path)
    for k, v in averaged.items():
        torch.testing.assert_close(stored[k], v)
    # ... and they load back: validation of a fresh model on the checkpoint runs on the average
    seen = {}

    class Probe(L.Callback):
        def on_validation_batch_start(self, trainer, pl_module, *args):
            seen.update({k: v.clone() for k, v in pl_module.backbone.state_dict().items()})

    fresh_ema = EMA(decay=0.5)
    val = L.Trainer(logger=False, enable_progress_bar=False, limit_val_batches=1, callbacks=[fresh_ema, Probe()], enable_model_summary=False)
    fresh = _model()
    val.validate(fresh, DigitsDataModule(batch_size=16), ckpt_path=path)
    for k, v in averaged.items():
        torch.testing.assert_close(seen[k], v)
    for k, v in live.items():  # and the live weights are back afterwards
        torch.testing.assert_close(fresh.backbone.state_dict()[k], v)
