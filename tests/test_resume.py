"""Exact resume from mid-epoch checkpoints (issue 19, item 4): the training order is saved in the checkpoint.

A run is interrupted after a step checkpoint (``ModelCheckpoint(every_n_train_steps)``, then an exception a few
steps later, as a crash or ``kill`` would leave it), resumed from that checkpoint with a fresh Trainer, and its
final weights are compared with those of an uninterrupted run: equal bit for bit on CPU. The model draws random
numbers in every step (Poisson encoding), so the RNG states in the checkpoint are tested as well.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import TensorDataset

from lightning_snn.data import DigitsDataModule
from lightning_snn.data.base import EpochSeededSampler, ResumableDataLoader
from lightning_snn.methods import BPTT


class UnitDigits(DigitsDataModule):
    """The real digits with pixels in [0, 1] (Poisson encoding draws spikes with these probabilities)."""

    def setup(self, stage=None):
        first = self.train_set is None
        super().setup(stage)
        if first:
            self.train_set, self.test_set = (TensorDataset(ds.tensors[0] * self.std + self.mean, ds.tensors[1])
                                             for ds in (self.train_set, self.test_set))
            self.val_set = self.test_set


class Crash(L.Callback):
    """Raise after training step ``at`` (what a crash or a kill leaves behind: the last step checkpoint)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.at:
            raise RuntimeError(f"crash at step {self.at}")


def _fit(root: Path, callbacks=(), ckpt_path=None, max_epochs=2, batch_size=64, **trainer_kwargs) -> dict[str, torch.Tensor]:
    L.seed_everything(0, verbose=False)
    model = BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=2, encoding="poisson",
                 backbone_kwargs={"channels": [4, 8], "hidden": 16})
    data = UnitDigits(batch_size=batch_size, val_split=0.0)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=max_epochs, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=root,
                        callbacks=list(callbacks), deterministic=True, **trainer_kwargs)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ after resume: {different}"


def test_mid_epoch_kill_and_resume_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_SNN_SUMMARY", "0")
    full = _fit(tmp_path / "full")
    steps = tmp_path / "steps"
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=steps, every_n_train_steps=5, save_top_k=-1, filename="{step}")
    with pytest.raises(RuntimeError, match="crash at step 7"):
        _fit(tmp_path / "crashed", callbacks=[ckpt, Crash(7)])
    state = torch.load(steps / "step=5.ckpt", weights_only=True)
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["position"] == 5 * 64  # mid-epoch: 23 steps
    resumed = _fit(tmp_path / "resumed", ckpt_path=steps / "step=5.ckpt")
    _assert_equal(full, resumed)
