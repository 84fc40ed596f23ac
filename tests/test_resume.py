"""Exact resume from mid-epoch checkpoints (issue 19, item 4): the training order is saved in the checkpoint.

A run is interrupted after a step checkpoint (``ModelCheckpoint(every_n_train_steps)``, then an exception a few
steps later, as a crash or ``kill`` would leave it), resumed from that checkpoint with a fresh Trainer, and its
final weights are compared with those of an uninterrupted run: equal bit for bit on CPU. The model draws random
numbers in every step (Poisson encoding), so the RNG states in the checkpoint are tested as well.
"""
from __future__ import annotations

import os
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
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=max_epochs, limit_train_batches=6, logger=False, enable_progress_bar=False,
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
    full = _fit(tmp_path / "full", batch_size=128)
    steps = tmp_path / "steps"
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=steps, every_n_train_steps=4, save_top_k=-1, filename="{step}")
    with pytest.raises(RuntimeError, match="crash at step 5"):
        _fit(tmp_path / "crashed", callbacks=[ckpt, Crash(5)], batch_size=128)
    state = torch.load(steps / "step=4.ckpt", weights_only=True)
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["position"] == 4 * 128  # of 6 steps
    resumed = _fit(tmp_path / "resumed", ckpt_path=steps / "step=4.ckpt", batch_size=128)
    _assert_equal(full, resumed)


# ------------------------------------------------------------------ SLURM preemption (issue 19, item 8)
class SignalMidStep(L.Callback):
    """Deliver SIGUSR1 to this process in the middle of optimiser step ``at`` (as SLURM's time-limit warning may)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_before_optimizer_step(self, trainer, *args):
        if trainer.global_step == self.at:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.fixture
def emulated_slurm(tmp_path, monkeypatch):
    """SLURM's variables for a 1-task job 4242, and a stand-in `scontrol` that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "scontrol.args"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for key, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "resume-test", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0",
                       "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost", "SLURM_NTASKS_PER_NODE": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    return record


def test_slurm_requeue_checkpoints_at_a_step_boundary_and_the_requeued_run_matches(tmp_path, monkeypatch, emulated_slurm):
    """SIGUSR1 arrives inside step 4; the checkpoint is taken after that step, the job requeued, and the process
    stops. The relaunch (ckpt_path None on SLURM: Lightning picks the newest hpc_ckpt) ends with the weights of the
    uninterrupted run. (Lightning alone saves inside the signal handler, mid-step, and trains on.)"""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    monkeypatch.setenv("LIGHTNING_SNN_SUMMARY", "0")
    root = tmp_path / "job"
    full = _fit(tmp_path / "full", batch_size=128)
    with pytest.raises(SystemExit) as stop:
        _fit(root, callbacks=[SignalMidStep(3)], batch_size=128, plugins=[SLURMEnvironment(auto_requeue=True)])
    assert stop.value.code == 0
    assert emulated_slurm.read_text().split() == ["requeue", "4242"]
    hpc = root / "hpc_ckpt_1.ckpt"
    assert torch.load(hpc, weights_only=True)["global_step"] == 4  # the step in progress finished, nothing beyond
    resumed = _fit(root, batch_size=128, plugins=[SLURMEnvironment(auto_requeue=True)])
    _assert_equal(full, resumed)
