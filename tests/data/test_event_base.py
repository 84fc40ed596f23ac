"""The shared event-data core on every event DataModule: attributes, batches, splits, cache, errors.

Every event DataModule is listed in ``CASES``; its own reader, layout and errors are tested in its
module (tests/data/test_nmnist.py, ...). Nothing here downloads (the ``no_downloads`` fixture).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import tonic.io
from lightning_snn.data import (
    ASLDVSDataModule,
    CIFAR10DVSDataModule,
    DVSGestureDataModule,
    NCaltech101DataModule,
    NMNISTDataModule,
    SpikingDataModule,
)
from lightning_snn.data.event_base import EventBinning
from lightning_snn.data.event_cache import cache_key
from tests.data.event_helpers import epoch
from tests.fakes import make_events, write_fake_nmnist, write_nmnist_bin

pytestmark = pytest.mark.usefixtures("no_downloads")

# (class, expected num_classes, (C, H, W) with default arguments, (train, test) sizes of its default fake)
CASES = [
    (NMNISTDataModule, 10, (2, 34, 34), (20, 10)),  # official Train/ and Test/ folders
    (CIFAR10DVSDataModule, 10, (2, 48, 48), (40, 10)),  # 9:1 per class of 5 recordings -> 4:1
    (DVSGestureDataModule, 11, (2, 128, 128), (22, 11)),  # 11 gestures in each listed trial
    (NCaltech101DataModule, 101, (2, 48, 48), (101, 101)),  # 9:1 per class of 2 recordings -> 1:1
    (ASLDVSDataModule, 24, (2, 48, 48), (24, 24)),  # 4:1 per class of 2 recordings -> 1:1
]
IDS = [c[0].__name__ for c in CASES]


# ============================================================================ DataModules
@pytest.mark.parametrize("cls,num_classes,shape,sizes", CASES, ids=IDS)
def test_attributes_before_setup_touch_no_file(tmp_path, cls, num_classes, shape, sizes):
    dm = cls(root=str(tmp_path / "nowhere"))
    assert isinstance(dm, SpikingDataModule)
    assert dm.num_classes == num_classes and dm.input_shape == shape and dm.T == 10
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("cls,num_classes,shape,sizes", CASES, ids=IDS)
def test_batches_from_fake_files(fakes, tmp_path, cls, num_classes, shape, sizes):
    dm = cls(root=str(fakes[cls.__name__]), T=4, batch_size=4, cache_dir=str(tmp_path))
    assert dm.input_shape == shape
    dm.setup("fit")
    assert dm.val_set is dm.test_set  # val_split 0: validate on the test split, as the papers
    assert set(dm.train_set.targets) == set(range(num_classes))
    assert (len(dm.train_set), len(dm.test_set)) == sizes
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        x, y = next(iter(loader))
        assert x.dtype == torch.float32 and x.shape == (4, 4, *shape)
        assert y.dtype == torch.long and y.shape == (4,)
        assert x.sum() > 0


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


# ============================================================================ binning
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


# ============================================================================ cache
def test_second_pass_reads_no_event_file(fakes, tmp_path, read_counter):
    root = fakes["CIFAR10DVSDataModule"]
    dm = CIFAR10DVSDataModule(root=str(root), T=4, batch_size=8, cache_dir=str(tmp_path))
    dm.prepare_data()
    dm.setup("fit")
    assert read_counter["reads"] == 50  # every recording read once, while building
    assert epoch(dm) == 40
    assert read_counter["reads"] == 50  # the first epoch already reads only the cache
    again = CIFAR10DVSDataModule(root=str(root), T=4, batch_size=8, cache_dir=str(tmp_path))
    again.prepare_data()
    again.setup("fit")
    assert epoch(again) == 40 and epoch(again) == 40
    assert read_counter["reads"] == 50  # a new run with the same parameters reads no event file
    for cls in (NMNISTDataModule, DVSGestureDataModule):
        before = read_counter["reads"]
        cls(root=str(fakes[cls.__name__]), cache_dir=str(tmp_path / cls.__name__)).setup("fit")
        built = read_counter["reads"] - before
        dm = cls(root=str(fakes[cls.__name__]), cache_dir=str(tmp_path / cls.__name__), batch_size=8)
        dm.setup("fit")
        epoch(dm)
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
