"""N-MNIST: the 40-bit ``.bin`` reader, its damage checks, the folder layout and its errors (fake files in
the original format; the real sample recordings under ``$LIGHTNING_SNN_SHARED_DATA`` when present)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from lightning_snn.data import DatasetError, NMNISTDataModule
from lightning_snn.data.nmnist import read_nmnist_file
from tests.data.event_helpers import (
    assert_reads_back,
    NO_SHARED_DATA,
    SHARED_DATA,
    check_real,
    epoch,
    real_files,
    same_events,
    spikingjelly_readers,
)
from tests.fakes import make_events, write_fake_nmnist, write_nmnist_bin

pytestmark = pytest.mark.usefixtures("no_downloads")


def test_reader_returns_the_written_events(tmp_path):
    events = make_events(777, 34, 34, 300_000, np.random.default_rng(1))
    assert_reads_back(read_nmnist_file, write_nmnist_bin(tmp_path / "a.bin", events), events)


def test_fake_reads_identically_by_spikingjelly(fakes):
    readers = spikingjelly_readers()
    if readers is None:
        pytest.skip("SpikingJelly's dataset readers cannot be imported here")
    nmnist = next((fakes["NMNISTDataModule"] / "NMNIST" / "Train" / "3").glob("*.bin"))
    assert same_events(read_nmnist_file(nmnist), readers[0](nmnist))


def test_missing_class_folder(tmp_path):
    write_fake_nmnist(tmp_path, n_train=1, n_test=1, n_events=20)
    shutil.rmtree(tmp_path / "NMNIST" / "Test" / "7")
    with pytest.raises(FileNotFoundError, match=r"NMNIST/Test/7 is missing"):
        NMNISTDataModule(root=str(tmp_path)).setup("test")


def test_truncated_file_is_named(tmp_path):
    write_fake_nmnist(tmp_path, n_train=1, n_test=1, n_events=20)
    bad = next((tmp_path / "NMNIST" / "Train" / "4").glob("*.bin"))
    bad.write_bytes(bad.read_bytes()[:-2])
    with pytest.raises(DatasetError, match=f"{bad}.*truncated"):
        NMNISTDataModule(root=str(tmp_path)).setup("fit")  # detected while building the cache
    with pytest.raises(DatasetError, match=f"{bad}.*truncated"):  # and, without the cache, when read
        dm = NMNISTDataModule(root=str(tmp_path), cache=False, batch_size=32)
        dm.setup("fit")
        epoch(dm)


def test_events_outside_the_sensor_are_named(tmp_path):
    write_fake_nmnist(tmp_path, n_train=1, n_test=1, n_events=20)
    bad = next((tmp_path / "NMNIST" / "Test" / "2").glob("*.bin"))
    events = make_events(20, 34, 34, 1000, np.random.default_rng(0))
    events["x"][3] = 40
    write_nmnist_bin(bad, events)
    with pytest.raises(DatasetError, match=rf"{bad} has 1 of 20 events outside the 34x34 sensor"):
        NMNISTDataModule(root=str(tmp_path)).setup("test")


def test_bad_arguments():
    with pytest.raises(ValueError, match="split_by"):
        NMNISTDataModule(split_by="count")
    with pytest.raises(ValueError, match="T"):
        NMNISTDataModule(T=0)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=NO_SHARED_DATA)
def test_real_recordings():
    """The real sample files load through the same reader and bin into frames with the expected shape,
    dtype and event counts; where SpikingJelly's readers can be imported they must agree event by event."""
    readers = spikingjelly_readers()
    files = [p for p in real_files("*.bin") if "NMNIST" in p.parts]
    if not files:
        pytest.skip(f"{SHARED_DATA} holds no N-MNIST .bin recordings")
    for path in files:
        events = read_nmnist_file(path)
        check_real(events, (34, 34), path)
        if readers:
            assert same_events(events, readers[0](path)), path


# ============================================================================ damaged files and stray data
def _recording(tmp_path, n: int = 300):
    return write_nmnist_bin(tmp_path / "r.bin", make_events(n, 34, 34, 300_000, np.random.default_rng(3)))


@pytest.mark.parametrize("damage", ["all_zero", "zero_block", "zero_start", "time_goes_back"])
def test_damaged_nmnist_file_is_named(tmp_path, damage):
    path = _recording(tmp_path)
    raw = bytearray(path.read_bytes())  # 1500 bytes: 300 events of 5 bytes
    if damage == "all_zero":  # same size, every byte zero: a failed copy
        raw = bytearray(len(raw))
        match = "is all zero bytes"
    elif damage == "zero_block":  # a 512-byte disk block zeroed, not aligned to events
        raw[700:1212] = bytes(512)
        match = r"zero-filled block: 10[0-9] all-zero events from byte 70[05]"
    elif damage == "zero_start":  # the first block zeroed: the timestamps alone would not show it
        raw[:512] = bytes(512)
        match = r"zero-filled block: 102 all-zero events from byte 0"
    else:  # one flipped bit in a timestamp's high byte
        raw[5 * 150 + 2] ^= 0x10
        match = r"timestamps go back from \d+ us to \d+ us at event 15[01] of 300"
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=rf"N-MNIST file {path} .*{match}"):
        read_nmnist_file(path)


def test_zero_filled_nmnist_file_stops_setup(tmp_path):
    write_fake_nmnist(tmp_path, n_train=1, n_test=1, n_events=40)
    bad = next((tmp_path / "NMNIST" / "Test" / "6").glob("*.bin"))
    bad.write_bytes(bytes(bad.stat().st_size))
    for cache in (True, False):
        with pytest.raises(DatasetError, match=f"{bad} is all zero bytes"):
            dm = NMNISTDataModule(root=str(tmp_path), cache=cache, batch_size=64)
            dm.setup("test")
            next(iter(dm.test_dataloader()))


def test_folders_and_files_outside_the_classes_are_named(tmp_path):
    write_fake_nmnist(tmp_path, n_train=1, n_test=1, n_events=20)
    shutil.copytree(tmp_path / "NMNIST" / "Train" / "3", tmp_path / "NMNIST" / "Train" / "10")
    with pytest.warns(UserWarning, match=r"N-MNIST: ignoring folder .*NMNIST/Train/10 \(1 \.bin files\), which is not one of its classes"):
        dm = NMNISTDataModule(root=str(tmp_path), cache=False)
        dm.setup("fit")
    assert len(dm.train_set) == 10
    shutil.rmtree(tmp_path / "NMNIST" / "Train" / "10")
    (tmp_path / "NMNIST" / "Train" / "4" / "notes.txt").write_text("stray")
    with pytest.warns(UserWarning, match=r"ignoring 1 file\(s\) in .*Train/4 that are not \.bin recordings \(notes\.txt\)"):
        NMNISTDataModule(root=str(tmp_path), cache=False).setup("fit")
