"""Recipe cards: what a mirroring config takes from the official code, and where it deviates.

A config under ``configs/<family>/<name>.yaml`` that mirrors an official command has a card at
``recipes/<family>/<name>.yaml`` (schema and rules in ``recipes/README.md``). This module

* loads and validates a card (:func:`load_card`), naming the file and field at fault;
* extracts the same fields from a config resolved by the CLI parser, from the instantiated model,
  DataModule, trainer and optimiser (:func:`extract_recipe`), so the values compared are the ones a
  ``lightning-snn fit`` run uses, defaults included;
* holds one against the other (:func:`compare_card`): each field equals the official value, or a
  declared deviation names it with the value the config now has.

``lightning-snn recipe --config configs/<family>/<name>.yaml`` prints the comparison
(:func:`recipe_main`); ``tests/test_recipes.py`` runs it over every config.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from .optim import named_param_kinds

__all__ = [
    "RecipeCardError",
    "Finding",
    "VALUE_FIELDS",
    "OPTIONAL_VALUE_FIELDS",
    "card_path_for",
    "load_card",
    "extract_recipe",
    "compare_card",
    "check_config",
    "recipe_main",
]

#: the fields every card's ``values`` block states (``recipes/README.md``).
VALUE_FIELDS: tuple[str, ...] = (
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "weight_decay_scope",
    "lr_schedule",
    "epochs",
    "batch_size",
    "T",
    "neuron",
    "surrogate",
    "backbone",
    "backbone_kwargs",
    "num_params",
    "augmentation",
    "loss",
    "seed",
    "precision",
)
#: the default of an optional field that is not checked when a card leaves it out.
_UNCHECKED = object()
#: fields a card may leave out; an absent one states the library default given here, which is still checked.
OPTIONAL_VALUE_FIELDS: dict[str, Any] = {
    "method": _UNCHECKED,
    "label_smoothing": 0.0,
    "encoding": "direct",
    "step_mode": "m",
    "T_train": None,  # frames per training batch (SEW ResNet's --T_train); None: all T
}
_CARD_KEYS = {"config", "official", "values", "config_values", "deviations"}
_OFFICIAL_KEYS = {"repository", "commit", "command", "published"}
_DEVIATION_KEYS = {"field", "official", "library", "reason", "effect"}
# scheduler arguments that describe no schedule
_SCHEDULER_IGNORED = {"last_epoch", "verbose"}


class RecipeCardError(ValueError):
    """A recipe card that does not follow the schema of ``recipes/README.md``."""


@dataclass(frozen=True)
class Finding:
    """One compared field: ``status`` is ``match``, ``declared`` (a deviation states it) or a problem:
    ``undeclared`` (the config differs from the official value and no deviation says so) or ``stale``
    (a deviation is declared but the config now has the official value, or a different one)."""

    field: str
    official: Any
    actual: Any
    status: str
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("match", "declared", "unchecked")


# ----------------------------------------------------------------------------------------- cards
def card_path_for(config: str | Path, recipes_root: str | Path | None = None) -> Path:
    """``configs/<family>/<name>.yaml`` -> ``recipes/<family>/<name>.yaml`` (beside ``configs/``)."""
    config = Path(config).resolve()
    if recipes_root is None:
        configs_dir = next((p for p in config.parents if p.name == "configs"), None)
        if configs_dir is None:
            raise RecipeCardError(f"{config}: not under a configs/ folder; pass the card path explicitly")
        recipes_root = configs_dir.parent / "recipes"
        return Path(recipes_root) / config.relative_to(configs_dir)
    return Path(recipes_root) / config.parent.name / config.name


def load_card(path: str | Path) -> dict[str, Any]:
    """Read and validate one card; raises :class:`RecipeCardError` naming the file and the field at fault."""
    path = Path(path)
    if not path.is_file():
        raise RecipeCardError(f"recipe card {path} does not exist (schema: recipes/README.md)")
    try:
        card = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RecipeCardError(f"recipe card {path} is not valid YAML: {err}") from None
    if not isinstance(card, dict):
        raise RecipeCardError(f"recipe card {path}: expected a mapping at the top level")

    def fail(msg: str) -> None:
        raise RecipeCardError(f"recipe card {path}: {msg}")

    unknown = set(card) - _CARD_KEYS
    if unknown:
        fail(f"unknown top-level keys {sorted(unknown)}; allowed: {sorted(_CARD_KEYS)}")
    for key in ("config", "official", "values"):
        if key not in card:
            fail(f"missing `{key}`")
    official = card["official"]
    if not isinstance(official, dict):
        fail("`official` must be a mapping")
    missing = _OFFICIAL_KEYS - set(official)
    if missing:
        fail(f"`official` lacks {sorted(missing)}")
    values = card["values"]
    if not isinstance(values, dict):
        fail("`values` must be a mapping")
    missing = [f for f in VALUE_FIELDS if f not in values]
    if missing:
        fail(f"`values` lacks {missing}")
    unknown = set(values) - set(VALUE_FIELDS) - set(OPTIONAL_VALUE_FIELDS)
    if unknown:
        fail(f"`values` has unknown fields {sorted(unknown)}; put other settings under `config_values` by dotted path")
    config_values = card.get("config_values") or {}
    if not isinstance(config_values, dict):
        fail("`config_values` must be a mapping of dotted config paths to official values")
    card["config_values"] = config_values
    deviations = card.get("deviations") or []
    if not isinstance(deviations, list):
        fail("`deviations` must be a list")
    seen: set[str] = set()
    for i, dev in enumerate(deviations):
        if not isinstance(dev, dict):
            fail(f"deviations[{i}] must be a mapping")
        missing = _DEVIATION_KEYS - set(dev)
        if missing:
            fail(f"deviations[{i}] ({dev.get('field', '?')}) lacks {sorted(missing)}")
        for key in ("field", "reason", "effect"):
            if not isinstance(dev[key], str) or not dev[key].strip():
                fail(f"deviations[{i}].{key} must be a non-empty sentence")
        if dev["field"] in seen:
            fail(f"deviations[{i}]: field {dev['field']!r} is declared twice")
        seen.add(dev["field"])
    card["deviations"] = deviations
    return card


# ------------------------------------------------------------------------------------- extraction
def _flatten_transform(transform: Any) -> list[str]:
    if transform is None:
        return []
    inner = getattr(transform, "transforms", None)
    if isinstance(inner, (list, tuple)):
        return [name for t in inner for name in _flatten_transform(t)]
    return [type(transform).__name__]


def _weight_decay_scope(model: nn.Module, optimizer: Any) -> Any:
    """``all`` | ``none`` | the sorted list of parameter kinds (bias, norm, 1d, weight) exempt from decay."""
    kinds = {id(param): kind for _, param, kind in named_param_kinds(model)}
    decayed: dict[str, set[bool]] = {}
    for group in optimizer.param_groups:
        wd = float(group.get("weight_decay", 0.0) or 0.0)
        for param in group["params"]:
            decayed.setdefault(kinds.get(id(param), "other"), set()).add(wd > 0.0)
    if not any(True in flags for flags in decayed.values()):
        return "none"
    exempt = [k + ("(partial)" if len(flags) > 1 else "") for k, flags in sorted(decayed.items()) if False in flags]
    return "all" if not exempt else exempt


def _first_optimizer(configured: Any) -> tuple[Any, Any]:
    """(optimizer, scheduler-or-None) from whatever ``configure_optimizers`` returned."""
    if isinstance(configured, dict):
        sched = configured.get("lr_scheduler")
        return configured["optimizer"], sched.get("scheduler") if isinstance(sched, dict) else sched
    if isinstance(configured, (list, tuple)):
        if len(configured) == 2 and isinstance(configured[0], (list, tuple)):
            opts, scheds = configured
            sched = scheds[0] if scheds else None
            return opts[0], sched.get("scheduler") if isinstance(sched, dict) else sched
        return _first_optimizer(configured[0])
    return configured, None


def _lr_schedule(config: Any, model: Any) -> dict[str, Any]:
    spec = config.get("lr_scheduler")
    if spec is None or spec.get("class_path") is None:
        schedule: dict[str, Any] = {"name": "constant"}
    else:
        schedule = {"name": spec["class_path"].rsplit(".", 1)[-1], "interval": "epoch"}
        args = spec.get("init_args") or {}
        for key, value in dict(args).items():
            if key not in _SCHEDULER_IGNORED:
                schedule[key] = _plain(value)
    warmup = int(getattr(model, "warmup_steps", 0) or 0)
    if warmup:
        schedule["warmup_steps"] = warmup
    return schedule


def _scheduler_class(name: str) -> type | None:
    import importlib

    for module_name in ("torch.optim.lr_scheduler", "lightning_snn.optim"):
        try:
            cls = getattr(importlib.import_module(module_name), name, None)
        except ImportError:
            continue
        if isinstance(cls, type):
            return cls
    return None


def _normalise_schedule(schedule: Any) -> Any:
    """Drop the arguments that hold their class default (and a zero warm-up), so cards may leave them out."""
    if not isinstance(schedule, Mapping) or schedule.get("name") in (None, "constant"):
        return _plain(schedule)
    cls = _scheduler_class(str(schedule["name"]))
    defaults: dict[str, Any] = {}
    if cls is not None:
        defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items() if p.default is not inspect.Parameter.empty}
    out: dict[str, Any] = {}
    for key, value in schedule.items():
        value = _plain(value)
        if key in _SCHEDULER_IGNORED or (key == "warmup_steps" and not value):
            continue
        if key in defaults and _same(_plain(defaults[key]), value):
            continue
        out[key] = value
    return out


def _plain(value: Any) -> Any:
    """Namespaces, tuples and the like as plain YAML-comparable values."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _configured_precision(config: Any, trainer: Any) -> str:
    """The precision the config asks for, in Lightning's unified names (``16`` -> ``16-mixed``). Not the
    trainer's: on a CPU Lightning swaps ``16-mixed`` for ``bf16-mixed``, but the config (what runs on a GPU)
    is what the card describes."""
    from lightning.fabric.connector import _convert_precision_to_unified_args

    configured = config.get("trainer.precision")
    return str(trainer.precision) if configured is None else str(_convert_precision_to_unified_args(configured))


