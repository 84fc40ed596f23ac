"""Every config in configs/ loads and runs one tiny batch (fast_dev_run) on fake data in the real format."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from lightning_snn.cli import build_cli
from tests.fakes import FAKE_WRITERS

CONFIGS = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))
CLUSTER_ONLY = {"cluster"}  # configs that need several nodes are parsed, not run (tests/test_cli.py)
# Keep the one tiny batch tiny: ImageNet configs run at 64x64 (the backbones pool globally, so every layer
# is still exercised); everything else runs exactly as configured.
SHRINK = {"ImageNetDataModule": ["--data.init_args.image_size", "64"]}
# IDE's CIFAR configs simulate T = 30 / 100 steps of 11.8M-parameter networks; the one tiny batch runs them at
# T = 2 (the simulation loop, equilibrium map and Broyden solve are the same code at any T).
SHRINK_BY_DIR = {("ide", "CIFAR10DataModule"): ["--model.init_args.T", "2"], ("ide", "CIFAR100DataModule"): ["--model.init_args.T", "2"],
                 # SLTT's DVS128 Gesture rows run T = 20 frames of 128x128; the tiny batch runs 4 frames (K = 4 still < T + 1)
                 ("sltt", "DVSGestureDataModule"): ["--model.init_args.T", "4", "--data.init_args.T", "4"],
                 ("ottt", "DVSGestureDataModule"): ["--model.init_args.T", "4", "--data.init_args.T", "4"],
                 # SLTT's ImageNet NF-ResNets run T = 6 (K = 2 for SLTT-2); the tiny batch runs 2 steps
                 ("sltt", "ImageNetDataModule"): ["--model.init_args.T", "2"], ("ottt", "ImageNetDataModule"): ["--model.init_args.T", "2"],
                 # bptt's CIFAR10-DVS rows run T = 10 (VGGSNN, 48x48) and 16 (Spikformer, 128x128) frames; the tiny batch runs 4
                 ("bptt", "CIFAR10DVSDataModule"): ["--model.init_args.T", "4", "--data.init_args.T", "4"]}


# SLTT's ImageNet stage-2 rows differ from sltt/imagenet_nf_resnet34.yaml only in the NF-ResNet depth (and K): they are
# built (parsed and instantiated); the 34-layer row runs the tiny batch, and SLTT-K's step runs in the DVS rows.
BUILD_ONLY = {"sltt/imagenet_nf_resnet50.yaml", "sltt/imagenet_nf_resnet101.yaml", "sltt/imagenet_nf_resnet101_k2.yaml",
              # the SEW paper's CIFAR10-DVS net is the DVS Gesture net (same class) at twice and four times the width;
              # the Gesture row runs the tiny batch. MS-ResNet-18's CIFAR-100 row differs from its CIFAR-10 row in the
              # dataset, head width, milestones and seed only.
              "bptt/cifar10dvs_sew_resnet.yaml", "bptt/cifar100_ms_resnet18.yaml",
              # the CIFAR-100 rows of the spiking transformers differ from their CIFAR-10 rows (which run the tiny batch)
              # only in the dataset, its statistics and the head width
              "bptt/cifar100_spikformer_4_384.yaml", "bptt/cifar100_spike_driven_transformer_2_512.yaml"}
# The SEW DVS nets need full 128x128 frames (seven 2x2 poolings); the tiny batch runs 2 of their 16 frames in fp32
# (CPU bf16 autocast of the convolutions costs more than the run); MS-ResNet-18's CIFAR row runs T = 2 of its 4 steps
SHRINK_BY_CONFIG = {c: ["--model.init_args.T", "2", "--data.init_args.T", "2", "--trainer.precision", "32-true"]
                    for c in ("bptt/dvsgesture_sew_resnet.yaml", "bptt/cifar10dvs_sew_resnet.yaml")}
SHRINK_BY_CONFIG["bptt/cifar10_ms_resnet18.yaml"] = ["--model.init_args.T", "2"]
# the Gesture row trains on t_train = 12 of its 16 frames: at T = 2 its training step runs on 1 (eval: both)
SHRINK_BY_CONFIG["bptt/dvsgesture_sew_resnet.yaml"] += ["--model.init_args.t_train", "1"]


def _data_class(config: Path) -> str:
    spec = yaml.safe_load(config.read_text())["data"]
    return spec["class_path"].rsplit(".", 1)[-1]


def test_there_are_configs():
    assert any(c.name == "quickstart.yaml" for c in CONFIGS)


def _same_run_as(config: Path) -> Path | None:
    """The config whose shrunk run is identical to this one's: IDE's T = 100 rows differ from their T = 30 twins
    only in T, which the tiny run sets to 2 for both. Such a config is built (parsed and instantiated), not run."""
    if config.parent.name == "ide" and config.stem.endswith("_t100"):
        twin = config.with_name(config.stem[: -len("_t100")] + "_t30.yaml")
        return twin if twin.is_file() else None
    return None


def _config_id(p: Path) -> str:
    return str(p.relative_to(p.parents[1]))


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.parent.name not in CLUSTER_ONLY], ids=_config_id)
def test_config_fast_dev_run(config: Path, tmp_path: Path):
    _fast_dev_run(config, tmp_path, build_only=f"{config.parent.name}/{config.name}" in BUILD_ONLY)


@pytest.mark.slow
@pytest.mark.parametrize("config", [c for c in CONFIGS if f"{c.parent.name}/{c.name}" in BUILD_ONLY], ids=_config_id)
def test_build_only_config_runs(config: Path, tmp_path: Path):
    """The configs the default run only builds also run their tiny batch (slow: each repeats a row that runs)."""
    _fast_dev_run(config, tmp_path, build_only=False)


def _fast_dev_run(config: Path, tmp_path: Path, build_only: bool) -> None:
    name = _data_class(config)
    assert name in FAKE_WRITERS, f"{config}: no fake-data writer for {name} in tests/fakes.py"
    FAKE_WRITERS[name](tmp_path / "data")
    args = [
        "fit",
        "--config", str(config),
        "--trainer.fast_dev_run", "true",
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.logger", "false",
        "--trainer.default_root_dir", str(tmp_path / "run"),
        "--data.init_args.batch_size", "2",  # two samples: BN statistics still exist (T x 2 per channel)
        # no worker processes for one tiny batch: forking 4 workers per loader cost more than the run itself
        # (worker loading is tested in tests/data/, e.g. test_event_cache.py)
        "--data.init_args.num_workers", "0",
    ]
    if name != "DigitsDataModule":
        args += ["--data.init_args.root", str(tmp_path / "data")]
    args += SHRINK.get(name, [])
    twin = _same_run_as(config)
    if twin is not None:  # instantiate everything as configured; the twin runs the identical tiny batch
        cli = build_cli(args[1:], run=False)
        spec, twin_spec = yaml.safe_load(config.read_text()), yaml.safe_load(twin.read_text())
        assert cli.model.T == spec["model"]["init_args"]["T"] == 100
        twin_spec["model"]["init_args"]["T"] = 100
        twin_spec["trainer"]["default_root_dir"] = spec["trainer"]["default_root_dir"]
        assert twin_spec == spec, f"{config} and {twin} differ in more than T"
        return
    args += SHRINK_BY_DIR.get((config.parent.name, name), [])
    args += SHRINK_BY_CONFIG.get(f"{config.parent.name}/{config.name}", [])
    if build_only:
        cli = build_cli(args[1:], run=False)
        assert cli.model.backbone.num_classes == cli.datamodule.num_classes
        return
    if yaml.safe_load(config.read_text())["model"]["init_args"].get("init_weights"):
        # a fine-tuning config starts from another run's checkpoint: give it this model's own initial weights
        weights = tmp_path / "init_weights.pt"
        torch.save(build_cli(args[1:], run=False).model.state_dict(), weights)
        args += ["--model.init_args.init_weights", str(weights)]
    cli = build_cli(args)
    assert cli.trainer.state.finished
    # one optimiser step was taken (OTTT_O updates after every time step of the one batch)
    assert cli.trainer.global_step == (cli.model.T if getattr(cli.model, "updates_every_step", False) else 1)
