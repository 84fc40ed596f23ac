"""Atomic writes: complete or not at all, errors naming the path and the cause."""
from __future__ import annotations

import errno
import pickle

import pytest

from lightning_snn.fileio import WriteError, describe_os_error, write_atomic
from tests.faults import full_disk, read_only


def test_write_atomic_writes_and_replaces(tmp_path):
    a, b = tmp_path / "sub" / "a.bin", tmp_path / "sub" / "b.json"
    assert write_atomic([(a, b"first"), (b, b"{}")], make_folders=True) == [a, b]
    write_atomic([(a, bytearray(b"second"))])
    assert a.read_bytes() == b"second" and b.read_bytes() == b"{}"
    assert sorted(p.name for p in a.parent.iterdir()) == ["a.bin", "b.json"]


def test_full_disk_on_the_second_file_keeps_both_old_files(tmp_path, monkeypatch):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    write_atomic([(a, b"old a"), (b, b"old b")])
    with full_disk(monkeypatch, tmp_path, free_bytes=1500) as disk:
        with pytest.raises(WriteError) as err:
            write_atomic([(a, b"x" * 1000), (b, b"y" * 1000)], "pair", "free some space")
    assert disk.hits == 1 and disk.written == 1500  # a written in full, b cut short
    assert str(err.value) == f"cannot write the pair {b}: No space left on device (ENOSPC): the filesystem is full; free some space"
    assert err.value.errno == errno.ENOSPC and err.value.path == b
    assert a.read_bytes() == b"old a" and b.read_bytes() == b"old b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]
    again = pickle.loads(pickle.dumps(err.value))  # crosses process boundaries intact
    assert str(again) == str(err.value) and again.errno == errno.ENOSPC and again.cause == err.value.cause


def test_read_only_folder_and_missing_parent(tmp_path, monkeypatch):
    with read_only(monkeypatch, tmp_path) as faults:
        with pytest.raises(WriteError, match=rf"cannot write the file {tmp_path / 'x'}: Permission denied \(EACCES\)"):
            write_atomic([(tmp_path / "x", b"data")])
        with pytest.raises(WriteError, match=rf"folder of the model {tmp_path / 'new'}: Permission denied"):
            write_atomic([(tmp_path / "new" / "x", b"data")], "model", make_folders=True)
    assert faults.hits == 2 or not faults.emulated
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(WriteError, match=r"No such file or directory \(ENOENT\): its folder does not exist"):
        write_atomic([(tmp_path / "absent" / "x", b"data")])
    assert describe_os_error(OSError(errno.EROFS, "Read-only file system")) == \
        "Read-only file system (EROFS): the filesystem is read-only"
