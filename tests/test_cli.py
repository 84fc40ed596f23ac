"""lightning-snn CLI: links, errors, the console script, and the quickstart's real-data accuracy."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
    assert "args parameter" not in out.stderr  # main() no longer hands sys.argv to LightningCLI a second time


def _bad_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text(QUICKSTART.read_text().replace("batch_size: 32", "batch_sise: 32"))
    return cfg


@pytest.mark.slow  # a second console-script start (~20 s on a loaded CPU); main() is tested in-process below
def test_console_script_config_error_prints_the_reason_first(tmp_path):
    """A typo in a config: the reason (key, class, what is wrong) on the first line, no usage dump, exit 2."""
    exe = Path(sys.executable).with_name("lightning-snn")
    out = subprocess.run([str(exe), "fit", "--config", str(_bad_config(tmp_path))], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[0] == "lightning-snn fit: configuration error: data (lightning_snn.data.DigitsDataModule): Option 'batch_sise' is not accepted", out.stderr
    assert len(lines) <= 3 and "args parameter" not in out.stderr and "Traceback" not in out.stderr


def test_main_reports_config_errors_briefly_and_keeps_the_full_text_on_request(tmp_path, capsys, monkeypatch):
    from lightning_snn.cli import main

    cases = [  # arguments -> the reason printed
        (["--model.init_args.neuron", "{type: lif, decay: 0.5, v_threshold: -0.2}"],
         "model (lightning_snn.methods.BPTT): LIFNode: v_threshold (firing threshold) must be a finite number > 0, got -0.2"),
        (["--trainer.max_epochs", "abc"], "trainer.max_epochs: got abc; expected int or None"),
        (["--model.init_args.spike_storage", "int4"],
         "model.init_args.spike_storage (lightning_snn.methods.BPTT): Expected a Literal['float', 'bool', 'bits']. Got value: int4"),
        (["--config", str(tmp_path / "nope.yaml")], "config: File does not exist"),
    ]
    for extra, reason in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "--config", str(QUICKSTART), "--trainer.logger", "false", *extra])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-2].startswith(f"lightning-snn fit: configuration error: {reason}"), err
        assert "LIGHTNING_SNN_FULL_ERRORS=1" in err[-1] and len(err) <= 3  # (Lightning may log "Seed set to 0" first)
    monkeypatch.setenv("LIGHTNING_SNN_FULL_ERRORS", "1")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(_bad_config(tmp_path))])
    assert exit_info.value.code == 2
    assert "Does not validate against any of the Union subtypes" in capsys.readouterr().err  # jsonargparse's full report


def test_main_called_from_python_gives_no_args_warning():
    import warnings

    from lightning_snn.cli import main

    with warnings.catch_warnings(record=True) as record, pytest.raises(SystemExit) as exit_info:
        warnings.simplefilter("always")
        main(["fit", "--config", str(QUICKSTART), "--print_config"])  # parses as every command does, then exits 0
    assert exit_info.value.code in (0, None)
    assert not [w for w in record if "args parameter" in str(w.message)]


def test_quickstart_reaches_95_percent_on_real_digits(tmp_path):
    """The README's quickstart, on scikit-learn's real handwritten digits: >= 95% test accuracy."""
    cli = build_cli(["fit", "--config", str(QUICKSTART), "--trainer.default_root_dir", str(tmp_path),
                     "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"])
    acc = float(cli.trainer.callback_metrics["test/acc"])
    assert acc >= 0.95, f"quickstart test accuracy {acc:.4f} < 0.95"


# ------------------------------------------------------------------ checkpoint rule (issue 19, item 3)
SMALL = ["--model.init_args.T", "2", "--model.init_args.backbone_kwargs.channels", "[4, 8]",
         "--model.init_args.backbone_kwargs.hidden", "16", "--trainer.logger", "false",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    """A checkpoint of the quickstart model trained at T=2 with channels [4, 8], hidden 16 (2 steps)."""
    tmp = tmp_path_factory.mktemp("ckpt")
    cli = build_cli(["fit", "--config", str(QUICKSTART), *SMALL, "--trainer.max_steps", "2",
                     "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
                     "--trainer.enable_checkpointing", "false", "--trainer.default_root_dir", str(tmp), "--test_after_fit", "false"])
    path = tmp / "small.ckpt"
    cli.trainer.save_checkpoint(path)
    return path


def _validate(ckpt, *extra):
    return build_cli(["validate", "--config", str(QUICKSTART), *SMALL, *extra, "--ckpt_path", str(ckpt),
                      "--trainer.limit_val_batches", "1"])


def test_explicit_T_overrides_the_checkpoint_with_a_notice(small_ckpt, caplog):
    with caplog.at_level("INFO"):
        cli = _validate(small_ckpt, "--model.init_args.T", "4")
    assert cli.model.T == 4  # LightningCLI alone replaced it with the checkpoint's T=2, silently
    assert "model.init_args.T: using 4 as given" in caplog.text and str(small_ckpt) in caplog.text
    assert cli.model.backbone.num_classes == 10


def test_the_checkpoint_defines_the_architecture(small_ckpt):
    """The config's own sizes (channels [16, 32], hidden 128) conflict with the checkpoint's: an error naming them."""
    from lightning_snn.cli import CheckpointConfigError

    with pytest.raises(CheckpointConfigError, match=r"model.init_args.backbone_kwargs.channels: the config gives \[16, 32\]"):
        build_cli(["validate", "--config", str(QUICKSTART), "--trainer.logger", "false", "--ckpt_path", str(small_ckpt)])
    with pytest.raises(CheckpointConfigError, match=r"model.init_args.neuron.v_threshold: the config gives 0.5 .* trained with 0.2"):
        _validate(small_ckpt, "--model.init_args.neuron.v_threshold", "0.5")
    with pytest.raises(CheckpointConfigError, match=r"model.class_path: the config asks for .*RateBP"):
        _validate(small_ckpt, "--model.class_path", "lightning_snn.methods.RateBP")


def test_an_empty_checkpoint_is_one_sentence(tmp_path):
    from lightning_snn.checkpoint import CheckpointError

    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=f"checkpoint {empty} is empty"):
        _validate(empty)
    with pytest.raises(FileNotFoundError, match=f"checkpoint {tmp_path / 'nowhere.ckpt'} does not exist"):
        _validate(tmp_path / "nowhere.ckpt")


def test_data_that_does_not_fit_the_checkpoint_is_an_error(small_ckpt, tmp_path):
    """The checkpoint was trained on 8x8 digits; MNIST's 28x28 input (linked from the DataModule) is named."""
    from lightning_snn.cli import CheckpointConfigError
    from tests.fakes import write_fake_mnist

    write_fake_mnist(tmp_path, "MNIST", n_train=10, n_test=10)
    with pytest.raises(CheckpointConfigError, match=r"model.init_args.input_shape: the data gives \[1, 28, 28\]"):
        _validate(small_ckpt, "--data.class_path", "lightning_snn.data.MNISTDataModule", "--data.init_args.root", str(tmp_path))
