"""The method-comparison preset (on the ``lightning_snn.bench`` harness) in a tiny configuration: schema and
completeness, never timings."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks import compare
from benchmarks.compare import config_from_args, parse_args, select_methods
from lightning_snn.bench.methods import MethodEntry
from lightning_snn.bench.run import validate_results

REQUIRED = {
    "method": str, "backbone": str, "T": int, "depth": int, "batch_size": int, "step_time_s": float,
    "peak_mem_bytes": int, "step_peak_mem_bytes": int, "saved_tensor_bytes": int, "mem_source": str,
    "images_per_s": float, "params": int, "step_times_s": list,
}
CPU_METHODS = {"ann", "bptt", "bptt_inductor", "bptt_bits", "dsr", "dsr_bits", "rate_bp_m", "rate_bp_s", "revsnn", "revsnn_twin", "spikingjelly", "sltt", "ottt"}


def test_compare_runs_every_method_and_writes_json_and_plot(tmp_path):
    out = tmp_path / "compare.json"
    result = compare.main([
        "--device", "cpu", "--T", "1", "2", "--depths", "1", "2", "--width", "0.0625", "--batch-size", "2",
        "--steps", "1", "--warmup", "1", "--threads", "1", "--out", str(out),
    ])
    assert result["errors"] == []
    data = json.loads(out.read_text())
    assert data["device"].startswith("cpu: ") and data["torch"] == torch.__version__ and "created" in data
    assert data["benchmark"] == "compare" and data["errors"] == []
    validate_results(data)
    records = data["records"]
    for rec in records:
        for key, typ in REQUIRED.items():
            assert isinstance(rec[key], typ), (rec["method"], key, rec.get(key))
        assert rec["step_time_s"] > 0 and rec["peak_mem_bytes"] > 0
        if rec["method"] != "ann":
            assert isinstance(rec["ratio_vs_ann_x_T"], float)
        assert isinstance(rec["ratio_vs_bptt"], float) and isinstance(rec["mem_ratio_vs_bptt"], float)
    # every method at every point of both sweeps: (T=1, d=1), (T=2, d=1), (T=1, d=2)
    got = {(r["method"], r["T"], r["depth"]) for r in records}
    assert got == {(m, T, d) for m in CPU_METHODS for (T, d) in [(1, 1), (2, 1), (1, 2)]}
    summary = data["summary"]
    for key in ("ratio_vs_ann_x_T", "inductor_speedup_vs_torch", "bptt_throughput_vs_spikingjelly",
                "bptt_mem_vs_spikingjelly", "revsnn_mem_ratio_vs_twin", "mem_growth_T2_over_T1",
                "mem_growth_depth2_over_depth1", "revsnn_time_ratio_vs_twin", "targets", "checks"):
        assert key in summary, key
    assert set(summary["targets"]) <= set(summary["checks"])  # every target has its measured figure
    assert set(summary["mem_growth_T2_over_T1"]) == CPU_METHODS
    # lossless spike storage: the saved tensors shrink (the spike trains the convs save are 1/32 the size)
    for m in ("bptt", "dsr"):
        for T in ("1", "2"):
            assert summary["spike_bits_vs_float"][m][T]["saved_tensor_bytes"] < 0.9
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spikingjelly_twin_is_the_same_network():
    arch = compare.arch_for(0.0625, 2)
    ours = compare.compare_resnet(**arch, neuron=compare.NEURON)
    theirs = compare.build_spikingjelly_twin(arch)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    from spikingjelly.activation_based import neuron as sj_neuron

    sj_lifs = [m for m in theirs.modules() if isinstance(m, sj_neuron.LIFNode)]
    assert sj_lifs and all(m.tau == pytest.approx(1.0 / (1.0 - compare.DECAY)) and not m.decay_input for m in sj_lifs)


def test_method_table_selection_and_errors(monkeypatch):
    monkeypatch.setattr(compare, "TABLE", dict(compare.TABLE))
    cpu = torch.device("cpu")
    assert set(select_methods(None, cpu)) == CPU_METHODS  # opt-in (ide) and CUDA-only rows are out
    compare.TABLE["extra"] = MethodEntry("extra", compare.TABLE["ann"].build, "an added row")
    assert "extra" in select_methods(None, cpu)
    assert select_methods(["bptt"], cpu) == ["ann", "bptt"]  # the ANN reference is always in
    assert select_methods(["bptt rate_bp".split()[1]], cpu) == ["ann", "rate_bp_m", "rate_bp_s"]
    with pytest.raises(SystemExit, match="unknown"):
        select_methods(["nope"], cpu)


def test_cli_defaults_and_preset():
    cfg = config_from_args(parse_args(["--quick", "--device", "cpu"]))
    assert cfg.device.type == "cpu" and cfg.Ts == [2, 4, 8] and cfg.depths == [1, 2] and cfg.width == 0.25
    cfg = config_from_args(parse_args(["--preset", "resnet19-cifar10", "--device", "cpu", "--amp", "bf16"]))
    assert cfg.Ts == [4] and cfg.batch == 128 and cfg.amp == "bf16" and cfg.arch["hidden"] == 256
    assert [d for d, _ in compare.settings_of(cfg)] == [1]
    assert config_from_args(parse_args(["--T", "2,4", "8", "--device", "cpu"])).Ts == [2, 4, 8]
    if not torch.cuda.is_available():
        assert config_from_args(parse_args([])).device.type == "cpu"  # --device auto


@pytest.mark.skipif(not hasattr(compare.methods, "IDE"), reason="lightning_snn.methods.IDE is not available")
def test_ide_row_runs_when_available():
    cfg = compare.CompareConfig(device=torch.device("cpu"), Ts=[2], depths=[1], width=0.0625, batch=2, steps=1,
                                warmup=1, methods=["ide"], verbose=False)
    result = compare.run_compare(cfg)
    assert result["errors"] == []
    assert {r["method"] for r in result["records"]} == {"ann", "ide"}

