"""Every mirroring config holds against its recipe card (recipes/README.md), and the check itself catches drift."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lightning_snn.cli import build_cli
from lightning_snn.recipe import (
    VALUE_FIELDS,
    RecipeCardError,
    card_path_for,
    check_config,
    compare_card,
    extract_recipe,
    load_card,
    recipe_main,
)

ROOT = Path(__file__).parents[1]
NOT_MIRRORING = {"quickstart.yaml"}  # the library's own CPU demo
NOT_MIRRORING_DIRS = {"cluster"}  # multi-node launch recipes of an experiment that has its own card
CONFIGS = sorted(
    c for c in (ROOT / "configs").rglob("*.yaml") if c.name not in NOT_MIRRORING and c.parent.name not in NOT_MIRRORING_DIRS
)
CARDS = sorted((ROOT / "recipes").rglob("*.yaml"))
EXAMPLE = ROOT / "configs" / "stbp" / "mnist_mnistnet.yaml"


def test_every_card_has_its_config():
    for card in CARDS:
        config = ROOT / "configs" / card.relative_to(ROOT / "recipes")
        assert config.is_file(), f"recipe card {card} describes {config}, which does not exist"
        assert load_card(card)["config"] == str(config.relative_to(ROOT)), f"{card}: `config` does not name {config}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_matches_its_card(config: Path):
    card_path = card_path_for(config)
    assert card_path.is_file(), f"{config} has no recipe card at {card_path} (schema: recipes/README.md)"
    card, findings = check_config(config, card_path)
    problems = [f"{f.field}: official {f.official!r}, config {f.actual!r}: {f.status} ({f.note})" for f in findings if not f.ok]
    assert not problems, f"{config} drifted from {card_path}:\n" + "\n".join(problems)
    assert {f.field for f in findings} >= set(VALUE_FIELDS)
    assert f"recipes/{config.parent.name}/{config.name}" in config.read_text(), f"{config}: the header does not name its card"


# ------------------------------------------------------------------- the checker catches what it must
@pytest.fixture(scope="module")
def example():
    cli = build_cli(["--config", str(EXAMPLE), "--trainer.logger", "false"], run=False)
    actual = extract_recipe(cli)
    values = {k: copy.deepcopy(actual[k]) for k in VALUE_FIELDS}
    card = {"config": "configs/stbp/mnist_mnistnet.yaml", "official": {"repository": "r", "commit": "c", "command": "x", "published": "p"},
            "values": values, "config_values": {}, "deviations": []}
    return card, actual


def test_extract_reads_the_resolved_config(example):
    _, actual = example
    assert actual["optimizer"] == "Adam" and actual["batch_size"] == 64 and actual["backbone"] == "mnistnet"
    assert actual["augmentation"][-1] == "Normalize"
    assert actual["num_params"] > 0 and actual["method"] == "BPTT"


@pytest.mark.parametrize("given, reported", [("16-mixed", "16-mixed"), ("16", "16-mixed"), ("bf16-mixed", "bf16-mixed")])
def test_precision_is_the_configured_one(given, reported):
    # on a CPU Lightning runs 16-mixed as bf16-mixed; the card describes the config (what a GPU runs)
    cli = build_cli(["--config", str(EXAMPLE), "--trainer.logger", "false", "--trainer.accelerator", "cpu",
                     "--trainer.precision", given], run=False)
    assert extract_recipe(cli)["precision"] == reported


def test_identical_card_matches(example):
    card, actual = example
    assert all(f.status == "match" for f in compare_card(card, actual, {}))


def test_drift_without_deviation_fails_and_declared_passes(example):
    card, actual = example
    drifted = dict(actual, lr=0.5, augmentation=list(reversed(actual["augmentation"])))
    status = {f.field: f.status for f in compare_card(card, drifted, {})}
    assert status["lr"] == "undeclared" and status["augmentation"] == "undeclared"
    declared = copy.deepcopy(card)
    declared["deviations"] = [{"field": "lr", "official": card["values"]["lr"], "library": 0.5, "reason": "r", "effect": "e"}]
    status = {f.field: f.status for f in compare_card(declared, drifted, {})}
    assert status["lr"] == "declared"
    # the deviation names a value the config no longer has: stale
    status = {f.field: f.status for f in compare_card(declared, dict(actual, lr=0.25), {})}
    assert status["lr"] == "stale"
    # the config went back to the official value while a deviation is still declared: stale
    status = {f.field: f.status for f in compare_card(declared, actual, {})}
    assert status["lr"] == "stale"


def test_optional_fields_hold_their_default(example):
    card, actual = example
    status = {f.field: f.status for f in compare_card(card, dict(actual, label_smoothing=0.1), {})}
    assert status["label_smoothing"] == "undeclared"
    # T_train: absent means every frame (None), so a config that subsamples frames must say so on its card
    assert actual["T_train"] is None
    status = {f.field: f.status for f in compare_card(card, dict(actual, T_train=12), {})}
    assert status["T_train"] == "undeclared"
    stated = dict(card, values=dict(card["values"], T_train=12))
    assert {f.field: f.status for f in compare_card(stated, dict(actual, T_train=12), {})}["T_train"] == "match"


def test_config_values_and_schedule_defaults(example):
    card, actual = example
    card = copy.deepcopy(card)
    card["config_values"] = {"model.init_args.T": 2}
    assert {f.field: f.status for f in compare_card(card, actual, {"model.init_args.T": 4})}["model.init_args.T"] == "undeclared"
    sched = {"name": "CosineAnnealingLR", "interval": "epoch", "T_max": 200, "eta_min": 0.0}
    card["values"]["lr_schedule"] = {"name": "CosineAnnealingLR", "interval": "epoch", "T_max": 200}  # eta_min at its default
    assert {f.field: f.status for f in compare_card(card, dict(actual, lr_schedule=sched), {})}["lr_schedule"] == "match"
    assert {f.field: f.status for f in compare_card(card, dict(actual, lr_schedule=dict(sched, eta_min=1e-5)), {})}["lr_schedule"] == "undeclared"


def test_bad_cards_name_file_and_field(tmp_path, example):
    card, _ = example
    bad = copy.deepcopy(card)
    del bad["values"]["lr"]
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(RecipeCardError, match=r"card.yaml.*lacks \['lr'\]"):
        load_card(path)
    bad = copy.deepcopy(card)
    bad["deviations"] = [{"field": "lr", "official": 1, "library": 2, "reason": "r", "effect": ""}]
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(RecipeCardError, match=r"deviations\[0\]\.effect"):
        load_card(path)
    bad = copy.deepcopy(card)
    bad["values"]["learning_rate"] = 1.0
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(RecipeCardError, match="unknown fields.*learning_rate"):
        load_card(path)


def test_recipe_command_prints_the_comparison(tmp_path, example, capsys):
    card, _ = example
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(card))
    assert recipe_main(["--config", str(EXAMPLE), "--card", str(path)]) == 0
    out = capsys.readouterr().out
    assert "mirrors r@c" in out and "0 problems" in out
    card = copy.deepcopy(card)
    card["values"]["T"] = 8
    path.write_text(yaml.safe_dump(card))
    assert recipe_main(["--config", str(EXAMPLE), "--card", str(path)]) == 1
    assert "undeclared" in capsys.readouterr().out
