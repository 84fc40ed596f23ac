"""DVS128 Gesture: the AEDAT 3.1 reader, the labelled windows, the trial lists and their errors (fake files
in the original format; real recordings under ``$LIGHTNING_SNN_SHARED_DATA`` when present)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tonic.io
from lightning_snn.data import DatasetError, DVSGestureDataModule
from lightning_snn.data.dvs_gesture import read_dvs_gesture_file
from tests.data.event_helpers import (
    assert_reads_back,
    NO_SHARED_DATA,
    SHARED_DATA,
    check_real,
    real_files,
    same_events,
    spikingjelly_readers,
)
from tests.fakes import make_events, write_aedat31_polarity, write_fake_dvs_gesture

pytestmark = pytest.mark.usefixtures("no_downloads")


def test_reader_returns_the_written_events(tmp_path):
    events = make_events(777, 128, 128, 300_000, np.random.default_rng(1))
    assert_reads_back(read_dvs_gesture_file, write_aedat31_polarity(tmp_path / "b.aedat", events), events)


def test_fake_reads_identically_by_spikingjelly(fakes):
    readers = spikingjelly_readers()
    if readers is None:
        pytest.skip("SpikingJelly's dataset readers cannot be imported here")
    gesture = fakes["DVSGestureDataModule"] / "DvsGesture" / "user01_fluorescent.aedat"
    assert same_events(read_dvs_gesture_file(gesture), readers[2](gesture))


def test_gesture_samples_are_the_labelled_windows(fakes, tmp_path):
    dm = DVSGestureDataModule(root=str(fakes["DVSGestureDataModule"]), T=5, cache_dir=str(tmp_path))
    dm.setup("fit")
    ds = dm.train_set
    for i in range(len(ds)):
        events = ds.read_events(i)
        start, end = ds.samples[i].window
        assert len(events) == 400 and events["t"].min() >= start and events["t"].max() < end
        assert ds.frames(i).sum() == 400  # 5 windows of 80 events
    assert sorted(ds.targets) == sorted(list(range(11)) * 2)


def test_truncated_or_foreign_files_are_named(tmp_path):
    aedat3 = write_aedat31_polarity(tmp_path / "g.aedat", make_events(300, 128, 128, 1000, np.random.default_rng(0)))
    aedat3.write_bytes(aedat3.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=f"{aedat3}.*truncated"):
        read_dvs_gesture_file(aedat3)
    junk = tmp_path / "junk.aedat"
    junk.write_bytes(b"\x00\x01\x02 this is not an event file")
    with pytest.raises(DatasetError, match=f"{junk}.*not an AEDAT recording"):
        read_dvs_gesture_file(junk)


def test_events_outside_the_sensor_are_named(tmp_path):
    write_fake_dvs_gesture(tmp_path, train=("user01_led",), test=("user25_led",), events_per_gesture=10)
    rec = tmp_path / "DvsGesture" / "user25_led.aedat"
    events = make_events(100, 128, 128, 10**8, np.random.default_rng(0))
    events["y"][:] = 300
    write_aedat31_polarity(rec, events)
    with pytest.raises(DatasetError, match=f"{rec} has .* outside the 128x128 sensor"):
        DVSGestureDataModule(root=str(tmp_path)).setup("test")


def test_gesture_listing_and_label_errors(tmp_path):
    folder = write_fake_dvs_gesture(tmp_path, train=("user01_led",), test=("user25_led",), events_per_gesture=10)
    (folder / "user25_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n3,oops,7\n")
    with pytest.raises(DatasetError, match="user25_led_labels.csv cannot be read"):
        DVSGestureDataModule(root=str(tmp_path)).setup("test")
    (folder / "user25_led_labels.csv").unlink()
    with pytest.raises(FileNotFoundError, match="user25_led_labels.csv is missing"):
        DVSGestureDataModule(root=str(tmp_path)).setup("test")
    (folder / "user01_led.aedat").unlink()
    with pytest.raises(FileNotFoundError, match=r"user01_led.aedat listed in .*trials_to_train.txt is missing"):
        DVSGestureDataModule(root=str(tmp_path)).setup("fit")
    with pytest.raises(ValueError, match="cannot be downloaded automatically"):
        DVSGestureDataModule(root=str(tmp_path), download=True)


def test_unlisted_recording_is_named(tmp_path):
    folder = write_fake_dvs_gesture(tmp_path, train=("user01_led",), test=("user25_led",), events_per_gesture=10)
    shutil.copy(folder / "user01_led.aedat", folder / "user02_led.aedat")
    with pytest.warns(UserWarning, match=r"1 recording\(s\) in .*DvsGesture listed in neither trials_to_train.txt "
                                          r"nor trials_to_test.txt \(user02_led.aedat\)"):
        DVSGestureDataModule(root=str(tmp_path), cache=False).setup("fit")


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=NO_SHARED_DATA)
def test_real_recordings():
    """Real AEDAT 3.1 recordings load, their labelled windows bin as expected and (with SpikingJelly) the
    events agree event by event."""
    readers = spikingjelly_readers()
    files = [p for p in real_files("*.aedat") if tonic.io.read_aedat_header_from_file(str(p))[0] >= 3]
    if not files:
        pytest.skip(f"{SHARED_DATA} holds no AEDAT 3.1 (DVS128 Gesture) recordings")
    for path in files:
        events = read_dvs_gesture_file(path)
        if readers:
            assert same_events(events, readers[2](path)), path
        labels = path.with_name(path.stem + "_labels.csv")
        if labels.is_file():
            rows = np.loadtxt(labels, dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
            for cls, start, end in rows:
                assert 1 <= cls <= 11
                window = events[(events["t"] >= start) & (events["t"] < end)]
                check_real(window, (128, 128), path)
        else:
            check_real(events, (128, 128), path)
