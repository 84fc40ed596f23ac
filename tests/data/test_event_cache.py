"""The frame cache on a full disk, in a read-only folder and when deleted under a running job.

The faults are emulated at Python's system-call layer (``tests/faults.py``), so no root or mount is needed;
the event files are N-MNIST ``.bin`` recordings in the original format (``tests/fakes.py``).
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from lightning_snn.data import NMNISTDataModule
from lightning_snn.data.event_base import collate_event_frames
from lightning_snn.data.event_cache import CacheEntryInvalid, FrameCache
from lightning_snn.fileio import WriteError
from tests.fakes import write_fake_nmnist
from tests.faults import full_disk, read_only


def _nmnist(tmp_path: Path, **kwargs) -> NMNISTDataModule:
    if not (tmp_path / "data" / "NMNIST").is_dir():
        write_fake_nmnist(tmp_path / "data", n_train=2, n_test=1, n_events=60)
    return NMNISTDataModule(root=str(tmp_path / "data"), T=4, cache_dir=str(tmp_path / "cache"), **kwargs)


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def _entry_bytes(tmp_path: Path) -> int:
    """Size of one N-MNIST T=4 entry, measured by storing one elsewhere."""
    dm = NMNISTDataModule(root=str(tmp_path / "data"), T=4, cache_dir=str(tmp_path / "probe"), cache=True)
    ds = dm.make_dataset(train=True, build_cache=False)
    path = ds.cache.store(ds.samples[0].sample_id, ds.samples[0].path, ds.samples[0].label, ds.compute_frames(0))
    size = path.stat().st_size
    shutil.rmtree(tmp_path / "probe")
    return size


@pytest.mark.parametrize("fault", ["full_disk", "read_only"])
def test_unwritable_cache_mid_run_falls_back_to_binning(tmp_path, monkeypatch, fault):
    """The disk fills up (or the folder turns read-only) while entries are written: one warning naming the cache
    and the cause, no partial entry, every sample still served with the frames binned from its events."""
    dm = _nmnist(tmp_path)
    cache_dir = tmp_path / "cache"
    if fault == "full_disk":  # room for cache.json and about 5 of the 30 entries, the 6th write is cut short
        fault_ctx = full_disk(monkeypatch, cache_dir, free_bytes=2_000 + int(5.5 * _entry_bytes(tmp_path)))
        cause = "No space left on device (ENOSPC): the filesystem is full"
    else:  # built once, then 7 entries lost (stale), then the folder becomes read-only
        dm.setup("fit")
        for path in sorted((dm.frame_cache().directory / "Train").rglob("*.pt"))[:7]:
            path.unlink()
        dm = _nmnist(tmp_path)
        fault_ctx = read_only(monkeypatch, dm.frame_cache().directory / "Train")
        cause = "Permission denied (EACCES): no permission to write there"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with fault_ctx as faults:
            dm.setup("fit")
            served = [dm.train_set[i] for i in range(len(dm.train_set))] + [dm.test_set[i] for i in range(len(dm.test_set))]
    assert faults.hits or not faults.emulated  # the writes really met the fault
    messages = {str(w.message) for w in record if "frame cache" in str(w.message)}
    assert len(messages) == 1, messages  # one warning (the same for both splits, so Python shows it once)
    message = messages.pop()
    assert str(dm.frame_cache().directory) in message and cause in message and "binned" in message
    assert not _leftovers(cache_dir)
    cache = dm.frame_cache()
    entries = sorted(cache.directory.rglob("*.pt"))
    assert 0 < len(entries) < 30
    for ds, items in ((dm.train_set, served[:20]), (dm.test_set, served[20:])):
        for i, (x, y) in enumerate(items):
            sample = ds.samples[i]
            assert y == sample.label and torch.equal(x, ds.compute_frames(i).float())
            if cache.has(sample.sample_id):  # every entry on disk is complete and valid
                assert torch.equal(cache.load(sample.sample_id, sample.path, sample.label), ds.compute_frames(i))


def test_read_only_cache_folder_at_start_is_an_error_naming_it(tmp_path, monkeypatch):
    dm = _nmnist(tmp_path)
    (tmp_path / "cache").mkdir()
    with read_only(monkeypatch, tmp_path / "cache"):
        with pytest.raises(WriteError) as err:
            dm.setup("fit")
    message = str(err.value)
    assert f"cannot write the frame cache directory {dm.frame_cache().directory}: Permission denied (EACCES)" in message
    assert "cache_dir" in message and "cache: false" in message


def test_failed_store_leaves_no_partial_entry(tmp_path, monkeypatch):
    source = tmp_path / "src.bin"
    source.write_bytes(b"12345")
    cache = FrameCache(tmp_path / "c", "x", {"T": 2}, (2, 1, 64, 64), torch.int16)
    cache.prepare()
    old = torch.zeros(2, 1, 64, 64, dtype=torch.int16)
    cache.store("a.bin", source, 1, old)
    with full_disk(monkeypatch, tmp_path / "c", free_bytes=4_000) as disk:
        with pytest.raises(WriteError, match=r"entry .*a\.bin\.pt: No space left on device \(ENOSPC\)"):
            cache.store("a.bin", source, 1, torch.ones(2, 1, 64, 64, dtype=torch.int16))
    assert disk.hits == 1 and disk.written == 4_000  # a short write, then ENOSPC, as a real full disk
    assert torch.equal(cache.load("a.bin", source, 1), old)  # the previous entry is untouched
    assert not _leftovers(tmp_path / "c")


def test_cache_deleted_under_a_run_with_workers(tmp_path, monkeypatch):
    """Someone deletes the cache while entries are being written (here: during every entry's serialisation)."""
    dm = _nmnist(tmp_path)
    dm.setup("fit")
    ds = dm.train_set
    expected = torch.stack([ds.compute_frames(i) for i in range(len(ds))]).float()
    shutil.rmtree(tmp_path / "cache")
    real_save = torch.save

    def save_while_deleting(obj, f, *args, **kwargs):
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_while_deleting)
    with pytest.warns(RuntimeWarning, match=r"frame cache directory .* was deleted while in use; creating it again"):
        assert torch.equal(ds[0][0], expected[0])  # in this process: re-created, entry written
    assert dm.frame_cache().has(ds.samples[0].sample_id)
    loader = DataLoader(ds, batch_size=7, num_workers=2, collate_fn=collate_event_frames)  # forked workers
    x = torch.cat([batch[0] for batch in loader])
    assert torch.equal(x, expected)
    assert not _leftovers(tmp_path / "cache")


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
