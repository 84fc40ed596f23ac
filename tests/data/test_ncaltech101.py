"""N-Caltech101: the ATIS reader on its 240x180 canvas, the 101 class folders, the seeded 9:1 split and the
errors (fake files in the original 40-bit format; SpikingJelly's independent reader where importable)."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch

from lightning_snn.data import DatasetError, NCaltech101DataModule
from lightning_snn.data.ncaltech101 import NCALTECH101_CLASSES, read_ncaltech101_file
from tests.data.event_helpers import assert_reads_back, same_events, spikingjelly_readers
from tests.fakes import make_events, write_fake_ncaltech101, write_nmnist_bin

pytestmark = pytest.mark.usefixtures("no_downloads")


def test_class_list():
    assert len(NCALTECH101_CLASSES) == 101 == len(set(NCALTECH101_CLASSES))
    assert "Faces" not in NCALTECH101_CLASSES and {"Faces_easy", "BACKGROUND_Google"} <= set(NCALTECH101_CLASSES)
    assert list(NCALTECH101_CLASSES) == sorted(NCALTECH101_CLASSES)  # DatasetFolder's label order (SpikingJelly)


def test_reader_returns_the_written_events(tmp_path):
    events = make_events(777, 240, 180, 300_000, np.random.default_rng(1))
    path = write_nmnist_bin(tmp_path / "image_0001.bin", events)
    got = assert_reads_back(read_ncaltech101_file, path, events)  # not shifted to the origin
    readers = spikingjelly_readers()
    if readers is not None:
        assert same_events(got, readers[0](path))


def test_truncated_file_is_named(tmp_path):
    write_fake_ncaltech101(tmp_path, n_per_class=2, n_events=20)
    bad = tmp_path / "Caltech101" / "BACKGROUND_Google" / "image_0001.bin"
    bad.write_bytes(bad.read_bytes()[:-3])
    with pytest.raises(DatasetError, match=f"N-Caltech101 file {bad} is truncated"):
        read_ncaltech101_file(bad)
    with pytest.raises(DatasetError, match=f"N-Caltech101 file {bad} is truncated"):
        NCaltech101DataModule(root=str(tmp_path), T=2, cache_dir=str(tmp_path / "cache")).setup("fit")  # cache build
    zeroed = tmp_path / "zero.bin"
    zeroed.write_bytes(bytes(100))
    with pytest.raises(DatasetError, match=f"N-Caltech101 file {zeroed} is all zero bytes"):
        read_ncaltech101_file(zeroed)


def test_events_outside_the_canvas_are_named(tmp_path):
    write_fake_ncaltech101(tmp_path, n_per_class=2, n_events=20)
    bad = tmp_path / "Caltech101" / "ant" / "image_0002.bin"
    events = make_events(20, 240, 180, 1000, np.random.default_rng(0))
    events["y"][5] = 200
    write_nmnist_bin(bad, events)
    dm = NCaltech101DataModule(root=str(tmp_path), T=2, cache=False)
    dm.setup("fit")
    (dataset, index), = [(ds, i) for ds in (dm.train_set, dm.test_set) for i, s in enumerate(ds.samples) if s.path == str(bad)]
    with pytest.raises(DatasetError, match=rf"{bad} has 1 of 20 events outside the 240x180 sensor"):
        dataset[index]


def _ids(dm: NCaltech101DataModule, train: bool) -> list[str]:
    return [s.sample_id for s in dm.list_samples(train)]


def test_seeded_stratified_split(tmp_path):
    for name in NCALTECH101_CLASSES:  # only listed, never read
        (tmp_path / "Caltech101" / name).mkdir(parents=True)
        for i in range(1, 11):
            (tmp_path / "Caltech101" / name / f"image_{i:04d}.bin").touch()

    def dm(**kw):
        return NCaltech101DataModule(root=str(tmp_path), cache=False, **kw)

    train, test = _ids(dm(), True), _ids(dm(), False)
    assert len(train) == 909 and len(test) == 101 and not set(train) & set(test)
    assert all(sum(s.startswith(c + "/") for s in test) == 1 for c in NCALTECH101_CLASSES)  # 9:1 in every class
    assert (_ids(dm(), True), _ids(dm(), False)) == (train, test)  # the same split on every run
    assert _ids(dm(split_seed=1), False) != test
    first = _ids(dm(split="first"), False)
    assert "ant/image_0010.bin" in first and "ant/image_0001.bin" not in first
    labels = {s.label for s in dm().list_samples(False)}
    assert labels == set(range(101))
    with pytest.raises(ValueError, match="split must be one of 'random', 'first'"):
        dm(split="tebn")
    with pytest.raises(ValueError, match="train_ratio"):
        dm(train_ratio=1.0)


def test_without_background(tmp_path):
    write_fake_ncaltech101(tmp_path, n_per_class=2, n_events=1)
    dm = NCaltech101DataModule(root=str(tmp_path), background=False, cache=False)
    assert dm.num_classes == 100 and NCaltech101DataModule(root=str(tmp_path)).num_classes == 101
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the left-out background folder is not named as a stray folder
        samples = dm.list_samples(True)
    assert len(samples) == 100 and not any(s.sample_id.startswith("BACKGROUND_Google/") for s in samples)
    assert {s.label for s in samples} == set(range(100))


def test_missing_and_stray_folders(tmp_path):
    write_fake_ncaltech101(tmp_path, n_per_class=2, n_events=1)
    shutil.copytree(tmp_path / "Caltech101" / "ant", tmp_path / "Caltech101" / "Faces")
    with pytest.warns(UserWarning, match=r"N-Caltech101: ignoring folder .*Caltech101/Faces \(2 \.bin files\)"):
        NCaltech101DataModule(root=str(tmp_path), cache=False).list_samples(True)
    shutil.rmtree(tmp_path / "Caltech101" / "yin_yang")
    with pytest.raises(FileNotFoundError, match=r"class folder .*Caltech101/yin_yang is missing"):
        NCaltech101DataModule(root=str(tmp_path), cache=False).setup("fit")
    with pytest.raises(ValueError, match="cannot be downloaded automatically"):
        NCaltech101DataModule(root=str(tmp_path), download=True)


def test_frames_keep_the_canvas_without_resize(tmp_path):
    write_fake_ncaltech101(tmp_path, n_per_class=2, n_events=40)
    dm = NCaltech101DataModule(root=str(tmp_path), T=2, size=None, cache=False)
    assert dm.input_shape == (2, 180, 240)
    dm.setup("test")
    x, _ = dm.test_set[0]
    assert x.shape == (2, 2, 180, 240) and x.dtype == torch.float32 and x.sum() == 40
