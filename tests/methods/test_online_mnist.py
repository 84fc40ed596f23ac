"""SLTT and OTTT on the real MNIST digits of ../shared/data: within 1.5 points of BPTT on the same short schedule."""
from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_snn.data import MNISTDataModule
from lightning_snn.methods import BPTT, OTTT, SLTT

ROOT = Path(__file__).parents[2]
SHARED_DATA = Path(os.environ.get("LIGHTNING_SNN_SHARED_DATA", ROOT.parent / "shared" / "data"))
HAS_MNIST = (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()

# one network, neuron, loss, optimiser and schedule for every method: MNISTNet (15C5-AP2-40C5-AP2-FC300-FC10, real
# logits), LIF with leak 0.5, threshold 1, soft reset, sigmoid surrogate; per-step TET loss (lambda 0.05), T = 4
NEURON = {"type": "lif", "decay": 0.5, "v_threshold": 1.0, "v_reset": None, "surrogate": {"name": "sigmoid", "alpha": 4.0}}
COMMON = dict(backbone="mnistnet", num_classes=10, input_shape=(1, 28, 28), T=4, neuron=NEURON,
              backbone_kwargs={"spiking_output": False}, loss="tet", tet_lambda=0.05)
EPOCHS = 1


def _accuracy(model: L.LightningModule, tmp_path: Path) -> float:
    L.seed_everything(0)
    model.configure_optimizers = lambda: {
        "optimizer": (opt := torch.optim.Adam(model.parameters(), lr=1e-3)),
        "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS),
    }
    trainer = L.Trainer(accelerator="cpu", max_epochs=EPOCHS, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, deterministic=True,
                        limit_val_batches=0, default_root_dir=tmp_path)
    dm = MNISTDataModule(root=str(SHARED_DATA), batch_size=64, augment=False)
    trainer.fit(model, dm)
    return float(trainer.test(model, dm, verbose=False)[0]["test/acc"])


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MNIST, reason=f"no real MNIST digits under {SHARED_DATA}/MNIST/raw (see ../shared/data/README.md)")
def test_online_methods_reach_bptt_accuracy_on_real_mnist(tmp_path):
    builders = {
        "bptt": lambda: BPTT(**COMMON),
        "sltt": lambda: SLTT(**COMMON),
        "ottt_a": lambda: OTTT(**COMMON, mse_target="constant"),
        "ottt_o": lambda: OTTT(**COMMON, mse_target="constant", variant="O"),
    }
    acc = {}
    for name, build in builders.items():
        L.seed_everything(0)
        acc[name] = _accuracy(build(), tmp_path / name)
        print(f"real-MNIST test accuracy, {name}: {100 * acc[name]:.2f}%", flush=True)
    assert acc["bptt"] > 0.85  # one epoch on 6,401 digits: well above chance
    for name in ("sltt", "ottt_a", "ottt_o"):
        assert acc[name] >= acc["bptt"] - 0.015, (name, acc)
