"""lightning_snn.bench.fidelity: one-step gradients and their comparison, against figures computed by hand."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_snn.bench.fidelity import gradient_difference, step_gradients


def test_gradient_difference_matches_the_formulas():
    b = {"w": torch.tensor([3.0, 4.0], dtype=torch.float64), "bias": torch.tensor([0.0], dtype=torch.float64)}
    a = {"w": torch.tensor([3.0, 5.0], dtype=torch.float64), "bias": torch.tensor([2.0], dtype=torch.float64)}
    d = gradient_difference(a, b)
    # whole: |(0, 1, 2)| / |(3, 4, 0)| = sqrt(5) / 5; the zero reference tensor has no relative figure
    assert d["rel_l2"] == pytest.approx(math.sqrt(5) / 5)
    assert d["per_tensor"] == {"w": pytest.approx(1 / 5)} and (d["max_tensor"], d["max_tensor_rel"]) == ("w", pytest.approx(0.2))
    assert d["norm_ratio"] == pytest.approx(math.sqrt(9 + 25 + 4) / 5)
    assert d["cosine"] == pytest.approx((9 + 20) / (math.sqrt(38) * 5))
    same = gradient_difference(b, {"w": b["w"]})
    assert same["rel_l2"] == 0.0 and same["norm_ratio"] == 1.0 and same["cosine"] == pytest.approx(1.0)


def test_round_off_tensors_are_left_out_of_the_per_tensor_figures():
    b = {"big": torch.tensor([1.0, 0.0]), "tiny": torch.tensor([1e-9])}
    a = {"big": torch.tensor([1.0, 0.1]), "tiny": torch.tensor([1e-8])}
    assert gradient_difference(a, b)["max_tensor"] == "tiny"  # 9x off, but only round-off
    d = gradient_difference(a, b, min_rel_norm=1e-6)
    assert set(d["per_tensor"]) == {"big"} and d["max_tensor_rel"] == pytest.approx(0.1)


def test_gradient_difference_names_missing_tensors():
    with pytest.raises(KeyError, match="lack"):
        gradient_difference({"a": torch.ones(1)}, {"a": torch.ones(1), "b": torch.ones(1)})


def test_step_gradients_are_the_autograd_gradients_of_the_cross_entropy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).double()
    model[1].bias.requires_grad_(False)
    x = torch.randn(2, 5, 3, dtype=torch.float64)  # [T, B, features]
    y = torch.tensor([0, 1, 1, 0, 1])
    step = step_gradients(model, x, y, include=lambda name: not name.startswith("0.bias"))
    assert list(step.grads) == ["0.weight", "1.weight"]  # excluded by name, and one without a gradient
    params = dict(model.named_parameters())
    loss = F.cross_entropy(model(x).mean(0), y)
    ref = torch.autograd.grad(loss, [params["0.weight"], params["1.weight"]])
    torch.testing.assert_close(step.grads["0.weight"], ref[0])
    torch.testing.assert_close(step.grads["1.weight"], ref[1])
    assert step.loss == loss.detach() and step.logits.shape == (5, 2)
    last = step_gradients(model, x, y, readout=lambda out: out[-1])  # readout: the last time step
    assert last.loss == F.cross_entropy(model(x)[-1], y).detach()
