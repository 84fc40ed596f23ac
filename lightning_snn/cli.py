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

import os
import re
import sys
import warnings
from argparse import ArgumentError
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
        # LightningCLI builds the config's optimizer over `model.parameters()`: for the duration of that call
        # the method's parameter groups (weight-decay exemptions, `no_weight_decay`) stand in for them.
        model = self.model
        groups = model.optimizer_param_groups() if isinstance(model, SpikingClassifier) else None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*configure_optimizers` will be overridden.*")
            if groups is None:
                super()._add_configure_optimizers_method_to_model(subcommand)
                return
            model.__dict__["parameters"] = lambda *args, **kwargs: groups
            try:
                super()._add_configure_optimizers_method_to_model(subcommand)
            finally:
                del model.__dict__["parameters"]

    @staticmethod
    def configure_optimizers(lightning_module: Any, optimizer: Any, lr_scheduler: Any = None) -> Any:
        """LightningCLI's pairing of the config's optimiser and scheduler; a scheduler whose ``interval`` is
        ``"step"`` (e.g. :class:`~lightning_snn.optim.TimmCosineLR`) is stepped after every optimiser step."""
        if lr_scheduler is not None and getattr(lr_scheduler, "interval", "epoch") == "step":
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "interval": "step"}}
        return LightningCLI.configure_optimizers(lightning_module, optimizer, lr_scheduler)


def build_cli(args: Sequence[str] | None = None, run: bool = True, **cli_kwargs: Any) -> SpikingCLI:
    """Build (and by default run) the CLI; ``args=None`` reads ``sys.argv``. ``cli_kwargs`` go to
    ``LightningCLI`` (e.g. ``parser_kwargs``)."""
    return SpikingCLI(
        SpikingClassifier,
        SpikingDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=list(args) if args is not None else None,
        run=run,
        **cli_kwargs,
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


#: set to ``1`` to see a configuration error in full (traceback and jsonargparse's report) instead of its reason
FULL_ERRORS_ENV = "LIGHTNING_SNN_FULL_ERRORS"

# the prefixes of jsonargparse's wrapping messages; the reason is the first message in the chain without one
_WRAPPERS = ("Parser key ", "Does not validate against any of the Union subtypes", "Problem with given class_path")


def _exception_chain(err: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    return chain


def _type_name(text: str) -> str:
    return re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text).replace("typing.", "").replace("NoneType", "None")


def _union_type_mismatch(text: str) -> str:
    """'got X; expected A or B' when every alternative of a jsonargparse Union report is a plain type mismatch."""
    errors = re.search(r"Errors:\n((?:\s*- .*\n?)+)", text)
    given = re.search(r"Given value: (.*)$", text, re.M)
    if not errors or not given:
        return ""
    items = [line.strip()[2:] for line in errors.group(1).splitlines() if line.strip().startswith("- ")]
    types = [re.fullmatch(r"Expected a (<class '[\w.]+'>|typing\.\w+\[.*\])", item) for item in items]
    if not items or not all(types):
        return ""
    return f"got {given.group(1)}; expected " + " or ".join(_type_name(t.group(1)) for t in types)


# a model / data section built from a config: the Union's first subtype names the section
_SECTIONS = {"SpikingClassifier": "model", "SpikingDataModule": "data"}


def _config_error_reason(err: BaseException) -> str:
    """The short reason of a configuration error: where in the config (``model.init_args.T``), which class, and
    the innermost message that is not one of jsonargparse's wrappers (at most three lines)."""
    keys: list[str] = []
    classes: list[str] = []
    reason = ""
    for e in _exception_chain(err):
        text = str(e).strip()
        key = re.match(r'Parser key "([^"]+)":\s*(.*)', text, re.S)
        if key and (not keys or keys[-1] != key.group(1)):
            keys.append(key.group(1))
        section = re.search(r"Subtypes: \[<class '[\w.]*?(\w+)'>", text)
        if not keys and section and section.group(1) in _SECTIONS:
            keys.append(_SECTIONS[section.group(1)])  # an error of the class itself, raised while instantiating
        cls = re.match(r"Problem with given class_path '([^']+)'", text) or re.search(r"Given value: Namespace\(class_path='([^']+)'", text)
        if cls and (not classes or classes[-1] != cls.group(1)):
            classes.append(cls.group(1))
            keys.append("init_args")
        reason = _union_type_mismatch(text)
        if reason:
            break
        if not text.startswith(_WRAPPERS):
            reason = _type_name(text) or type(e).__name__
            break
        if key and key.group(2) and not key.group(2).startswith(_WRAPPERS):
            reason = key.group(2)  # 'Parser key "config": File does not exist: ...', in case nothing deeper follows
    if not reason:  # only wrappers: the first error listed by the outermost one
        listed = re.search(r"Errors:\n\s*- (.+)", str(err))
        reason = listed.group(1) if listed else str(err).strip().splitlines()[0]
    while keys and keys[-1] == "init_args":
        keys.pop()
    where = " ".join(filter(None, [".".join(keys), f"({classes[-1]})" if classes else ""]))
    lines = reason.splitlines()[:3]
    return "\n  ".join([(f"{where}: " if where else "") + lines[0], *lines[1:]])


def _is_config_error(err: BaseException) -> bool:
    """An error raised while LightningCLI parsed the arguments or built model, data and trainer from them."""
    if isinstance(err, ArgumentError):
        return True
    tb = err.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name in ("parse_arguments", "instantiate_classes") and isinstance(frame.f_locals.get("self"), LightningCLI):
            return True
        tb = tb.tb_next
    return False


def main(args: Sequence[str] | None = None) -> None:
    """Console-script entry point of ``lightning-snn``.

    A configuration error (a parse error, an unknown option, a value a class rejects) is printed as its reason,
    first and in one to three lines, and exits with status 2; ``LIGHTNING_SNN_FULL_ERRORS=1`` shows the full text.
    """
    argv = list(sys.argv[1:] if args is None else args)
    full = os.environ.get(FULL_ERRORS_ENV, "0").strip().lower() not in ("", "0", "false", "no", "off")
    with warnings.catch_warnings():
        # main hands LightningCLI one argument list, resolved from one source: LightningCLI's warning about `args`
        # given while sys.argv also holds arguments (which it is whenever the console script runs) does not apply
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")
        if argv and argv[0] == "export":
            export_main(argv[1:])
            return
        if argv and argv[0] == "recipe":
            from .recipe import recipe_main
            raise SystemExit(recipe_main(argv[1:]))
        parser_kwargs: dict[str, Any] = {}
        if not full:  # raise ArgumentError instead of printing the usage text and exiting
            parser_kwargs = {"exit_on_error": False, **{sub: {"exit_on_error": False} for sub in SpikingCLI.subcommands()}}
        try:
            build_cli(None if args is None else argv, parser_kwargs=parser_kwargs)
        except Exception as err:
            if full or not _is_config_error(err):
                raise
            sub = argv[0] if argv and argv[0] in SpikingCLI.subcommands() else ""
            prog = f"lightning-snn {sub}".strip()
            print(f"{prog}: configuration error: {_config_error_reason(err)}\n"
                  f"  (options: {prog} --help; full error text: {FULL_ERRORS_ENV}=1)", file=sys.stderr)
            raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
