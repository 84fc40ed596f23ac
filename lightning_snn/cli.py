"""``lightning-snn``: the LightningCLI entry point.

    lightning-snn fit --config configs/quickstart.yaml
    lightning-snn test --config configs/stbp/mnist_mnistnet.yaml --ckpt_path last.ckpt
    lightning-snn export --config configs/stbp/mnist_mnistnet_q8.yaml --ckpt_path last.ckpt --out mnist_q8
    lightning-snn recipe --config configs/stbp/mnist_mnistnet.yaml   # the config against its recipe card
    lightning-snn bench --config configs/stbp/mnist_mnistnet.yaml --T 2,4   # methods' step time and memory

Model and data are chosen by class path (``model.class_path: lightning_snn.methods.BPTT``, or the short
``BPTT``); the DataModule's ``num_classes`` and ``input_shape`` are linked into the model. Optimiser
and LR scheduler come from the config's top-level ``optimizer:`` and ``lr_scheduler:`` sections.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from .checkpoint import load_checkpoint

from .data import SpikingDataModule
from .methods import SpikingClassifier

__all__ = ["EVALUATION_SETTINGS", "CheckpointConfigError", "SpikingCLI", "build_cli", "export_main", "main", "reconcile_model_with_checkpoint"]


#: Model settings that an explicit config or command-line value may change when a checkpoint is loaded: they
#: change how the trained network is run, not what was trained (the number of time steps, the neurons' step
#: mode, how spikes are stored for backward, the IDE solver's iteration budget and tolerance).
EVALUATION_SETTINGS: frozenset[str] = frozenset(
    {"T", "step_mode", "spike_storage", "solver_max_iter", "solver_tol", "solver_memory", "residual_warning"}
)


class CheckpointConfigError(ValueError):
    """The config asks for a model that differs from the checkpoint's in a field the checkpoint defines."""


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"neuron": {"decay": 0.25}}`` -> ``{"neuron.decay": 0.25}``; tuples become lists (YAML has no tuples)."""
    if isinstance(tree, Namespace):
        tree = tree.as_dict()
    if isinstance(tree, dict) and tree:
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    if isinstance(tree, tuple):
        tree = list(tree)
    return {prefix[:-1]: tree}


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return path


def reconcile_model_with_checkpoint(
    ckpt_path: str | Path, hparams: dict[str, Any], explicit: dict[str, Any] | None, class_path: str | None
) -> tuple[dict[str, Any], list[str]]:
    """Apply the checkpoint rule to a model section; return it (``class_path`` / ``init_args``) and the notices.

    The rule: the checkpoint defines the model (its class and every ``__init__`` argument saved in its
    ``hyper_parameters``). A value the user gave explicitly (in a config file or on the command line, not a
    default) that differs from the checkpoint's is applied with a notice if it is one of
    :data:`EVALUATION_SETTINGS`, and is a :class:`CheckpointConfigError` naming the field otherwise. A field
    the checkpoint does not record keeps the config's value.
    """
    hparams = dict(hparams)
    hparams.pop("_instantiator", None)
    ckpt_class = hparams.pop("_class_path", None)
    explicit = explicit or {}
    if ckpt_class and class_path and _import(ckpt_class) is not _import(class_path):
        raise CheckpointConfigError(
            f"model.class_path: the config asks for {class_path} but checkpoint {ckpt_path} holds a {ckpt_class}; "
            "the checkpoint defines the model: remove model.class_path or give the checkpoint's class"
        )
    trained = _flatten(hparams)
    given = _flatten(explicit.get("init_args") or {}) if isinstance(explicit, dict) else {}
    init_args = dict(hparams)
    notices: list[str] = []
    for key, value in sorted(given.items()):
        top = key.split(".")[0]
        if top not in hparams:
            continue  # the checkpoint does not record this argument: the config's value stands
        if key in trained and trained[key] == value:
            continue
        ckpt_value = trained.get(key, "not set (the default)")
        if key == top and top in EVALUATION_SETTINGS:
            init_args[top] = value
            notices.append(f"model.init_args.{key}: using {value!r} as given; checkpoint {ckpt_path} was trained with {ckpt_value!r}")
            continue
        shown = ckpt_value if key not in trained else repr(ckpt_value)
        raise CheckpointConfigError(
            f"model.init_args.{key}: the config gives {value!r} but checkpoint {ckpt_path} was trained with {shown}; "
            "the checkpoint defines the model: remove the field from the config (or set it to the checkpoint's value); "
            f"only {', '.join(sorted(EVALUATION_SETTINGS))} may differ"
        )
    section: dict[str, Any] = {"init_args": init_args}
    if ckpt_class or class_path:
        section["class_path"] = ckpt_class or class_path
    return section, notices


class SpikingCLI(LightningCLI):
    """LightningCLI with the data -> model links every lightning-snn experiment needs.

    With a checkpoint (``validate|test|fit|predict --ckpt_path``, and ``lightning-snn export``) the model is
    built by :func:`reconcile_model_with_checkpoint`: the checkpoint's hyper-parameters define it, explicit
    evaluation settings (``T`` ...) are applied with a notice, and any other conflicting field is an error
    naming it. (LightningCLI's own handling replaces the whole model section by the checkpoint's, silently.)
    """

    def __init__(self, *args: Any, model_checkpoint: str | Path | None = None, **kwargs: Any) -> None:
        # `model_checkpoint`: the checkpoint whose model to build when no subcommand runs (`lightning-snn export`)
        self._model_checkpoint = model_checkpoint
        self._ckpt_hparams: dict[str, Any] = {}
        self._ckpt_source: str | Path | None = None
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.init_args.input_shape", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit", type=bool, default=False, help="(fit only) run the test loop on the trained weights after fit"
        )

    def parse_arguments(self, parser: Any, args: Any) -> None:
        super().parse_arguments(parser, args)
        # the values given in config files and on the command line, without the defaults
        self._explicit_config = parser.parse_args(args, defaults=False) if isinstance(args, (list, type(None))) else None

    def _parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        section = self.config[subcommand] if subcommand else self.config
        ckpt_path = section.get("ckpt_path") if subcommand else self._model_checkpoint
        if not ckpt_path or ckpt_path in ("last", "best", "hpc") or str(ckpt_path).startswith("registry") or "://" in str(ckpt_path):
            return  # Lightning's names for checkpoints it finds itself, and remote files: the Trainer resolves them
        ckpt = load_checkpoint(ckpt_path)  # a missing or unreadable file stops here, in one sentence naming it
        hparams = dict(ckpt.get("hyper_parameters") or {}) if isinstance(ckpt, dict) else {}
        if not hparams:
            return  # nothing recorded: the config defines the model
        explicit = self._explicit_config
        if explicit is not None and subcommand:
            explicit = explicit.get(subcommand)
        explicit_model = explicit.get("model") if explicit is not None else None
        if isinstance(explicit_model, Namespace):
            explicit_model = explicit_model.as_dict()
        model, notices = reconcile_model_with_checkpoint(
            ckpt_path, hparams, explicit_model if isinstance(explicit_model, dict) else None, section.get("model.class_path")
        )
        for notice in notices:
            rank_zero_info(notice)
        self._ckpt_hparams, self._ckpt_source = hparams, ckpt_path
        update = {subcommand: {"model": model}} if subcommand else {"model": model}
        self.config = self.parser.parse_object(update, self.config)

    def after_instantiate_classes(self) -> None:
        # num_classes / input_shape come from the DataModule (linked at instantiation): they must fit the checkpoint
        for key in ("num_classes", "input_shape"):
            if key not in self._ckpt_hparams:
                continue
            trained, built = _flatten(self._ckpt_hparams[key]).get(""), _flatten(getattr(self.model, key)).get("")
            if trained != built:
                raise CheckpointConfigError(
                    f"model.init_args.{key}: the data gives {built!r} (linked from data.{key}) but checkpoint "
                    f"{self._ckpt_source} was trained with {trained!r}; use the DataModule the model was trained on"
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


def build_cli(
    args: Sequence[str] | None = None, run: bool = True, model_checkpoint: str | Path | None = None, **cli_kwargs: Any
) -> SpikingCLI:
    """Build (and by default run) the CLI; ``args=None`` reads ``sys.argv``.

    ``model_checkpoint`` (with ``run=False``): build the model of that checkpoint, by the checkpoint rule of
    :class:`SpikingCLI` (what ``--ckpt_path`` does for the subcommands). ``cli_kwargs`` go to
    ``LightningCLI`` (e.g. ``parser_kwargs``).
    """
    return SpikingCLI(
        SpikingClassifier,
        SpikingDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=list(args) if args is not None else None,
        run=run,
        model_checkpoint=model_checkpoint,
        **cli_kwargs,
    )


def export_main(argv: Sequence[str], parser_kwargs: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """``lightning-snn export``: write the integer weights of a quantization-aware-trained checkpoint.

    The model is the checkpoint's (its recorded hyper-parameters; the config(s) of the training run must list
    the ``QuantizationAwareTraining`` callback and may change only evaluation settings such as ``T``, with a
    notice; any other field that differs from the checkpoint is an error naming it), the checkpoint is loaded
    with ``weights_only=True``, and
    :func:`lightning_snn.export.export_quantized` writes ``<out>.safetensors`` + ``<out>.json``
    (and ``<out>.nir`` with ``--nir``). Further ``--section.key value`` overrides are passed to the config;
    ``parser_kwargs`` go to the config parser (``main`` uses them to report configuration errors briefly).
    """
    import argparse

    from .callbacks import QuantizationAwareTraining
    from .export import export_quantized

    parser = argparse.ArgumentParser(prog="lightning-snn export", description=export_main.__doc__.split("\n")[0])
    parser.add_argument("-c", "--config", action="append", required=True, help="training config (repeatable)")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of the QAT run")
    parser.add_argument("--out", required=True, help="output stem: writes <out>.safetensors and <out>.json")
    parser.add_argument("--nir", action="store_true", help="also write <out>.nir (sequential backbones only)")
    ns, overrides = parser.parse_known_args(list(argv))
    cli_args = [a for c in ns.config for a in ("--config", c)] + overrides + ["--trainer.logger", "false"]
    ckpt = Path(ns.ckpt_path)
    state = load_checkpoint(ckpt)
    cli = build_cli(cli_args, run=False, model_checkpoint=ckpt, parser_kwargs=dict(parser_kwargs or {}))
    qat = [cb for cb in cli.trainer.callbacks if isinstance(cb, QuantizationAwareTraining)]
    if not qat:
        raise SystemExit(f"lightning-snn export: {ns.config} has no QuantizationAwareTraining callback under trainer.callbacks")
    qat[0].apply(cli.model)
    try:
        cli.model.load_state_dict(state["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise SystemExit(f"lightning-snn export: {ckpt} does not match the model of {ns.config}: {err}") from None
    cli.model.eval()
    paths = export_quantized(cli.model, ns.out)
    if ns.nir:
        import nir

        from .export import to_nir

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
    if isinstance(err, (ArgumentError, CheckpointConfigError)):
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
        if argv and argv[0] == "recipe":
            from .recipe import recipe_main
            raise SystemExit(recipe_main(argv[1:]))
        if argv and argv[0] == "bench":
            from .bench.cli import main as bench_main
            raise SystemExit(bench_main(argv[1:]))
        parser_kwargs: dict[str, Any] = {}
        if not full:  # raise ArgumentError instead of printing the usage text and exiting
            parser_kwargs = {"exit_on_error": False, **{sub: {"exit_on_error": False} for sub in SpikingCLI.subcommands()}}
        try:
            if argv and argv[0] == "export":  # no subcommands below it: only the top-level parser's setting applies
                export_main(argv[1:], parser_kwargs={} if full else {"exit_on_error": False})
                return
            build_cli(None if args is None else argv, parser_kwargs=parser_kwargs)
        except Exception as err:
            if full or not _is_config_error(err):
                raise
            sub = argv[0] if argv and argv[0] in (*SpikingCLI.subcommands(), "export") else ""
            prog = f"lightning-snn {sub}".strip()
            print(f"{prog}: configuration error: {_config_error_reason(err)}\n"
                  f"  (options: {prog} --help; full error text: {FULL_ERRORS_ENV}=1)", file=sys.stderr)
            raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
