"""The event-data configs run one fast_dev_run step on fake files in each dataset's original format.

tests/test_configs.py runs every config exactly as written; here the runs are shrunk (T = 2 frames,
and 16x16 frames for VGGSNN, the smallest input its four poolings accept) so that these checks of the
data -> model wiring (shape and T links, default cache location) stay fast on CPU.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_snn.cli import build_cli
from tests.fakes import FAKE_WRITERS

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "bptt"
FEW_FRAMES = ["--data.init_args.T", "2", "--model.init_args.T", "2"]
SMALL = [*FEW_FRAMES, "--data.init_args.size", "16"]
# (config, DataModule, frame shape as configured, extra arguments, frame shape of this run)
CASES = [
    ("nmnist_mnistnet.yaml", "NMNISTDataModule", (2, 34, 34), FEW_FRAMES, (2, 34, 34)),
    ("cifar10dvs_vggsnn.yaml", "CIFAR10DVSDataModule", (2, 48, 48), SMALL, (2, 16, 16)),
    ("dvsgesture_vggsnn.yaml", "DVSGestureDataModule", (2, 48, 48), SMALL, (2, 16, 16)),
]


@pytest.mark.parametrize("config,datamodule,configured,extra,shape", CASES, ids=[c[0] for c in CASES])
def test_event_config_fast_dev_run(tmp_path, config, datamodule, configured, extra, shape):
    path = CONFIGS / config
    spec = yaml.safe_load(path.read_text())
    assert spec["data"]["class_path"].endswith(datamodule)
    assert spec["model"]["class_path"] == "lightning_snn.methods.BPTT"
    assert spec["model"]["init_args"]["T"] == spec["data"]["init_args"]["T"] == 10  # the model's T is the data's
    size = spec["data"]["init_args"].get("size")
    assert (configured[1:] == (size, size)) if size else configured == (2, 34, 34)
    root = tmp_path / "data"
    FAKE_WRITERS[datamodule](root)
    cli = build_cli([
        "fit", "--config", str(path),
        "--data.root", str(root),
        *extra,
        "--data.init_args.batch_size", "2",
        "--data.init_args.num_workers", "0",
        "--trainer.fast_dev_run", "true",
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.logger", "false",
        "--trainer.default_root_dir", str(tmp_path / "run"),
    ])
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.datamodule.input_shape == shape and tuple(cli.model.input_shape) == shape  # linked by the CLI
    assert cli.model.T == cli.datamodule.T
    # the run binned the fake recordings into the default cache under the data root
    assert any((root / ".lightning_snn_cache").rglob("*.pt"))
