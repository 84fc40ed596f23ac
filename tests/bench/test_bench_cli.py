"""``lightning-snn bench`` end to end on a tiny config (CPU, T = 2, one timed step): rows, JSON schema, PNG,
failures recorded and skips explained."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_snn.bench.cli import bench_main, comma_list
from lightning_snn.bench.methods import METHODS, MethodEntry, method_table, method_trainee, resolve_method_names
from lightning_snn.bench.run import validate_results
from lightning_snn.cli import main as cli_main
from lightning_snn.methods import BPTT

REPO = Path(__file__).resolve().parents[2]
TINY = ["--T", "2", "--steps", "1", "--warmup", "1", "--batch-size", "2", "--threads", "1", "--no-progress"]

#: a config small enough for the test: the quickstart's MNISTNet on the 8x8 scikit-learn digits, narrowed
TINY_CONFIG = """
model:
  class_path: lightning_snn.methods.BPTT
  init_args:
    backbone: mnistnet
    backbone_kwargs: {channels: [4, 8], hidden: 16, spiking_output: false}
    T: 2
    neuron: {type: lif, decay: 0.25, v_threshold: 0.2, v_reset: 0.0, surrogate: {name: sigmoid, alpha: 4.0}}
data:
  class_path: lightning_snn.data.DigitsDataModule
  init_args: {batch_size: 8}
