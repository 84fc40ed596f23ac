"""The GPU suite's parts parse with their benchmarks' own parsers, so a typo cannot waste GPU time."""
from __future__ import annotations

import pytest
import torch

from benchmarks import gpu_suite


def test_every_part_parses():
    assert gpu_suite.main(["--dry-run"]) == 0
    labels = [p.label for p in gpu_suite.parts("h200")]
    assert labels[0] == "CUDA tests" and len(labels) == len(set(labels)) == 5
    outs = [a for p in gpu_suite.parts("h200") for a in p.args if a.endswith(".json")]
    assert outs == ["benchmarks/results/compare-h200.json", "benchmarks/results/compare_bf16-h200.json"]


def test_a_bad_argument_is_caught_by_the_dry_run(monkeypatch):
    bad = gpu_suite.Part("typo", 10, "benchmarks.compare", ("--device", "cuda", "--stepz", "3"))
    monkeypatch.setattr(gpu_suite, "parts", lambda tag: [bad])
    with pytest.raises(SystemExit):
        gpu_suite.main(["--dry-run"])
    missing = gpu_suite.Part("missing test", 10, "pytest", ("tests/neurons/test_nope.py",))
    monkeypatch.setattr(gpu_suite, "parts", lambda tag: [missing])
    with pytest.raises(SystemExit, match="does not exist"):
        gpu_suite.main(["--dry-run"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_nothing_runs():
    assert gpu_suite.main([]) == 2
