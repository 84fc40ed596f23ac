"""The neuron-backend benchmark in a tiny configuration: schema and completeness, never timings."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from benchmarks import neuron_backends


@pytest.mark.skipif(shutil.which("git") is None, reason="the baseline nodes.py is read with git")
def test_writes_old_new_and_plif_records(tmp_path):
    out = tmp_path / "neuron_backends.json"
    try:
        neuron_backends.load_baseline(neuron_backends.BASELINE_REV)
    except SystemExit as err:
        pytest.skip(f"baseline revision not in this checkout: {err}")
    neuron_backends.main(["--batch-size", "1", "--reps", "1", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["device"].startswith("cpu: ") and data["torch"] == torch.__version__ and "created" in data
    kinds = {(r["mode"], r["method"]) for r in data["records"]}
    assert kinds == {(m, f"neuron-{k}") for m in ("train", "eval") for k in ("old", "new", "plif")}
    for r in data["records"]:
        assert r["T"] == 8 and r["batch_size"] == 1 and r["step_time_s"] > 0 and isinstance(r["mem_source"], str)
        assert r["peak_mem_bytes"] > 0 if r["mode"] == "train" else r["peak_mem_bytes"] == 0
