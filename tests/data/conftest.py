"""Fixtures of the event-dataset tests (tests/data/test_event_base.py and one test module per dataset)."""
from __future__ import annotations

from pathlib import Path

import pytest
import tonic.io

from tests.fakes import FAKE_WRITERS


@pytest.fixture
def no_downloads(monkeypatch):
    """Any attempt to download fails the test instead of reaching the network."""
    import tonic.datasets
    import torchvision.datasets.utils as tvu

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(tonic.datasets, "NMNIST", refuse)
    monkeypatch.setattr(tvu, "download_and_extract_archive", refuse)
    monkeypatch.setattr(tvu, "download_url", refuse)


class _FakeRoots(dict):
    """``fakes[<DataModule class name>]``: a root holding that DataModule's default fake dataset,
    written on first use (read-only: copy before mutating)."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base

    def __missing__(self, name: str) -> Path:
        root = self.base / name
        FAKE_WRITERS[name](root)
        self[name] = root
        return root


@pytest.fixture(scope="session")
def fakes(tmp_path_factory) -> dict[str, Path]:
    return _FakeRoots(tmp_path_factory.mktemp("event_fakes"))


@pytest.fixture
def read_counter(monkeypatch) -> dict[str, int]:
    """Counts event-file reads: every reader goes through one of these tonic.io functions."""
    counts = {"reads": 0}
    for name in ("read_mnist_file", "read_aedat_header_from_file"):
        original = getattr(tonic.io, name)

        def counted(*args, _original=original, **kwargs):
            counts["reads"] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(tonic.io, name, counted)
    return counts
