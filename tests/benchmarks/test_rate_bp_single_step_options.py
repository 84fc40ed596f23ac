"""benchmarks/rate_bp_single_step_options.py: its per-comparison row and the schema records built from it."""
from __future__ import annotations

import pytest
import torch

from benchmarks import rate_bp_single_step_options as rbp
from lightning_snn.bench.fidelity import StepGradients


def _step(scale: float, loss: float = 1.0) -> StepGradients:
    grads = {"backbone.conv.weight": torch.full((2, 1, 3, 3), scale), "backbone.fc.weight": torch.ones(2, 4)}
    return StepGradients(grads=grads, loss=torch.tensor(loss), logits=torch.zeros(3, 2))


def test_row_names_the_first_conv_and_compares_loss_and_logits():
    row = rbp.compare(_step(2.0), _step(1.0))
    assert row["first_conv"] == "backbone.conv.weight" and row["first_conv_rel_l2"] == pytest.approx(1.0)
    assert (row["max_tensor"], row["max_rel_l2"]) == ("backbone.conv.weight", pytest.approx(1.0))
    assert row["whole_rel_l2"] == pytest.approx(18 ** 0.5 / (18 + 8) ** 0.5)  # |1 * 18 entries| / |18 ones + 8 ones|
    assert row["same_loss"] and row["same_logits"]
    assert not rbp.compare(_step(1.0, loss=2.0), _step(1.0))["same_loss"]


def test_records_follow_the_result_schema():
    nets = {"cifar10_resnet18": {"settings": {"backbone": "resnet18", "T": 4, "batch": 8},
                                 "comparisons": {"official": {"per_seed": [{"seed": 0, "max_rel_l2": 0.2}, {"seed": 1, "max_rel_l2": 0.1}]}}}}
    records = rbp.records_from(nets)
    assert [r["seed"] for r in records] == [0, 1]
    for key in ("method", "backbone", "T", "batch_size", "step_time_s", "peak_mem_bytes", "mem_source"):
        assert key in records[0], key
    assert (records[0]["net"], records[0]["comparison"], records[0]["batch_size"]) == ("cifar10_resnet18", "official", 8)
