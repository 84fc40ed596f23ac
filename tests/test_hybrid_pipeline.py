"""DSR's hybrid ImageNet pipeline end to end on a tiny fake ImageFolder, through the real configs and CLI:
(a) fit the ANN, (b) validate it with ThresholdCalibration -> threshold file, (c) fit the SNN from both files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_snn.cli import build_cli
from lightning_snn.methods import DSR
from lightning_snn.methods.dsr import THRESHOLD_FORMAT, load_thresholds
from lightning_snn.neurons import DSRIFNode
from tests.fakes import write_fake_imagefolder

CONFIGS = Path(__file__).parents[1] / "configs" / "dsr"
NUM_CLASSES, SIZE = 4, 16


def common(root: Path, run_dir: Path | None = None) -> list[str]:
    args = [
        "--data.init_args.root", str(root),
        "--data.init_args.num_classes", str(NUM_CLASSES),
        "--data.init_args.image_size", str(SIZE),
        "--data.init_args.batch_size", "4",
        "--data.init_args.num_workers", "0",
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]
    return args + (["--trainer.default_root_dir", str(run_dir)] if run_dir is not None else [])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Steps (a) and (b) exactly as the configs chain them (their relative runs/dsr/imagenet/... paths), run in a
    temporary working directory."""
    tmp = tmp_path_factory.mktemp("hybrid")
    root = write_fake_imagefolder(tmp / "imagenet", num_classes=NUM_CLASSES, n_per_class=4, size=SIZE)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        # (a) the ANN; the config's ModelCheckpoint writes runs/dsr/imagenet/ann/checkpoints/last.ckpt
        ann = build_cli(["fit", "--config", str(CONFIGS / "imagenet_preact_resnet18_ann.yaml"), *common(root),
                         "--trainer.max_epochs", "1"])
        assert ann.trainer.state.finished
        # (b) calibration: a validation of the ANN checkpoint writes runs/dsr/imagenet/thresholds.json
        cal = build_cli(["validate", "--config", str(CONFIGS / "imagenet_preact_resnet18_calibrate.yaml"), *common(root),
                         "--ckpt_path", "runs/dsr/imagenet/ann/checkpoints/last.ckpt", "--trainer.limit_val_batches", "1"])
        assert cal.trainer.state.finished
    ckpt = tmp / "runs/dsr/imagenet/ann/checkpoints/last.ckpt"
    thresholds = tmp / "runs/dsr/imagenet/thresholds.json"
    assert ckpt.is_file() and thresholds.is_file()
    return {"root": root, "tmp": tmp, "ckpt": ckpt, "thresholds": thresholds, "ann": ann.model}


def snn_cli(pipeline, *extra: str, run: bool = False):
    return build_cli([
        *(["fit"] if run else []),
        "--config", str(CONFIGS / "imagenet_preact_resnet18_if.yaml"), *common(pipeline["root"], pipeline["tmp"] / "snn"),
        "--model.init_args.T", "4",
        "--model.init_args.pretrained_ann", str(pipeline["ckpt"]),
        "--model.init_args.thresholds", str(pipeline["thresholds"]),
        *extra,
    ], run=run)


def test_calibration_file_names_every_snn_neuron(pipeline):
    data = json.loads(pipeline["thresholds"].read_text())
    assert data["format"] == THRESHOLD_FORMAT and data["percentile"] == 99.9 and data["split"] == "val"  # the official script calibrates on its validation loader
    assert data["num_batches"] == 4  # 16 validation images in batches of 4 (the config asks for 5)
    snn = snn_cli(pipeline).model
    neurons = [name for name, m in snn.backbone.named_modules() if isinstance(m, DSRIFNode)]
    assert sorted(data["thresholds"]) == sorted(neurons) and len(neurons) == 20
    assert all(0 <= v <= data["max"][k] for k, v in data["thresholds"].items())


def test_snn_is_initialised_from_the_ann_and_the_thresholds(pipeline):
    snn = snn_cli(pipeline).model
    ann_state = torch.load(pipeline["ckpt"], map_location="cpu", weights_only=True)["state_dict"]
    before = snn.backbone.body.conv1.module.weight.detach().clone()
    snn.initialise_from_files()
    first = snn.backbone.body.conv1.module.weight
    assert not torch.equal(before, first)
    torch.testing.assert_close(first, ann_state["backbone.body.conv1.module.weight"], rtol=0, atol=0)
    for key, value in snn.backbone.state_dict().items():  # every non-neuron tensor, BN statistics included
        if not key.endswith("v_threshold"):
            torch.testing.assert_close(value, ann_state[f"backbone.{key}"], rtol=0, atol=0)
    file = json.loads(pipeline["thresholds"].read_text())["thresholds"]
    for name, m in snn.backbone.named_modules():
        if isinstance(m, DSRIFNode):
            assert float(m.v_threshold.detach()) == pytest.approx(max(file[name], 0.01))