def extract_recipe(cli: Any) -> dict[str, Any]:
    """The card fields of a config as the CLI resolved and instantiated it (``build_cli(..., run=False)``)."""
    config, model, trainer, data = cli.config, cli.model, cli.trainer, cli.datamodule
    optimizer, _ = _first_optimizer(model.configure_optimizers())
    group = optimizer.param_groups[0]
    hp = dict(model.hparams)
    neuron = _plain(hp.get("neuron"))
    surrogate = None
    if isinstance(neuron, dict):
        surrogate = neuron.pop("surrogate", None)
    devices = config.get("trainer.devices")
    n_dev = devices if isinstance(devices, int) else len(devices) if isinstance(devices, (list, tuple)) else 1
    nodes = int(config.get("trainer.num_nodes") or 1)
    backbone = hp.get("backbone")
    return {
        "method": type(model).__name__,
        "optimizer": type(optimizer).__name__,
        "lr": group["lr"] if "initial_lr" not in group else group["initial_lr"],
        "momentum": group.get("momentum"),
        "weight_decay": float(group.get("weight_decay", 0.0) or 0.0),
        "weight_decay_scope": _weight_decay_scope(model, optimizer),
        "lr_schedule": _lr_schedule(config, model),
        "epochs": config.get("trainer.max_epochs"),
        "batch_size": int(getattr(data, "batch_size")) * max(n_dev, 1) * nodes,
        "T": int(model.T),
        "neuron": neuron,
        "surrogate": surrogate,
        "backbone": backbone if isinstance(backbone, str) else type(model.backbone).__name__,
        "backbone_kwargs": _plain(hp.get("backbone_kwargs")) or {},
        "num_params": sum(p.numel() for p in model.parameters()),
        "augmentation": _flatten_transform(getattr(data, "train_transform", None)),
        "loss": hp.get("loss"),
        "seed": _plain(config.get("seed_everything")),
        "precision": _configured_precision(config, trainer),
        "label_smoothing": float(hp.get("label_smoothing", 0.0) or 0.0),
        "encoding": hp.get("encoding", "direct"),
        "step_mode": hp.get("step_mode", "m"),
        "T_train": hp.get("t_train"),
    }