"""


@pytest.fixture()
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


def test_every_method_row_schema_png_and_skip_reasons(tiny_config: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "res" / "bench.json"
    with pytest.raises(SystemExit) as exit_info:  # through the installed entry point's dispatch
        cli_main(["bench", "--config", str(tiny_config), "--out", str(out), *TINY])
    assert exit_info.value.code == 0
    payload = json.loads(out.read_text())
    validate_results(payload)
    assert out.with_suffix(".png").stat().st_size > 10_000
    rows = {r["method"]: r for r in payload["records"]}
    assert set(rows) == set(resolve_method_names(None))  # every default method has its row
    assert payload["input_shape"] == [1, 8, 8] and payload["backbone"] == "mnistnet"
    for name in ("ann", "bptt", "bptt_bits", "dsr", "rate_bp_m", "rate_bp_s", "sltt", "ottt"):
        r = rows[name]
        assert r["status"] == "ok", r
        assert r["step_time_s"] > 0 and r["peak_mem_bytes"] > r["saved_bytes"] > 0
        assert r["images_per_s"] == pytest.approx(2 / r["step_time_s"])
        assert "profiler" in r["mem_source"]  # CPU memory accounting
    assert rows["bptt"]["ratio_vs_ann_x_T"] == pytest.approx(
        rows["bptt"]["step_time_s"] / (2 * rows["ann"]["step_time_s"]))
    assert rows["bptt_bits"]["saved_bytes"] < rows["bptt"]["saved_bytes"]  # spikes saved as bits
    # structural skips, decided before building, with the reason
    assert rows["ide"]["status"] == "skipped" and "feedback backbone" in rows["ide"]["reason"]
    assert rows["revsnn"]["status"] == "skipped" and "reversible backbone" in rows["revsnn"]["reason"]
    table = capsys.readouterr().out
    assert "revsnn" in table and "RevSNN needs a reversible backbone" in table
    # no --precision: the config's trainer.precision (Lightning's default 32-true here), and the header says so
    assert "precision 32-true (config trainer.precision)" in table
    assert payload["precision"] == "32-true" and payload["precision_source"] == "config trainer.precision"


def _exploding(at_T: int, exc: type[BaseException]) -> MethodEntry:
    """BPTT that raises ``exc`` in its training step at ``at_T`` (an out-of-memory stand-in)."""
    def build(s):
        tr = method_trainee(BPTT(backbone=s.backbone, num_classes=s.num_classes, input_shape=s.input_shape, T=s.T,
                                 backbone_kwargs=dict(s.backbone_kwargs)), s)
        if s.T == at_T:
            def train(x, y):
                raise exc("simulated: out of memory")
            tr.train = train
        return tr
    return MethodEntry("boom", build, "raises at one T")


def _refusing(s):
    raise ValueError("this method does not support mnistnet")


def test_failure_recorded_not_fatal_and_build_refusal_skipped(tmp_path: Path) -> None:
    table = method_table(_exploding(4, RuntimeError), MethodEntry("refuses", _refusing, "refuses the backbone"))
    out = tmp_path / "b.json"
    payload = bench_main(
        ["--backbone", "mnistnet", "--input-shape", "1,8,8", "--backbone-kwargs", '{"channels": [4, 8], "hidden": 16}',
         "--methods", "bptt,boom,refuses", "--out", str(out), *TINY, "--T", "2,4"], table=table)
    validate_results(payload)
    by = {(r["method"], r["T"]): r for r in payload["records"]}
    assert by[("boom", 2)]["status"] == "ok" and by[("bptt", 4)]["status"] == "ok"
    assert by[("boom", 4)]["status"] == "error"
    assert by[("boom", 4)]["error"] == "RuntimeError: simulated: out of memory"
    assert by[("refuses", 2)]["status"] == "skipped" and "does not support mnistnet" in by[("refuses", 2)]["reason"]
    assert by[("bptt", 4)]["mem_growth_in_T"] > 1.0  # BPTT saves more at T = 4 than at T = 2
    assert "refuses" not in {m.name for m in METHODS}  # a preset's table leaves the registry alone


def test_accuracy_steps_on_the_configs_own_data(tiny_config: Path, tmp_path: Path) -> None:
    payload = bench_main(["--config", str(tiny_config), "--methods", "bptt", "--accuracy-steps", "3",
                          "--eval-batches", "2", "--out", str(tmp_path / "a.json"), "--no-write", *TINY])
    r = next(r for r in payload["records"] if r["method"] == "bptt")
    assert r["accuracy_steps"] == 3 and 0.0 <= r["accuracy"] <= 1.0 and r["train_loss_last"] > 0
    assert "DigitsDataModule" in payload["accuracy_data"]


def test_schema_check_names_the_fault() -> None:
    good = {"device": "cpu: 1 cores", "torch": torch.__version__, "created": "2026-01-01T00:00:00+00:00", "records": [
        {"method": "bptt", "backbone": "m", "T": 2, "batch_size": 2, "status": "ok", "step_time_s": 0.1,
         "images_per_s": 20.0, "peak_mem_bytes": 10, "saved_bytes": 5, "mem_source": "x", "ratio_vs_ann_x_T": 1.2}]}
    validate_results(good)
    bad = json.loads(json.dumps(good))
    del bad["records"][0]["mem_source"]
    with pytest.raises(ValueError, match=r"records\[0\].*mem_source"):
        validate_results(bad)
    bad = json.loads(json.dumps(good))
    bad["records"][0].update(status="error", error="")
    with pytest.raises(ValueError, match="must say why"):
        validate_results(bad)


@pytest.mark.parametrize("configured, flag, expected", [
    ("bf16-mixed", [], ("bf16-mixed", "bf16", "config trainer.precision")),
    ("16", [], ("16-mixed", "fp16", "config trainer.precision")),  # in Lightning's unified name
    ("bf16-mixed", ["--precision", "32"], ("32", None, "--precision")),  # an explicit --precision wins
])
def test_precision_defaults_to_the_configs(tiny_config: Path, configured: str, flag: list[str], expected) -> None:
    from lightning_snn.bench.cli import build_parser, resolve_setting

    tiny_config.write_text(TINY_CONFIG + f"trainer:\n  precision: {configured}\n")
    args = build_parser().parse_args(["--config", str(tiny_config), *flag])
    setting, _, _, fields = resolve_setting(args, torch.device("cpu"))
    assert (fields["precision"], setting.amp, fields["precision_source"]) == expected


def test_precision_help_and_unsupported_config_precision(tiny_config: Path) -> None:
    from lightning_snn.bench.cli import build_parser, resolve_setting

    assert "config's trainer.precision" in " ".join(build_parser().format_help().split())
    assert build_parser(source=False).parse_args([]).precision == "32"  # benchmarks/ scripts without --config
    tiny_config.write_text(TINY_CONFIG + "trainer:\n  precision: 64-true\n")
    args = build_parser().parse_args(["--config", str(tiny_config)])
    with pytest.raises(SystemExit, match=r"trainer.precision '64-true' has no autocast equivalent.*give --precision"):
        resolve_setting(args, torch.device("cpu"))


def test_argument_lists() -> None:
    assert comma_list(int)("2,4, 8") == [2, 4, 8]
    with pytest.raises(Exception, match=">= 1"):
        comma_list(int)("0,2")
    assert resolve_method_names(["bptt", "rate_bp"]) == ["ann", "bptt", "rate_bp_m", "rate_bp_s"]
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        resolve_method_names(["nope"])


def test_fake_data_has_the_shape_and_classes_and_is_learnable() -> None:
    from lightning_snn.bench.cli import fake_loaders
    from lightning_snn.bench.methods import BenchSetting

    s = BenchSetting("mnistnet", 3, (1, 4, 4), 2, 5, torch.device("cpu"))
    train, val = fake_loaders(s, n_train=60, n_eval=30)
    x, y = next(iter(train))
    assert x.shape == (5, 1, 4, 4) and y.dtype == torch.int64 and set(y.tolist()) <= {0, 1, 2}
    xs, ys = zip(*train)
    xs, ys = torch.cat(xs), torch.cat(ys)
    means = torch.stack([xs[ys == k].mean(0) for k in range(3)])  # nearest class mean separates the classes
    vx, vy = zip(*val)
    pred = torch.cdist(torch.cat(vx).flatten(1), means.flatten(1)).argmin(1)
    assert (pred == torch.cat(vy)).float().mean() > 0.8