def test_snn_step_runs_end_to_end(pipeline, tmp_path):
    cli = snn_cli(pipeline, "--trainer.fast_dev_run", "true", run=True)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.model._initialised
    # a checkpoint of the SNN keeps its trained weights: the ANN file is not read again
    path = tmp_path / "snn.ckpt"
    with torch.no_grad():
        cli.model.backbone.body.conv1.module.weight.add_(1.0)  # unmistakably not the ANN's weights any more
    cli.trainer.save_checkpoint(path)
    trained = cli.model.backbone.body.conv1.module.weight.detach().clone()
    loaded = DSR.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert loaded.hparams["pretrained_ann"] == str(pipeline["ckpt"])
    loaded.setup("test")
    torch.testing.assert_close(loaded.backbone.body.conv1.module.weight, trained, rtol=0, atol=0)


def test_mismatched_ann_checkpoint_is_a_clear_error(pipeline):
    ckpt = str(pipeline["ckpt"])
    wider = DSR(backbone="preact_resnet18_imagenet", backbone_kwargs={"width": 32}, num_classes=NUM_CLASSES,
                input_shape=(3, SIZE, SIZE), T=2, pretrained_ann=ckpt)
    with pytest.raises(ValueError, match=rf"{ckpt}.*key 'body\.conv1\.module\.weight' has shape \(64, 3, 7, 7\) in the checkpoint but \(32, 3, 7, 7\)"):
        wider.initialise_from_files()
    cifar = DSR(backbone="preact_resnet18", num_classes=NUM_CLASSES, input_shape=(3, SIZE, SIZE), T=2, pretrained_ann=ckpt)
    with pytest.raises(ValueError, match=rf"{ckpt}.*key 'body\.conv1\.module\.weight'"):
        cifar.initialise_from_files()
    classes = DSR(backbone="preact_resnet18_imagenet", num_classes=10, input_shape=(3, SIZE, SIZE), T=2, pretrained_ann=ckpt)
    with pytest.raises(ValueError, match=rf"{ckpt}.*key 'body\.fc\.module\.weight' has shape"):
        classes.initialise_from_files()
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        DSR(backbone="preact_resnet18_imagenet", num_classes=NUM_CLASSES, input_shape=(3, SIZE, SIZE), T=2,
            pretrained_ann=str(pipeline["tmp"] / "nowhere.ckpt")).initialise_from_files()


def test_mismatched_threshold_file_is_a_clear_error(pipeline, tmp_path):
    data = json.loads(pipeline["thresholds"].read_text())
    missing = dict(data, thresholds={k: v for k, v in data["thresholds"].items() if k != "body.layer3.1.sn2"})
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(missing))
    snn = DSR(backbone="preact_resnet18_imagenet", num_classes=NUM_CLASSES, input_shape=(3, SIZE, SIZE), T=2)
    with pytest.raises(ValueError, match=rf"{path}.*no entry for neuron 'body\.layer3\.1\.sn2'"):
        load_thresholds(snn.backbone, str(path))
    cifar = DSR(backbone="preact_resnet18", num_classes=NUM_CLASSES, input_shape=(3, SIZE, SIZE), T=2)
    with pytest.raises(ValueError, match=rf"{pipeline['thresholds']}.*(no entry for neuron|is not a DSR neuron)"):
        load_thresholds(cifar.backbone, str(pipeline["thresholds"]))
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read .* as JSON"):
        load_thresholds(snn.backbone, str(path))


def test_lif_thresholds_are_scaled_by_delta_t(pipeline):
    snn = DSR(backbone="preact_resnet18_imagenet", num_classes=NUM_CLASSES, input_shape=(3, SIZE, SIZE), T=2,
              neuron={"type": "dsr_lif", "delta_t": 0.05, "v_threshold_bound": 0.0})
    applied = load_thresholds(snn.backbone, str(pipeline["thresholds"]))
    file = json.loads(pipeline["thresholds"].read_text())["thresholds"]
    assert applied == pytest.approx({k: v * 0.05 for k, v in file.items()}, rel=1e-6)
