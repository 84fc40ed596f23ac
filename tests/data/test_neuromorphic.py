"""N-MNIST, CIFAR10-DVS and DVS128 Gesture DataModules on fake files in the original formats.

Nothing here downloads: every DataModule is built with ``download: false`` (the default), and the
download entry points are replaced by failing stubs for the whole module.
"""
from __future__ import annotations

import importlib
import os
import shutil
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import tonic.io
from lightning_snn.data import (
    CIFAR10DVSDataModule,
    DatasetError,
    DVSGestureDataModule,
    NMNISTDataModule,
    SpikingDataModule,
)
from lightning_snn.data.event_cache import CacheEntryInvalid, FrameCache, cache_key
from lightning_snn.data.event_transforms import (
    EventRandomHorizontalFlip,
    EventRandomRoll,
    SNNAugmentWide,
    build_event_train_transform,
)
from lightning_snn.data.neuromorphic import (
    EventBinning,
    read_cifar10dvs_file,
    read_dvs_gesture_file,
    read_nmnist_file,
)
from tests.fakes import (
    FAKE_WRITERS,
    make_events,
    write_aedat2_dvs128,
    write_aedat31_polarity,
    write_fake_cifar10dvs,
    write_fake_dvs_gesture,
    write_fake_nmnist,
    write_nmnist_bin,
)

