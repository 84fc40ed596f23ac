"""Synthetic N-MNIST recordings: byte-identical .bin format, read back exactly, loadable by the DataModule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_snn.data import NMNISTDataModule
from lightning_snn.data.nmnist import read_nmnist_file
from lightning_snn.data.synthetic_events import simulate_saccade_events, write_nmnist_bin, write_synthetic_nmnist
from tests.fakes import make_events
from tests.fakes import write_nmnist_bin as reference_writer


def test_bin_format_is_byte_identical_to_the_reference_writer(tmp_path):
    events = make_events(500, 34, 34, 300_000, np.random.default_rng(0))
    ours = write_nmnist_bin(tmp_path / "ours.bin", events).read_bytes()
    ref = reference_writer(tmp_path / "ref.bin", events).read_bytes()
    assert ours == ref and len(ours) == 5 * 500
    back = read_nmnist_file(tmp_path / "ours.bin")
    for field in ("x", "y", "t", "p"):
        assert np.array_equal(back[field].astype(np.int64), events[field].astype(np.int64)), field


def test_bin_writer_rejects_values_outside_the_format(tmp_path):
    ev = make_events(3, 34, 34, 1000, np.random.default_rng(0))
    bad = ev.copy()
    bad["t"][-1] = 1 << 23
    with pytest.raises(ValueError, match=r"bad\.bin.*2\^23"):
        write_nmnist_bin(tmp_path / "bad.bin", bad)
    bad = ev.copy()
    bad["y"][0] = 240
    with pytest.raises(ValueError, match="240"):
        write_nmnist_bin(tmp_path / "bad.bin", bad)
    with pytest.raises(ValueError, match="sorted"):
        write_nmnist_bin(tmp_path / "bad.bin", ev[::-1])


def test_saccade_events_follow_the_image_edges():
    img = np.zeros((24, 24))
    img[6:18, 6:18] = 16.0  # a bright square
    ev = simulate_saccade_events(img, np.random.default_rng(0))
    assert len(ev) > 100 and (np.diff(ev["t"]) >= 0).all() and ev["t"].max() < 300_000
    assert 0.2 < ev["p"].mean() < 0.8  # both polarities
    # events sit near the square's border (moved by at most 3 px), never in the dark far corners
    x, y = ev["x"].astype(int), ev["y"].astype(int)
    assert x.min() >= 11 - 4 and x.max() <= 22 + 4 and y.min() >= 11 - 4 and y.max() <= 22 + 4
    with pytest.raises(ValueError, match="at most 34x34"):
        simulate_saccade_events(np.zeros((40, 40)), np.random.default_rng(0))


def test_synthetic_tree_loads_with_the_datamodule(tmp_path):
    folder = write_synthetic_nmnist(tmp_path, n_train=1, n_test=1)
    assert len(list(folder.rglob("*.bin"))) == 20
    dm = NMNISTDataModule(root=str(tmp_path), T=5, batch_size=10, cache=False)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (10, 5, 2, 34, 34) and x.dtype == torch.float32
    assert sorted(y.tolist()) == list(range(10))
    assert (x.sum(dim=(2, 3, 4)) > 0).all()  # every frame of every sample holds events
