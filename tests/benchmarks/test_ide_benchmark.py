"""The IDE memory benchmark in a tiny configuration: schema and the flat-in-T saved tensors, never timings."""
from __future__ import annotations

import json

from benchmarks import ide


def test_ide_benchmark_records_both_methods_at_every_T(tmp_path):
    out = tmp_path / "ide.json"
    result = ide.run(ide.parse_args([
        "--device", "cpu", "--T", "2", "6", "--width", "0.0625", "--batch-size", "2", "--steps", "1", "--warmup", "1",
        "--threads", "1", "--out", str(out),
    ]))
    data = json.loads(out.read_text())
    assert data["benchmark"] == "ide" and data["device"].startswith("cpu") and "created" in data and "torch" in data
    got = {(r["method"], r["T"]) for r in data["records"]}
    assert got == {(m, T) for m in ("ide", "bptt") for T in (2, 6)}
    for r in data["records"]:
        assert r["step_time_s"] > 0 and r["peak_mem_bytes"] > 0 and r["mem_source"]
    by = {(r["method"], r["T"]): r for r in data["records"]}
    # what autograd keeps is independent of T for IDE and grows with T for the unrolled twin
    assert by[("ide", 2)]["saved_tensor_bytes"] == by[("ide", 6)]["saved_tensor_bytes"]
    assert by[("bptt", 6)]["saved_tensor_bytes"] > 2 * by[("bptt", 2)]["saved_tensor_bytes"]
    assert by[("ide", 6)]["solver_steps_mean"] >= 1
    assert result["summary"]["ide"]["saved_ratio"] == 1.0