SHARED_DATA = Path(os.environ.get("LIGHTNING_SNN_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))

# (class, expected num_classes, (C, H, W) with default arguments)
CASES = [
    (NMNISTDataModule, 10, (2, 34, 34)),
    (CIFAR10DVSDataModule, 10, (2, 48, 48)),
    (DVSGestureDataModule, 11, (2, 128, 128)),
]
IDS = [c[0].__name__ for c in CASES]


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    """Any attempt to download fails the test instead of reaching the network."""
    import tonic.datasets
    import torchvision.datasets.utils as tvu

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(tonic.datasets, "NMNIST", refuse)
    monkeypatch.setattr(tvu, "download_and_extract_archive", refuse)
    monkeypatch.setattr(tvu, "download_url", refuse)


@pytest.fixture(scope="module")
def fakes(tmp_path_factory) -> dict[str, Path]:
    """One root per DataModule with its default fake dataset (read-only: copy before mutating)."""
    base = tmp_path_factory.mktemp("event_fakes")
    roots = {}
    for cls, _, _ in CASES:
        root = base / cls.__name__
        FAKE_WRITERS[cls.__name__](root)
        roots[cls.__name__] = root
    return roots


@pytest.fixture
def read_counter(monkeypatch) -> dict[str, int]:
    """Counts event-file reads: every reader goes through one of these two tonic.io functions."""
    counts = {"reads": 0}
    for name in ("read_mnist_file", "read_aedat_header_from_file"):
        original = getattr(tonic.io, name)

        def counted(*args, _original=original, **kwargs):
            counts["reads"] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(tonic.io, name, counted)
    return counts


def _epoch(dm: SpikingDataModule) -> int:
    return sum(len(y) for _, y in dm.train_dataloader())


# ============================================================================ DataModules
@pytest.mark.parametrize("cls,num_classes,shape", CASES, ids=IDS)
def test_attributes_before_setup_touch_no_file(tmp_path, cls, num_classes, shape):
    dm = cls(root=str(tmp_path / "nowhere"))
    assert isinstance(dm, SpikingDataModule)
    assert dm.num_classes == num_classes and dm.input_shape == shape and dm.T == 10
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("cls,num_classes,shape", CASES, ids=IDS)
def test_batches_from_fake_files(fakes, tmp_path, cls, num_classes, shape):
    dm = cls(root=str(fakes[cls.__name__]), T=4, batch_size=4, cache_dir=str(tmp_path))
    assert dm.input_shape == shape
    dm.setup("fit")
    assert dm.val_set is dm.test_set  # val_split 0: validate on the test split, as the papers
    assert set(dm.train_set.targets) == set(range(num_classes))
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        x, y = next(iter(loader))
        assert x.dtype == torch.float32 and x.shape == (4, 4, *shape)
        assert y.dtype == torch.long and y.shape == (4,)
        assert x.sum() > 0


def test_split_sizes(fakes, tmp_path):
    sizes = {}
    for cls in (NMNISTDataModule, CIFAR10DVSDataModule, DVSGestureDataModule):
        dm = cls(root=str(fakes[cls.__name__]), cache=False)
        dm.setup("fit")
        sizes[cls.__name__] = (len(dm.train_set), len(dm.test_set))
    assert sizes["NMNISTDataModule"] == (20, 10)  # official Train/ and Test/ folders
    assert sizes["CIFAR10DVSDataModule"] == (40, 10)  # 9:1 per class of 5 recordings -> 4:1
    assert sizes["DVSGestureDataModule"] == (22, 11)  # 11 gestures in each listed trial


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


def test_val_split_holds_out_without_augmentation(fakes, tmp_path):
    dm = CIFAR10DVSDataModule(root=str(fakes["CIFAR10DVSDataModule"]), val_split=0.25, flip=1.0, roll=0,
                              cache_dir=str(tmp_path))
    dm.setup("fit")
    assert len(dm.train_set) == 30 and len(dm.val_set) == 10
    full = dm.train_set.dataset
    i = dm.val_set.indices[0]
    x_val, _ = dm.val_set[0]
    x_aug, _ = full[i]
    assert torch.equal(x_val, x_aug.flip(-1))  # the held-out view is not flipped


def test_train_only_augmentation(fakes, tmp_path):
    root = str(fakes["CIFAR10DVSDataModule"])
    plain = CIFAR10DVSDataModule(root=root, flip=0.0, roll=0, cache_dir=str(tmp_path))
    flipped = CIFAR10DVSDataModule(root=root, flip=1.0, roll=0, cache_dir=str(tmp_path))
    rolled = CIFAR10DVSDataModule(root=root, flip=0.0, roll=3, cache_dir=str(tmp_path))
    for dm in (plain, flipped, rolled):
        dm.setup("fit")
    x, _ = plain.train_set[0]
    assert torch.equal(flipped.train_set[0][0], x.flip(-1))
    torch.manual_seed(0)
    r = rolled.train_set[0][0]
    assert any(torch.equal(r, torch.roll(x, (dy, dx), (-2, -1))) for dy in range(-3, 4) for dx in range(-3, 4))
    assert torch.equal(flipped.test_set[0][0], plain.test_set[0][0])  # no augmentation on the test split


def test_event_transforms_move_all_frames_together():
    frames = torch.rand(1, 2, 16, 16).expand(5, 2, 16, 16).clone()  # identical frames
    torch.manual_seed(0)
    for t in (EventRandomHorizontalFlip(1.0), EventRandomRoll(4), SNNAugmentWide()):
        for _ in range(12):  # SNNAugmentWide: every op gets drawn
            out = t(frames)
            assert out.shape == frames.shape
            assert all(torch.equal(out[0], out[k]) for k in range(1, 5)), repr(t)
    assert build_event_train_transform() is None
    with pytest.raises(ValueError, match="expects event frames"):
        EventRandomRoll(2)(torch.zeros(4))


# ============================================================================ readers and binning
def _spikingjelly_readers():
    """SpikingJelly's own (independent) event readers, imported without its datasets/__init__.py
    (which imports torchaudio, broken against this torch build)."""
    try:
        import spikingjelly
    except ImportError:
        return None
    saved = {k: v for k, v in sys.modules.items() if k.startswith("spikingjelly.datasets")}
    stub = types.ModuleType("spikingjelly.datasets")
    stub.__path__ = [os.path.join(os.path.dirname(spikingjelly.__file__), "datasets")]  # type: ignore[attr-defined]
    sys.modules["spikingjelly.datasets"] = stub
    try:
        utils = importlib.import_module("spikingjelly.datasets.utils")
        c10 = importlib.import_module("spikingjelly.datasets.cifar10_dvs")
        return utils.load_ATIS_bin, c10._load_origin_data, utils.load_aedat_v3
    except Exception:
        return None
    finally:
        for k in [k for k in sys.modules if k.startswith("spikingjelly.datasets")]:
            del sys.modules[k]
        sys.modules.update(saved)


def _same_events(ours: np.ndarray, theirs: dict) -> bool:
    return len(ours) == len(theirs["t"]) and all(
        np.array_equal(ours[k].astype(np.int64), np.asarray(theirs[k]).astype(np.int64)) for k in "xytp"
    )


def test_fakes_read_identically_by_spikingjelly(fakes):
    readers = _spikingjelly_readers()
    if readers is None:
        pytest.skip("SpikingJelly's dataset readers cannot be imported here")
    atis, cifar, aedat3 = readers
    nmnist = next((fakes["NMNISTDataModule"] / "NMNIST" / "Train" / "3").glob("*.bin"))
    assert _same_events(read_nmnist_file(nmnist), atis(nmnist))
    c10 = next((fakes["CIFAR10DVSDataModule"] / "CIFAR10DVS" / "ship").glob("*.aedat"))
    assert _same_events(read_cifar10dvs_file(c10), cifar(c10))
    gesture = fakes["DVSGestureDataModule"] / "DvsGesture" / "user01_fluorescent.aedat"
    assert _same_events(read_dvs_gesture_file(gesture), aedat3(gesture))


def test_readers_return_the_written_events(tmp_path):
    rng = np.random.default_rng(1)
    for reader, writer, (w, h), name in (
        (read_nmnist_file, write_nmnist_bin, (34, 34), "a.bin"),
        (read_cifar10dvs_file, write_aedat2_dvs128, (128, 128), "a.aedat"),
        (read_dvs_gesture_file, write_aedat31_polarity, (128, 128), "b.aedat"),
    ):
        events = make_events(777, w, h, 300_000, rng)
        got = reader(writer(tmp_path / name, events))
        assert got.dtype == tonic.io.events_struct
        for k in "xytp":
            assert np.array_equal(got[k].astype(np.int64), events[k]), (name, k)


@pytest.mark.parametrize("split_by", ["number", "time"])
def test_binning_counts_events(split_by):
    rng = np.random.default_rng(0)
    src = make_events(1003, 128, 128, 1_000_000, rng)
    events = np.empty(len(src), dtype=tonic.io.events_struct)
    for k in "xytp":
        events[k] = src[k]
    T = 7
    frames = EventBinning((128, 128), T, split_by)(events)
    assert frames.shape == (T, 2, 128, 128) and frames.dtype == torch.int16
    t = events["t"]
    if split_by == "number":  # T windows of N // T events (tonic drops the N % T last ones)
        expected = [1003 // T] * T
    else:  # T windows of (t_last - t_first) // T us, [start, end)
        width = (t[-1] - t[0]) // T
        expected = [int(((t >= t[0] + i * width) & (t < t[0] + (i + 1) * width)).sum()) for i in range(T)]
    assert frames.sum(dim=(1, 2, 3)).tolist() == expected
    on = EventBinning((128, 128), T, split_by)(events[events["p"]])
    assert on[:, 0].sum() == 0  # polarity 1 lands in channel 1
    merged = EventBinning((128, 128), T, split_by, polarity=False)(events)
    assert merged.shape == (T, 1, 128, 128) and torch.equal(merged[:, 0], frames.sum(1))
    resized = EventBinning((128, 128), T, split_by, size=(48, 48))(events)
    assert resized.shape == (T, 2, 48, 48) and resized.dtype == torch.float32
    empty = EventBinning((128, 128), T, split_by)(events[:0])
    assert empty.shape == (T, 2, 128, 128) and empty.sum() == 0


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


# ============================================================================ cache
def test_second_pass_reads_no_event_file(fakes, tmp_path, read_counter):
    root = fakes["CIFAR10DVSDataModule"]
    dm = CIFAR10DVSDataModule(root=str(root), T=4, batch_size=8, cache_dir=str(tmp_path))
    dm.prepare_data()
    dm.setup("fit")
    assert read_counter["reads"] == 50  # every recording read once, while building
    assert _epoch(dm) == 40
    assert read_counter["reads"] == 50  # the first epoch already reads only the cache
    again = CIFAR10DVSDataModule(root=str(root), T=4, batch_size=8, cache_dir=str(tmp_path))
    again.prepare_data()
    again.setup("fit")
    assert _epoch(again) == 40 and _epoch(again) == 40
    assert read_counter["reads"] == 50  # a new run with the same parameters reads no event file
    for cls in (NMNISTDataModule, DVSGestureDataModule):
        before = read_counter["reads"]
        cls(root=str(fakes[cls.__name__]), cache_dir=str(tmp_path / cls.__name__)).setup("fit")
        built = read_counter["reads"] - before
        dm = cls(root=str(fakes[cls.__name__]), cache_dir=str(tmp_path / cls.__name__), batch_size=8)
        dm.setup("fit")
        _epoch(dm)
        assert read_counter["reads"] - before == built, cls.__name__
    assert built == 3  # DVS128 Gesture: each recording read once for all its gestures


def test_cache_is_keyed_by_frame_parameters(fakes, tmp_path, read_counter):
    root = str(fakes["NMNISTDataModule"])
    dm = NMNISTDataModule(root=root, T=4, cache_dir=str(tmp_path))
    dm.setup("fit")
    first = dm.frame_cache().directory
    reads = read_counter["reads"]
    changed = NMNISTDataModule(root=root, T=6, cache_dir=str(tmp_path))
    changed.setup("fit")
    assert changed.frame_cache().directory != first and first.is_dir()
    assert read_counter["reads"] == 2 * reads  # a new entry, built from the events
    assert changed.train_set[0][0].shape == (6, 2, 34, 34)
    assert "T6" in changed.frame_cache().directory.name
    keys = {NMNISTDataModule(root=root, **kw).frame_cache().key for kw in (
        {}, {"T": 5}, {"size": 32}, {"polarity": False}, {"denoise_filter_time": 5000}, {"split_by": "number"},
        {"first_saccade_only": True},
    )}
    assert len(keys) == 7
    # augmentation, batch size and workers do not change the frames, so they share the entry
    assert NMNISTDataModule(root=root, flip=0.5, roll=3, batch_size=3, num_workers=2).frame_cache().key == \
        NMNISTDataModule(root=root).frame_cache().key
    assert cache_key({"a": 1}) != cache_key({"a": 2})


def _entry(dm, index: int = 0) -> tuple[Path, torch.Tensor]:
    sample = dm.train_set.samples[index]
    return dm.frame_cache().entry_path(sample.sample_id), dm.train_set.compute_frames(index)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bitflip", "stale", "other_key"])
def test_corrupt_or_stale_entry_is_rebuilt(tmp_path, read_counter, damage):
    write_fake_nmnist(tmp_path / "data", n_train=1, n_test=1)
    dm = NMNISTDataModule(root=str(tmp_path / "data"), T=4)
    dm.setup("fit")
    path, fresh = _entry(dm)
    assert path.is_file() and str(path).startswith(str(tmp_path / "data" / ".lightning_snn_cache"))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a torch file" * 10)
    elif damage == "bitflip":  # a well-formed file whose frames no longer match their checksum
        entry = torch.load(path, weights_only=True)
        entry["frames"].view(-1)[5] += 1
        torch.save(entry, path)
    elif damage == "stale":  # the event file changed after the entry was written
        source = Path(dm.train_set.samples[0].path)
        write_nmnist_bin(source, make_events(90, 34, 34, 300_000, np.random.default_rng(5)))
        fresh = dm.train_set.compute_frames(0)
    else:
        entry = torch.load(path, weights_only=True)
        entry["key"] = "0" * 16
        torch.save(entry, path)
    before = read_counter["reads"]
    reason = {"truncated": "unreadable", "garbage": "unreadable", "bitflip": "CRC-32", "stale": "stale",
              "other_key": "another cache version or key"}[damage]
    with pytest.warns(RuntimeWarning, match=reason):
        x, _ = dm.train_set[0]
    assert read_counter["reads"] == before + 1  # rebuilt from its event file ...
    assert torch.equal(x, fresh.float())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert torch.equal(dm.train_set[0][0], x)  # ... and valid again
    assert read_counter["reads"] == before + 1


def test_frame_cache_rejects_wrong_entries(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"12345")
    cache = FrameCache(tmp_path / "c", "x", {"T": 2}, (2, 1, 3, 3), torch.int16)
    frames = torch.arange(18, dtype=torch.int16).reshape(2, 1, 3, 3)
    with pytest.raises(CacheEntryInvalid) as err:
        cache.load("a/b.bin", source, 1)
    assert err.value.missing
    cache.store("a/b.bin", source, 1, frames)
    assert torch.equal(cache.load("a/b.bin", source, 1), frames)
    with pytest.raises(CacheEntryInvalid, match="labelled 1"):
        cache.load("a/b.bin", source, 2)
    with pytest.raises(ValueError, match="do not fit"):
        cache.store("c.bin", source, 1, frames.float())
    with pytest.raises(ValueError, match="invalid cache sample id"):
        cache.entry_path("../escape")
    assert not list(cache.directory.rglob("*.tmp"))


def test_cache_progress_bar(fakes, tmp_path, capsys):
    NMNISTDataModule(root=str(fakes["NMNISTDataModule"]), cache_dir=str(tmp_path)).setup("fit")
    err = capsys.readouterr().err
    assert "N-MNIST train: binning T=10 frames into the cache" in err and "20/20" in err


def test_uncached_matches_cached(fakes, tmp_path):
    root = str(fakes["DVSGestureDataModule"])
    cached = DVSGestureDataModule(root=root, T=3, size=32, snn_augment=False, cache_dir=str(tmp_path))
    uncached = DVSGestureDataModule(root=root, T=3, size=32, snn_augment=False, cache=False)
    for dm in (cached, uncached):
        dm.setup("fit")
    for i in (0, 5, 21):
        assert torch.equal(cached.train_set[i][0], uncached.train_set[i][0])
    assert not (fakes["DVSGestureDataModule"] / ".lightning_snn_cache").exists()


# ============================================================================ errors
@pytest.mark.parametrize("cls", [c[0] for c in CASES], ids=IDS)
def test_missing_root_says_how_to_get_the_data(tmp_path, cls):
    missing = tmp_path / "no_data"
    dm = cls(root=str(missing))
    with pytest.raises(FileNotFoundError, match=str(missing)) as err:
        dm.setup("fit")
    assert "http" in str(err.value)
    with pytest.raises(FileNotFoundError, match=cls.folder_name):
        cls(root=str(tmp_path)).setup("fit")  # root exists, dataset folder does not
    assert not missing.exists()  # nothing was downloaded or created


def test_root_pointing_at_the_dataset_folder_gets_a_hint(fakes):
    with pytest.raises(FileNotFoundError, match="not that folder itself"):
        NMNISTDataModule(root=str(fakes["NMNISTDataModule"] / "NMNIST")).setup("fit")


def test_missing_class_folder(tmp_path):
    write_fake_cifar10dvs(tmp_path, n_per_class=2, n_events=20)
    shutil.rmtree(tmp_path / "CIFAR10DVS" / "frog")
    with pytest.raises(FileNotFoundError, match=r"class folder .*CIFAR10DVS/frog is missing"):
        CIFAR10DVSDataModule(root=str(tmp_path)).setup("fit")
    write_fake_nmnist(tmp_path, n_train=1, n_test=1, n_events=20)
    shutil.rmtree(tmp_path / "NMNIST" / "Test" / "7")
    with pytest.raises(FileNotFoundError, match=r"NMNIST/Test/7 is missing"):
        NMNISTDataModule(root=str(tmp_path)).setup("test")


def test_truncated_files_are_named(tmp_path):
    write_fake_nmnist(tmp_path, n_train=1, n_test=1, n_events=20)
    bad = next((tmp_path / "NMNIST" / "Train" / "4").glob("*.bin"))
    bad.write_bytes(bad.read_bytes()[:-2])
    with pytest.raises(DatasetError, match=f"{bad}.*truncated"):
        NMNISTDataModule(root=str(tmp_path)).setup("fit")  # detected while building the cache
    with pytest.raises(DatasetError, match=f"{bad}.*truncated"):  # and, without the cache, when read
        dm = NMNISTDataModule(root=str(tmp_path), cache=False, batch_size=32)
        dm.setup("fit")
        _epoch(dm)
    aedat2 = write_aedat2_dvs128(tmp_path / "c.aedat", make_events(30, 128, 128, 1000, np.random.default_rng(0)))
    aedat2.write_bytes(aedat2.read_bytes()[:-3])
    with pytest.raises(DatasetError, match=f"{aedat2}.*truncated"):
        read_cifar10dvs_file(aedat2)
    aedat3 = write_aedat31_polarity(tmp_path / "g.aedat", make_events(300, 128, 128, 1000, np.random.default_rng(0)))
    aedat3.write_bytes(aedat3.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=f"{aedat3}.*truncated"):
        read_dvs_gesture_file(aedat3)
    junk = tmp_path / "junk.aedat"
    junk.write_bytes(b"\x00\x01\x02 this is not an event file")
    for reader in (read_cifar10dvs_file, read_dvs_gesture_file):
        with pytest.raises(DatasetError, match=f"{junk}.*not an AEDAT recording"):
            reader(junk)
    gesture_file = write_aedat31_polarity(tmp_path / "g2.aedat", make_events(3, 128, 128, 1000, np.random.default_rng(0)))
    with pytest.raises(DatasetError, match="AEDAT 2.0"):
        read_cifar10dvs_file(gesture_file)  # an AEDAT 3.1 file is not a CIFAR10-DVS recording


def test_events_outside_the_sensor_are_named(tmp_path):
    write_fake_nmnist(tmp_path, n_train=1, n_test=1, n_events=20)
    bad = next((tmp_path / "NMNIST" / "Test" / "2").glob("*.bin"))
    events = make_events(20, 34, 34, 1000, np.random.default_rng(0))
    events["x"][3] = 40
    write_nmnist_bin(bad, events)
    with pytest.raises(DatasetError, match=rf"{bad} has 1 of 20 events outside the 34x34 sensor"):
        NMNISTDataModule(root=str(tmp_path)).setup("test")
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


def test_bad_arguments():
    with pytest.raises(ValueError, match="split_by"):
        NMNISTDataModule(split_by="count")
    with pytest.raises(ValueError, match="T"):
        NMNISTDataModule(T=0)
    with pytest.raises(ValueError, match="size"):
        CIFAR10DVSDataModule(size=(1, 2, 3))
    with pytest.raises(ValueError, match="flip"):
        CIFAR10DVSDataModule(flip=2.0)
    with pytest.raises(ValueError, match="split must be"):
        CIFAR10DVSDataModule(split="odd")


# ============================================================================ real recordings
def _real_files(pattern: str) -> list[Path]:
    return sorted(p for p in SHARED_DATA.rglob(pattern) if ".lightning_snn_cache" not in p.parts)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no real sample recordings: {SHARED_DATA} does not exist "
                    "(see PROVENANCE.md there when it does; set LIGHTNING_SNN_SHARED_DATA to point elsewhere)")
def test_real_recordings():
    """The real sample files load through the same readers and bin into frames with the expected shape,
    dtype and event counts; where SpikingJelly's readers can be imported they must agree event by event."""
    readers = _spikingjelly_readers()
    checked = 0
    for path in _real_files("*.bin"):
        events = read_nmnist_file(path)
        _check_real(events, (34, 34), path)
        if readers:
            assert _same_events(events, readers[0](path)), path
        checked += 1
    for path in _real_files("*.aedat"):
        version, _, _ = tonic.io.read_aedat_header_from_file(str(path))
        if version < 3:
            events = read_cifar10dvs_file(path)
            if readers:
                assert _same_events(events, readers[1](path)), path
            _check_real(events, (128, 128), path)
        else:
            events = read_dvs_gesture_file(path)
            if readers:
                assert _same_events(events, readers[2](path)), path
            labels = path.with_name(path.stem + "_labels.csv")
            if labels.is_file():
                rows = np.loadtxt(labels, dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
                for cls, start, end in rows:
                    assert 1 <= cls <= 11
                    window = events[(events["t"] >= start) & (events["t"] < end)]
                    _check_real(window, (128, 128), path)
            else:
                _check_real(events, (128, 128), path)
        checked += 1
    if checked == 0:
        pytest.skip(f"{SHARED_DATA} holds no .bin or .aedat recordings")


def _check_real(events: np.ndarray, sensor: tuple[int, int], path: Path) -> None:
    assert len(events) > 0, path
    assert events["x"].max() < sensor[0] and events["y"].max() < sensor[1], path
    assert (np.diff(events["t"]) >= 0).all(), f"{path}: timestamps not monotonic"
    T = 10
    frames = EventBinning(sensor, T, "number")(events, str(path))
    assert frames.shape == (T, 2, sensor[1], sensor[0]) and frames.dtype == torch.int16
    assert frames.sum(dim=(1, 2, 3)).tolist() == [len(events) // T] * T
    assert int(frames[:, 1].sum()) <= int(events["p"].sum())  # ON events land in channel 1
    by_time = EventBinning(sensor, T, "time", size=(48, 48))(events, str(path))
    assert by_time.shape == (T, 2, 48, 48) and by_time.dtype == torch.float32 and by_time.sum() > 0


# ============================================================================ damaged files and stray data
def _recording(tmp_path: Path, n: int = 300) -> Path:
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

    write_fake_cifar10dvs(tmp_path, n_per_class=2, n_events=20)
    shutil.copytree(tmp_path / "CIFAR10DVS" / "cat", tmp_path / "CIFAR10DVS" / "kitten")
    (tmp_path / "CIFAR10DVS" / "download").mkdir()  # where download: true keeps the zips: not a class, not named
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        CIFAR10DVSDataModule(root=str(tmp_path), cache=False).setup("fit")
    named = {str(w.message) for w in record if "ignoring" in str(w.message)}  # one text (per split: shown once)
    assert len(named) == 1 and "CIFAR10DVS/kitten (2 .aedat files)" in named.pop()

    folder = write_fake_dvs_gesture(tmp_path, train=("user01_led",), test=("user25_led",), events_per_gesture=10)
    shutil.copy(folder / "user01_led.aedat", folder / "user02_led.aedat")
    with pytest.warns(UserWarning, match=r"1 recording\(s\) in .*DvsGesture listed in neither trials_to_train.txt "
                                          r"nor trials_to_test.txt \(user02_led.aedat\)"):
        DVSGestureDataModule(root=str(tmp_path), cache=False).setup("fit")
