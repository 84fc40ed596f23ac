"""Trainer features on CPU: 2-process DDP (gloo), bf16 mixed precision, exact checkpoint resume."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import torch

from lightning_snn.data import DigitsDataModule
from lightning_snn.methods import BPTT

ROOT = Path(__file__).parents[1]


def small_bptt() -> BPTT:
    return BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=2,
                backbone_kwargs={"channels": [4, 8], "hidden": 32, "spiking_output": False})


def trainer(tmp: Path, **kw) -> L.Trainer:
    kw.setdefault("logger", False)
    kw.setdefault("enable_checkpointing", False)
    return L.Trainer(accelerator="cpu", devices=1, deterministic=True, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp, **kw)


def test_checkpoint_resume_continues_to_the_same_weights(tmp_path):
    L.seed_everything(0)
    straight = small_bptt()
    trainer(tmp_path / "a", max_epochs=4, limit_val_batches=1).fit(straight, DigitsDataModule(batch_size=64))

    L.seed_everything(0)
    first = small_bptt()
    t1 = trainer(tmp_path / "b", max_epochs=2, limit_val_batches=1)
    t1.fit(first, DigitsDataModule(batch_size=64))
    ckpt = tmp_path / "mid.ckpt"
    t1.save_checkpoint(ckpt)
    torch.load(ckpt, weights_only=True)  # the checkpoint holds nothing but tensors and plain data

    L.seed_everything(123)  # the resumed run must not depend on the global RNG state
    resumed = small_bptt()
    trainer(tmp_path / "c", max_epochs=4, limit_val_batches=1).fit(resumed, DigitsDataModule(batch_size=64), ckpt_path=ckpt)

    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(first.state_dict()["backbone.body.0.module.weight"], a["backbone.body.0.module.weight"])


def test_bf16_mixed_precision_fit(tmp_path):
    L.seed_everything(0)
    model = small_bptt()
    before = model.backbone.body[0].module.weight.detach().clone()
    t = trainer(tmp_path, precision="bf16-mixed", max_epochs=1, limit_train_batches=5, limit_val_batches=2)
    t.fit(model, DigitsDataModule(batch_size=32))
    assert torch.isfinite(t.callback_metrics["train/loss"])
    assert "val/acc" in t.callback_metrics
    assert model.backbone.body[0].module.weight.dtype == torch.float32
    assert not torch.equal(before, model.backbone.body[0].module.weight)


def test_ddp_two_processes_fit_and_sync_metrics(tmp_path):
    """`strategy=ddp` with 2 CPU processes (gloo) trains, and the synced test accuracy equals the
    accuracy of the saved weights over the whole test split computed in one process."""
    exe = Path(sys.executable).with_name("lightning-snn")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    cmd = [str(exe), "fit", "--config", str(ROOT / "configs/quickstart.yaml"),
           "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
           "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
           "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
           "--test_after_fit", "true"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "distributed_backend=gloo" in out.stderr + out.stdout
    assert "All distributed processes registered. Starting with 2 processes" in out.stderr + out.stdout

    metrics = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    ddp_acc = float(next(r["test/acc"] for r in metrics if r.get("test/acc")))
    ckpt = next(tmp_path.rglob("*.ckpt"))
    model = BPTT.load_from_checkpoint(ckpt, weights_only=True).eval()
    dm = DigitsDataModule(batch_size=360)
    dm.setup("test")
    x, y = next(iter(dm.test_dataloader()))
    assert len(y) == 360
    with torch.no_grad():
        acc = (model.readout(model(x)).argmax(-1) == y).float().mean().item()
    assert abs(acc - ddp_acc) < 1e-6, (acc, ddp_acc)
