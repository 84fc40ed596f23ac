"""The real-data parity benchmark: record building, the comparison with the official runs, the JSON it writes,
and the CLI overrides it trains with. Accuracies themselves are never asserted (they are what it measures)."""
from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest

from benchmarks import real_data
from lightning_snn.bench.harness import write_results

SHARED = real_data.shared_data_dir()
REFERENCE = SHARED.parent / "reference" / "official_runs.md"


def _run(seed: int, test_acc: list[float], train_acc: list[float] | None = None, memory: bool = False) -> dict:
    run = {
        "seed": seed, "test_acc": test_acc, "test_loss": [1.0] * len(test_acc), "train_acc": train_acc or [50.0] * len(test_acc),
        "step_time_s": 0.1 * seed, "steps": 10, "wall_s": 1.0, "lr_final": 1e-3, "schedule_notes": ["constant"], "cli_args": [],
        "meta": {"method": "BPTT", "backbone": "mnistnet", "T": 2, "batch_size": 64, "parameters": 606685,
                 "optimizer": "Adam", "lr_schedulers": [], "train_samples": 6401, "test_samples": 1599},
    }
    if memory:
        run["memory"] = {"peak_mem_bytes": 1234, "mem_source": "profiler", "saved_tensor_bytes": 99}
    return run


def test_record_has_the_schema_and_compares_distributions_with_the_official_runs(tmp_path):
    recipe = real_data.RECIPES["stbp_mnist_mnistnet"]
    ours = {1: [20.0, 21.0, 22.0], 2: [60.0, 70.0, 80.0], 3: [50.0, 55.0, 58.0], 4: [40.0, 65.0, 75.0], 5: [70.0, 72.0, 74.0]}
    runs = [_run(s, acc, memory=s == 1) for s, acc in ours.items()]
    rec = real_data.build_record(recipe, runs)
    for key in ("method", "backbone", "T", "batch_size", "step_time_s", "peak_mem_bytes", "mem_source", "accuracy"):
        assert rec[key] is not None, key
    assert (rec["method"], rec["T"], rec["batch_size"], rec["peak_mem_bytes"]) == ("BPTT", 2, 64, 1234)
    assert rec["step_time_s"] == pytest.approx(0.3)  # median over the seeds
    final = np.array([a[-1] for a in ours.values()])
    assert rec["accuracy"] == pytest.approx(final.mean(), abs=0.005)
    assert rec["accuracy_std"] == pytest.approx(final.std(ddof=1), abs=0.005)
    assert [e["epoch"] for e in rec["per_epoch"]] == [1, 2, 3]
    assert rec["per_epoch"][0]["test_acc_mean"] == pytest.approx(np.mean([a[0] for a in ours.values()]), abs=0.005)

    off = rec["official"]
    ref = np.array([real_data.STBP_OFFICIAL.test_acc[s][2] for s in range(1, 6)])
    assert off["comparable"] and off["epoch"] == 3 and off["seeds"] == [1, 2, 3, 4, 5]
    assert off["test_acc_mean"] == pytest.approx(66.05, abs=0.01) and off["test_acc_std"] == pytest.approx(13.0, abs=0.05)
    assert off["delta_mean"] == pytest.approx(final.mean() - ref.mean(), abs=0.01)
    spread = max(final.std(ddof=1), ref.std(ddof=1))
    assert off["delta_in_std"] == pytest.approx((final.mean() - ref.mean()) / spread, abs=0.01)

    out = write_results([rec], real_data.resolve_device("cpu"), tmp_path / "real_data.json", benchmark="real_data")
    data = json.loads(out.read_text())
    assert {"device", "torch", "created", "records"} <= set(data) and data["records"][0]["recipe"] == recipe.name


def test_single_seed_record_and_training_accuracy_comparison():
    rec = real_data.build_record(real_data.RECIPES["ide_mnist_conv_if"], [_run(1, [70.0], train_acc=[80.0], memory=True)])
    assert rec["accuracy"] == 70.0 and rec["accuracy_std"] is None
    off = rec["official"]
    assert off["delta_mean"] == pytest.approx(70.0 - 65.48) and "delta_in_std" not in off  # no spread to divide by
    assert off["train_delta_mean"] == pytest.approx(80.0 - 83.88)
    # seeds the official runs do not have are not compared
    assert real_data.build_record(real_data.RECIPES["ide_mnist_conv_if"], [_run(7, [70.0])])["official"]["comparable"] is False


