"""lightning_snn.bench.accuracy: seed statistics, where results and data go, and the plain training loop
(its accuracy is recounted by hand; a config's run through the CLI is tested in tests/benchmarks/test_real_data.py)."""
from __future__ import annotations

import argparse
import statistics

import pytest
import torch

from lightning_snn.bench import accuracy
from lightning_snn.data import DigitsDataModule
from lightning_snn.methods import BPTT


def test_mean_std_is_the_sample_standard_deviation():
    m, s = accuracy.mean_std([50.0, 60.0, 70.0])
    assert m == 60.0 and s == pytest.approx(10.0)  # n - 1, as the reference table
    assert accuracy.mean_std([42.0]) == (42.0, None)
    assert accuracy.rounded(accuracy.mean_std([])[0]) is None


def test_per_epoch_summary_stops_at_the_shortest_run():
    runs = [{"test_acc": [10.0, 20.0], "train_acc": [5.0, 15.0]}, {"test_acc": [30.0, 40.0, 99.0], "train_acc": [7.0]}]
    rows = accuracy.per_epoch_summary(runs)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0] == {"epoch": 1, "test_acc_mean": 20.0, "test_acc_std": round(statistics.stdev([10.0, 30.0]), 2),
                       "train_acc_mean": 6.0, "train_acc_std": round(statistics.stdev([5.0, 7.0]), 2)}
    assert "train_acc_mean" not in rows[1]  # the second run has no training accuracy for epoch 2


def test_parser_defaults_and_quick_runs_write_beside_the_full_result(tmp_path):
    p = accuracy.add_accuracy_args(argparse.ArgumentParser(), "demo", seeds=[1, 2], quick_help="q")
    full, quick = p.parse_args([]), p.parse_args(["--quick"])
    assert full.seeds == [1, 2] and full.threads == 1 and full.data is None
    assert accuracy.result_path(full, "demo").name == "demo.json"
    assert accuracy.result_path(quick, "demo").name == "demo_quick.json"
    assert accuracy.result_path(p.parse_args(["--quick", "--out", str(tmp_path / "x.json")]), "demo") == tmp_path / "x.json"
    no_data = accuracy.add_accuracy_args(argparse.ArgumentParser(), "demo", seeds=None, quick_help="q", data=False)
    with pytest.raises(SystemExit):
        no_data.parse_args(["--data", "somewhere"])


def test_missing_shared_data_names_the_folder_and_the_variable(tmp_path):
    (tmp_path / "MNIST").mkdir()
    assert accuracy.require_shared_data("demo", tmp_path, "MNIST") == tmp_path
    with pytest.raises(SystemExit, match=r"demo: no NMNIST under .*LIGHTNING_SNN_SHARED_DATA"):
        accuracy.require_shared_data("demo", tmp_path, "MNIST", "NMNIST")


def test_train_and_test_runs_the_steps_and_counts_the_accuracy():
    torch.manual_seed(0)
    model = BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=2,
                 backbone_kwargs={"channels": [4, 8], "hidden": 16})
    dm = DigitsDataModule(batch_size=64, val_split=0.0)
    calls = []
    result = accuracy.train_and_test(model, dm, torch.optim.Adam(model.parameters(), lr=1e-2), epochs=2,
                                     max_batches=3, max_steps=4, after_step=lambda: calls.append(1))
    assert result.steps == 4 and len(calls) == 4  # 3 batches in epoch 1, then stopped by max_steps
    model.eval()
    with torch.no_grad():
        x, y = dm.test_set.tensors  # the whole test split (val_split 0 validates on it)
        expected = float((model.readout(model(x)).argmax(-1) == y).float().mean())
    assert result.test_samples == len(dm.test_set) == len(y)
    assert result.accuracy == pytest.approx(expected) and result.final_loss > 0 and result.train_s > 0
    with pytest.raises(ValueError, match="epochs"):
        accuracy.train_and_test(model, dm, torch.optim.Adam(model.parameters()), epochs=0)
