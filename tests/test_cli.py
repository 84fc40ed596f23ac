"""lightning-snn CLI: links, errors, the console script, and the quickstart's real-data accuracy."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_snn.cli import build_cli

ROOT = Path(__file__).parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def test_links_num_classes_and_input_shape_from_data(tmp_path):
    from tests.fakes import write_fake_cifar

    write_fake_cifar(tmp_path, num_classes=100, n_train=8, n_test=8)
    cli = build_cli(
        ["--config", str(ROOT / "configs/stbp/cifar10_resnet18.yaml"),
         "--data.class_path", "lightning_snn.data.CIFAR100DataModule", "--data.init_args.root", str(tmp_path),
         "--trainer.logger", "false"],
        run=False,
    )
    assert cli.model.num_classes == 100
    assert cli.model.input_shape == (3, 32, 32)
    assert cli.model.backbone.num_classes == 100


def test_spike_storage_from_the_command_line():
    cli = build_cli(["--config", str(QUICKSTART), "--model.init_args.spike_storage", "bits", "--trainer.logger", "false"], run=False)
    assert cli.model.spike_storage == "bits"
    with pytest.raises(SystemExit):  # jsonargparse rejects a value outside the Literal
        build_cli(["--config", str(QUICKSTART), "--model.init_args.spike_storage", "int4", "--trainer.logger", "false"], run=False)


def test_unknown_backbone_in_config_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet1234'; registered backbones: .*resnet19"):
        build_cli(["--config", str(QUICKSTART), "--model.init_args.backbone", "resnet1234", "--trainer.logger", "false"], run=False)


def test_missing_dataset_root_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_cli(["fit", "--config", str(ROOT / "configs/stbp/mnist_mnistnet.yaml"), "--data.init_args.root", str(missing),
                   "--trainer.fast_dev_run", "true", "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)])


def test_console_script_help():
    exe = Path(sys.executable).with_name("lightning-snn")
    out = subprocess.run([str(exe), "fit", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--test_after_fit" in out.stdout and "--optimizer" in out.stdout


def test_quickstart_reaches_95_percent_on_real_digits(tmp_path):
    """The README's quickstart, on scikit-learn's real handwritten digits: >= 95% test accuracy."""
    torch.set_num_threads(2)
    cli = build_cli(["fit", "--config", str(QUICKSTART), "--trainer.default_root_dir", str(tmp_path),
                     "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"])
    acc = float(cli.trainer.callback_metrics["test/acc"])
    assert acc >= 0.95, f"quickstart test accuracy {acc:.4f} < 0.95"
