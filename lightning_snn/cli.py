"""``lightning-snn``: the LightningCLI entry point.

    lightning-snn fit --config configs/quickstart.yaml
    lightning-snn test --config configs/stbp/mnist_mnistnet.yaml --ckpt_path last.ckpt

Model and data are chosen by class path (``model.class_path: lightning_snn.methods.BPTT``, or the short
``BPTT``); the DataModule's ``num_classes`` and ``input_shape`` are linked into the model. Optimiser
and LR scheduler come from the config's top-level ``optimizer:`` and ``lr_scheduler:`` sections.
"""
from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.cli import LightningCLI

from .data import SpikingDataModule
from .methods import SpikingClassifier

__all__ = ["SpikingCLI", "build_cli", "main"]


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


def main(args: Sequence[str] | None = None) -> None:
    """Console-script entry point of ``lightning-snn``."""
    build_cli(args)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
