"""``lightning-snn``: the LightningCLI entry point.

    lightning-snn fit --config configs/quickstart.yaml
    lightning-snn test --config configs/stbp/mnist_mnistnet.yaml --ckpt_path last.ckpt
    lightning-snn export --config configs/stbp/mnist_mnistnet_q8.yaml --ckpt_path last.ckpt --out mnist_q8
    lightning-snn recipe --config configs/stbp/mnist_mnistnet.yaml   # the config against its recipe card

Model and data are chosen by class path (``model.class_path: lightning_snn.methods.BPTT``, or the short
``BPTT``); the DataModule's ``num_classes`` and ``input_shape`` are linked into the model. Optimiser
and LR scheduler come from the config's top-level ``optimizer:`` and ``lr_scheduler:`` sections.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.cli import LightningCLI

from .data import SpikingDataModule
from .methods import SpikingClassifier

__all__ = ["SpikingCLI", "build_cli", "export_main", "main"]


class SpikingCLI(LightningCLI):
    """LightningCLI with the data -> model links every lightning-snn experiment needs."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.init_args.input_shape", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit", type=bool, default=False, help="(fit only) run the test loop on the trained weights after fit"
        )

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit"):
            self.trainer.test(self.model, datamodule=self.datamodule)

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        # The methods keep a fallback optimiser for notebook use; the CLI's sections replace it silently.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*configure_optimizers` will be overridden.*")
            super()._add_configure_optimizers_method_to_model(subcommand)


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> SpikingCLI:
    """Build (and by default run) the CLI; ``args=None`` reads ``sys.argv``."""
    return SpikingCLI(
        SpikingClassifier,
        SpikingDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=list(args) if args is not None else None,
        run=run,
    )


def export_main(argv: Sequence[str]) -> tuple[Path, Path]:
    """``lightning-snn export``: write the integer weights of a quantization-aware-trained checkpoint.

    The model is built from the same config(s) as the training run (which must list the
    ``QuantizationAwareTraining`` callback), the checkpoint is loaded with ``weights_only=True``, and
    :func:`lightning_snn.quantization.export_quantized` writes ``<out>.safetensors`` + ``<out>.json``
    (and ``<out>.nir`` with ``--nir``). Further ``--section.key value`` overrides are passed to the config.
    """
    import argparse

    import torch

    from .callbacks import QuantizationAwareTraining
    from .quantization import export_quantized

    parser = argparse.ArgumentParser(prog="lightning-snn export", description=export_main.__doc__.split("\n")[0])
    parser.add_argument("-c", "--config", action="append", required=True, help="training config (repeatable)")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of the QAT run")
    parser.add_argument("--out", required=True, help="output stem: writes <out>.safetensors and <out>.json")
    parser.add_argument("--nir", action="store_true", help="also write <out>.nir (sequential backbones only)")
    ns, overrides = parser.parse_known_args(list(argv))
    cli_args = [a for c in ns.config for a in ("--config", c)] + overrides + ["--trainer.logger", "false"]
    cli = build_cli(cli_args, run=False)
    qat = [cb for cb in cli.trainer.callbacks if isinstance(cb, QuantizationAwareTraining)]
    if not qat:
        raise SystemExit(f"lightning-snn export: {ns.config} has no QuantizationAwareTraining callback under trainer.callbacks")
    qat[0].apply(cli.model)
    ckpt = Path(ns.ckpt_path)
    if not ckpt.is_file():
        raise SystemExit(f"lightning-snn export: checkpoint {ckpt} does not exist")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    try:
        cli.model.load_state_dict(state["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise SystemExit(f"lightning-snn export: {ckpt} does not match the model of {ns.config}: {err}") from None
    cli.model.eval()
    paths = export_quantized(cli.model, ns.out)
    if ns.nir:
        import nir

        from .nir_exchange import to_nir

        nir.write(str(Path(ns.out).with_suffix(".nir")), to_nir(cli.model.backbone, cli.model.input_shape))
    print(f"exported {paths[0]} and {paths[1]}")
    return paths


def main(args: Sequence[str] | None = None) -> None:
    """Console-script entry point of ``lightning-snn``."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "export":
        export_main(argv[1:])
        return
    if argv and argv[0] == "recipe":
        from .recipe import recipe_main

        raise SystemExit(recipe_main(argv[1:]))
    build_cli(argv)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