def test_combine_merges_parts_of_one_commit_and_refuses_mixed_ones(tmp_path):
    device = real_data.resolve_device("cpu")
    recs = {name: real_data.build_record(real_data.RECIPES[name], [_run(1, [50.0])])
            for name in ("ide_mnist_conv_if", "stbp_mnist_mnistnet")}
    git = {"commit": "abc", "dirty": False}
    a = write_results([recs["ide_mnist_conv_if"]], device, tmp_path / "a.json", git=git, quick=False)
    b = write_results([recs["stbp_mnist_mnistnet"]], device, tmp_path / "b.json", git=git, quick=False)
    out = real_data.combine([a, b], tmp_path / "all.json")
    data = json.loads(out.read_text())
    assert [r["recipe"] for r in data["records"]] == ["stbp_mnist_mnistnet", "ide_mnist_conv_if"]  # benchmark order
    assert data["git"] == git and len(data["parts"]) == 2
    c = write_results([recs["stbp_mnist_mnistnet"]], device, tmp_path / "c.json", git={"commit": "def", "dirty": False}, quick=False)
    with pytest.raises(SystemExit, match="different git states"):
        real_data.combine([a, c], tmp_path / "bad.json")
    with pytest.raises(SystemExit, match="more than one file"):
        real_data.combine([b, b], tmp_path / "bad.json")
    # one recipe's seeds split over two files: merged into one record, statistics over all seeds
    stbp = real_data.RECIPES["stbp_mnist_mnistnet"]
    s12 = write_results([real_data.build_record(stbp, [_run(1, [20.0], memory=True), _run(2, [60.0])])], device,
                        tmp_path / "s12.json", git=git, quick=False)
    s3 = write_results([real_data.build_record(stbp, [_run(3, [40.0])])], device, tmp_path / "s3.json", git=git, quick=False)
    (rec,) = json.loads(real_data.combine([s3, s12], tmp_path / "merged.json").read_text())["records"]
    assert rec["seeds"] == [1, 2, 3] and rec["accuracy"] == pytest.approx(40.0) and rec["accuracy_std"] == pytest.approx(20.0)
    assert rec["peak_mem_bytes"] == 1234 and rec["official"]["seeds"] == [1, 2, 3]


def test_overrides_resolve_through_the_cli_with_a_constant_lr_and_no_checkpointing(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lightning_snn.cli import build_cli

    recipe = real_data.RECIPES["stbp_mnist_mnistnet"]
    args, notes = real_data.cli_overrides(recipe, 3, tmp_path / "data", tmp_path, quick=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = build_cli(args, run=False)
    assert cli.config.seed_everything == 3 and cli.datamodule.seed == 3 and cli.trainer.max_epochs == recipe.epochs
    assert cli.config.lr_scheduler is None and notes  # constant lr, and the JSON says why
    assert not any(isinstance(cb, ModelCheckpoint) for cb in cli.trainer.callbacks) and cli.trainer.logger is None
    assert cli.trainer.limit_train_batches == real_data.QUICK_BATCHES["limit_train_batches"]


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"no reference file {REFERENCE} (the shared folder is absent)")
def test_official_constants_match_the_reference_file():
    text = REFERENCE.read_text()
    rows = {int(m[1]): tuple(float(v) for v in m.groups()[1:])
            for m in re.finditer(r"^\| (\d) \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \|$", text, re.M)}
    assert rows == real_data.STBP_OFFICIAL.test_acc
    ide = re.search(r"train accuracy ([\d.]+)%, test accuracy ([\d.]+)%", text)
    assert ide is not None
    assert (float(ide[1]), float(ide[2])) == (real_data.IDE_MNIST_OFFICIAL.train_acc[1][0], real_data.IDE_MNIST_OFFICIAL.test_acc[1][0])


def test_missing_shared_data_exits_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_SNN_SHARED_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit, match="LIGHTNING_SNN_SHARED_DATA"):
        real_data.main(["--quick", "--no-write"])


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "MNIST").is_dir(), reason=f"no real MNIST under {SHARED} (set LIGHTNING_SNN_SHARED_DATA)")
def test_quick_run_on_the_real_digits(tmp_path):
    out = tmp_path / "real_data.json"
    real_data.main(["--quick", "--threads", "1", "--only", "stbp_mnist_mnistnet", "--seeds", "1", "2", "--out", str(out)])
    data = json.loads(out.read_text())
    (rec,) = data["records"]
    assert data["quick"] is True and data["git"]["commit"]
    assert rec["seeds"] == [1, 2] and rec["test_samples"] == 1599 and rec["train_samples"] == 6401
    assert all(len(r["test_acc"]) == 1 and 0.0 <= r["test_acc"][0] <= 100.0 for r in rec["runs"])
    assert rec["peak_mem_bytes"] > 0 and rec["step_time_s"] > 0 and rec["accuracy_std"] is not None
    assert rec["official"]["comparable"] and rec["official"]["epoch"] == 1
