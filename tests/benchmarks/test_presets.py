"""The benchmark presets over ``lightning_snn.bench``: every preset's runs parse, and the IDE preset in a tiny
configuration records what the README quotes (saved-for-backward flat in T for IDE, growing for BPTT)."""
from __future__ import annotations

import json

import pytest

from benchmarks import presets
from lightning_snn.bench.run import validate_results


@pytest.mark.parametrize("quick", [False, True])
def test_every_preset_parses(quick):
    for name in presets.PRESETS:
        args, runs = presets.parse_args([name, *(["--quick"] if quick else [])])
        assert args.name == name and runs
    with pytest.raises(SystemExit):
        presets.parse_args(["ide", "--stepz", "3"])  # a typo is caught before anything runs


def test_ide_preset_tiny(tmp_path):
    out = tmp_path / "ide.json"
    data = presets.main(["ide", "--quick", "--T", "2,6", "--backbone-kwargs", '{"channels": [4, 8, 8, 8, 8]}',
                         "--batch-size", "2", "--threads", "1", "--no-progress", "--out", str(out)])
    validate_results(json.loads(out.read_text()))
    assert data["benchmark"] == "ide" and out.with_suffix(".png").exists()
    by = {(r["method"], r["T"]): r for r in data["records"]}
    assert by[("ann", 2)]["status"] == "skipped"  # no ReLU twin of a feedback network: said why
    assert "feedback networks need an IF/LIF neuron" in by[("ann", 2)]["reason"]
    assert by[("ide", 2)]["saved_bytes"] == by[("ide", 6)]["saved_bytes"]  # IDE keeps no graph over T
    assert by[("bptt", 6)]["saved_bytes"] > 2 * by[("bptt", 2)]["saved_bytes"]
    assert by[("ide", 6)]["mem_growth_in_T"] == pytest.approx(1.0, abs=0.05)