# -------------------------------------------------------------------------------------- comparison
def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (type(a) is type(b) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0) or (a == b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _equal(field: str, card_value: Any, actual: Any) -> bool:
    if field == "lr_schedule":
        return _same(_normalise_schedule(card_value), _normalise_schedule(actual))
    return _same(_plain(card_value), actual)


def compare_card(card: Mapping[str, Any], actual: Mapping[str, Any], config_values: Mapping[str, Any]) -> list[Finding]:
    """Hold a card against extracted values (:func:`extract_recipe`) and resolved dotted config values."""
    deviations = {d["field"]: d for d in card.get("deviations", [])}
    findings: list[Finding] = []
    checked: list[tuple[str, Any, Any]] = []
    values = dict(card["values"])
    for field, default in OPTIONAL_VALUE_FIELDS.items():
        if field not in values and default is not _UNCHECKED:
            values[field] = default
    for field, official in values.items():
        checked.append((field, official, actual.get(field)))
    for path, official in card.get("config_values", {}).items():
        checked.append((path, official, config_values.get(path, "<missing>")))
    for field, official, value in checked:
        dev = deviations.pop(field, None)
        if _equal(field, official, value):
            if dev is None:
                findings.append(Finding(field, official, value, "match"))
            else:
                findings.append(Finding(field, official, value, "stale", "a deviation is declared but the config has the official value"))
        elif dev is None:
            findings.append(Finding(field, official, value, "undeclared", "differs from the official value and no deviation declares it"))
        elif not _equal(field, dev["library"], value):
            findings.append(Finding(field, official, value, "stale", f"the deviation says the library uses {dev['library']!r}"))
        elif not _equal(field, dev["official"], official):
            findings.append(Finding(field, official, value, "stale", f"the deviation's official value {dev['official']!r} differs from `values`"))
        else:
            findings.append(Finding(field, official, value, "declared", dev["reason"]))
    for field, dev in deviations.items():  # deviations no config field shows
        findings.append(Finding(field, dev["official"], dev["library"], "unchecked", dev["reason"]))
    return findings


def resolved_config_values(cli: Any, paths: Iterable[str]) -> dict[str, Any]:
    """The resolved values of dotted config paths (``model.init_args.rate``), ``<missing>`` where absent."""
    out: dict[str, Any] = {}
    for path in paths:
        try:
            out[path] = _plain(cli.config[path])
        except KeyError:
            out[path] = "<missing>"
    return out


def check_config(config: str | Path, card_path: str | Path | None = None, extra_args: Sequence[str] = ()) -> tuple[dict[str, Any], list[Finding]]:
    """Resolve ``config`` with the CLI parser, load its card and compare; returns (card, findings)."""
    import warnings

    from .cli import build_cli

    card = load_card(card_path or card_path_for(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = build_cli(["--config", str(config), "--trainer.logger", "false", *extra_args], run=False)
    actual = extract_recipe(cli)
    return card, compare_card(card, actual, resolved_config_values(cli, card["config_values"]))


def _fmt(value: Any, width: int = 38) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text[:-4].strip() if text.endswith("...") else text
    return text if len(text) <= width else text[: width - 3] + "..."


def _mirrors(official: Mapping[str, Any]) -> str:
    """``repo@commit``, or what a config that mirrors no official command adapts."""
    if official["repository"]:
        return f"{official['repository']}@{str(official['commit'] or '')[:8]}"
    adapts = official.get("adapts") or {}
    if adapts:
        return f"no official command (adapts {adapts.get('repository')}@{str(adapts.get('commit') or '')[:8]})"
    return "no official command"


def _print_comparison(config: str, card: Mapping[str, Any], findings: Sequence[Finding]) -> None:
    official = card["official"]
    print(f"{config}: mirrors {_mirrors(official)}")
    print(f"  {official['command']}")
    print(f"  published: {official['published']}\n")
    print(f"{'field':<24} {'official':<38} {'this config':<38} status")
    for f in findings:
        print(f"{f.field:<24} {_fmt(f.official):<38} {_fmt(f.actual):<38} {f.status}")
        if f.status != "match" and f.note:
            print(f"{'':<24} {f.note}")
    bad = [f for f in findings if not f.ok]
    print(f"\n{len(findings)} fields: {sum(f.status == 'match' for f in findings)} as official, "
          f"{sum(f.status in ('declared', 'unchecked') for f in findings)} declared deviations, {len(bad)} problems")


def _markdown_row(config: Path, card: Mapping[str, Any], findings: Sequence[Finding]) -> str:
    official = card["official"]
    mirrors = _mirrors(official)
    declared = [f.field for f in findings if f.status in ("declared", "unchecked")]
    bad = [f"{f.field} ({f.status})" for f in findings if not f.ok]
    matched = sum(f.status == "match" for f in findings)
    cell = ", ".join(f"`{d}`" for d in declared) or "none"
    if bad:
        cell += "; PROBLEMS: " + ", ".join(bad)
    return f"| `{config.parent.name}/{config.name}` | {mirrors} | {official['published']} | {matched} | {cell} |"


def recipe_main(argv: Sequence[str]) -> int:
    """``lightning-snn recipe --config C``: print the config's recipe card against what the config resolves to.

    ``--all DIR`` checks every config below ``DIR`` that has a card and prints one Markdown table row each
    (what the README's "Published experiments" table is made from). Exit status 1 when any field drifted.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="lightning-snn recipe", description=(recipe_main.__doc__ or "").split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("-c", "--config", help="a config under configs/<family>/")
    group.add_argument("--all", metavar="DIR", help="every config with a card below DIR (e.g. configs), as a Markdown table")
    parser.add_argument("--card", default=None, help="the card (default: recipes/<family>/<name>.yaml)")
    ns = parser.parse_args(list(argv))
    if ns.config:
        try:
            card, findings = check_config(ns.config, ns.card)
        except RecipeCardError as err:
            print(f"lightning-snn recipe: {err}")
            return 2
        _print_comparison(ns.config, card, findings)
        return 0 if all(f.ok for f in findings) else 1
    rows, status = [], 0
    for config in sorted(Path(ns.all).rglob("*.yaml")):
        try:
            card_path = card_path_for(config)
        except RecipeCardError:
            continue
        if not card_path.is_file():
            continue
        card, findings = check_config(config, card_path)
        status |= 0 if all(f.ok for f in findings) else 1
        rows.append(_markdown_row(config, card, findings))
    print("| config | mirrors | published | fields as official | declared deviations |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return status
