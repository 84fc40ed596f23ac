"""CIFAR10-DVS: the AEDAT 2.0 reader, the three splits, the folder layout and its errors (fake files in the
original format; real recordings under ``$LIGHTNING_SNN_SHARED_DATA`` when present)."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

import tonic.io
from lightning_snn.data import CIFAR10DVSDataModule, DatasetError
from lightning_snn.data.cifar10dvs import read_cifar10dvs_file
from tests.data.event_helpers import (
    assert_reads_back,
    NO_SHARED_DATA,
    SHARED_DATA,
    check_real,
    real_files,
    same_events,
    spikingjelly_readers,
)
from tests.fakes import make_events, write_aedat2_dvs128, write_aedat31_polarity, write_fake_cifar10dvs

pytestmark = pytest.mark.usefixtures("no_downloads")


def test_reader_returns_the_written_events(tmp_path):
    events = make_events(777, 128, 128, 300_000, np.random.default_rng(1))
    assert_reads_back(read_cifar10dvs_file, write_aedat2_dvs128(tmp_path / "a.aedat", events), events)


def test_fake_reads_identically_by_spikingjelly(fakes):
    readers = spikingjelly_readers()
    if readers is None:
        pytest.skip("SpikingJelly's dataset readers cannot be imported here")
    c10 = next((fakes["CIFAR10DVSDataModule"] / "CIFAR10DVS" / "ship").glob("*.aedat"))
    assert same_events(read_cifar10dvs_file(c10), readers[1](c10))


def test_cifar10dvs_splits(tmp_path):
    write_fake_cifar10dvs(tmp_path, n_per_class=10, n_events=50)

    def split(**kw):
        dm = CIFAR10DVSDataModule(root=str(tmp_path), cache=False, **kw)
        train, test = dm.list_samples(True), dm.list_samples(False)
        return [s.sample_id for s in train], [s.sample_id for s in test]

    train, test = split()
    assert len(train) == 90 and len(test) == 10 and not set(train) & set(test)
    for c in CIFAR10DVSDataModule.classes:  # 9:1 within every class
        assert sum(s.startswith(c + "/") for s in test) == 1
    assert split() == (train, test)  # fixed seed: the same split every time
    assert split(split_seed=1) != (train, test)
    first_train, first_test = split(split="first")  # SpikingJelly order: _0, _1, _2, ..., by file name
    assert "airplane/cifar10_airplane_9.aedat" in first_test and "airplane/cifar10_airplane_0.aedat" in first_train
    folder = tmp_path / "CIFAR10DVS" / "airplane"
    for i in range(5):  # TEBN: indices 0-99 test, 100-999 train
        (folder / f"cifar10_airplane_{i}.aedat").rename(folder / f"cifar10_airplane_{100 + i}.aedat")
    dm = CIFAR10DVSDataModule(root=str(tmp_path), cache=False, split="tebn")
    tebn_train = [s.sample_id for s in dm.list_samples(True) if s.label == 0]
    assert tebn_train == sorted(f"airplane/cifar10_airplane_{100 + i}.aedat" for i in range(5))
    assert len(dm.list_samples(True)) == 5 and len(dm.list_samples(False)) == 95  # other classes: 0-9 only


def test_missing_class_folder(tmp_path):
    write_fake_cifar10dvs(tmp_path, n_per_class=2, n_events=20)
    shutil.rmtree(tmp_path / "CIFAR10DVS" / "frog")
    with pytest.raises(FileNotFoundError, match=r"class folder .*CIFAR10DVS/frog is missing"):
        CIFAR10DVSDataModule(root=str(tmp_path)).setup("fit")


def test_truncated_or_foreign_files_are_named(tmp_path):
    aedat2 = write_aedat2_dvs128(tmp_path / "c.aedat", make_events(30, 128, 128, 1000, np.random.default_rng(0)))
    aedat2.write_bytes(aedat2.read_bytes()[:-3])
    with pytest.raises(DatasetError, match=f"{aedat2}.*truncated"):
        read_cifar10dvs_file(aedat2)
    junk = tmp_path / "junk.aedat"
    junk.write_bytes(b"\x00\x01\x02 this is not an event file")
    with pytest.raises(DatasetError, match=f"{junk}.*not an AEDAT recording"):
        read_cifar10dvs_file(junk)
    gesture_file = write_aedat31_polarity(tmp_path / "g2.aedat", make_events(3, 128, 128, 1000, np.random.default_rng(0)))
    with pytest.raises(DatasetError, match="AEDAT 2.0"):
        read_cifar10dvs_file(gesture_file)  # an AEDAT 3.1 file is not a CIFAR10-DVS recording


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        CIFAR10DVSDataModule(size=(1, 2, 3))
    with pytest.raises(ValueError, match="flip"):
        CIFAR10DVSDataModule(flip=2.0)
    with pytest.raises(ValueError, match="split must be"):
        CIFAR10DVSDataModule(split="odd")


def test_folders_outside_the_classes_are_named(tmp_path):
    write_fake_cifar10dvs(tmp_path, n_per_class=2, n_events=20)
    shutil.copytree(tmp_path / "CIFAR10DVS" / "cat", tmp_path / "CIFAR10DVS" / "kitten")
    (tmp_path / "CIFAR10DVS" / "download").mkdir()  # where download: true keeps the zips: not a class, not named
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        CIFAR10DVSDataModule(root=str(tmp_path), cache=False).setup("fit")
    named = {str(w.message) for w in record if "ignoring" in str(w.message)}  # one text (per split: shown once)
    assert len(named) == 1 and "CIFAR10DVS/kitten (2 .aedat files)" in named.pop()


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=NO_SHARED_DATA)
def test_real_recordings():
    """Real AEDAT 2.0 recordings load, bin as expected and (with SpikingJelly) agree event by event."""
    readers = spikingjelly_readers()
    files = [p for p in real_files("*.aedat") if tonic.io.read_aedat_header_from_file(str(p))[0] < 3]
    if not files:
        pytest.skip(f"{SHARED_DATA} holds no AEDAT 2.0 (CIFAR10-DVS) recordings")
    for path in files:
        events = read_cifar10dvs_file(path)
        if readers:
            assert same_events(events, readers[1](path)), path
        check_real(events, (128, 128), path)
