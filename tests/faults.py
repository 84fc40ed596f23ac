"""Emulated filesystem faults: a disk that fills up and a read-only folder, without root or mounts.

The faults sit where Python meets the kernel: ``os.write`` (a full disk), ``os.open`` / ``os.mkdir`` /
``os.replace`` (a read-only folder). They act only on paths inside the folder given, answer with the
``OSError`` and ``errno`` the kernel gives (``ENOSPC`` after a short write, ``EACCES``), and count how
often they struck (``hits``), so a test can assert that the code under test really went through them.
A writer that bypasses Python's ``os`` module (e.g. a C++ or Rust file writer) does not meet them, and a
test that asserts ``hits`` then fails, as it should: such a writer also hides the ``errno``.

``read_only`` also really ``chmod``s the folders to ``0o555``. Tests run as root in CI, where mode bits do
not stop writes, so for root the refusal is emulated as well; for other users the kernel refuses by itself.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["DiskFaults", "full_disk", "read_only"]


class DiskFaults:
    """What a fault emulation did: ``hits`` (refusals), ``written`` (bytes that still reached the disk)."""

    def __init__(self, folder: Path, emulated: bool = True) -> None:
        self.folder = Path(os.path.abspath(folder))
        self.emulated = emulated  # False: the kernel refuses by itself (read_only as a non-root user)
        self.hits = 0
        self.written = 0

    def covers(self, path: os.PathLike[str] | str | bytes) -> bool:
        path = os.fsdecode(path)
        return Path(os.path.abspath(path)).is_relative_to(self.folder)

    def covers_fd(self, fd: int) -> bool:
        try:
            return self.covers(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return False


@contextmanager
def full_disk(monkeypatch: pytest.MonkeyPatch, folder: os.PathLike[str] | str, free_bytes: int) -> Iterator[DiskFaults]:
    """Files under ``folder`` may receive ``free_bytes`` more bytes in all; then writes fail with ENOSPC.

    Like a real filesystem, the write that crosses the limit is short (it stores what fits and returns the
    count) and the next one raises ``OSError(ENOSPC)``. Space is not given back when files are deleted.
    """
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("the full-disk emulation needs /proc/self/fd (Linux)")
    faults = DiskFaults(Path(folder))
    state = {"free": int(free_bytes)}
    real_write = os.write

    def write(fd: int, data) -> int:  # type: ignore[no-untyped-def]
        if not faults.covers_fd(fd):
            return real_write(fd, data)
        if state["free"] <= 0:
            faults.hits += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, memoryview(data)[: state["free"]])
        state["free"] -= n
        faults.written += n
        return n

    with monkeypatch.context() as m:
        m.setattr(os, "write", write)
        yield faults


@contextmanager
def read_only(monkeypatch: pytest.MonkeyPatch, folder: os.PathLike[str] | str) -> Iterator[DiskFaults]:
    """``folder`` and every folder under it become read-only (``chmod 0o555``; for root the refusal is emulated,
    see the module docstring)."""
    folder = Path(folder)
    faults = DiskFaults(folder, emulated=os.geteuid() == 0)
    modes = {d: stat.S_IMODE(d.stat().st_mode) for d in [folder, *(p for p in folder.rglob("*") if p.is_dir())]}
    for d in modes:
        d.chmod(0o555)
    real_open, real_mkdir, real_replace = os.open, os.mkdir, os.replace

    def refuse(path) -> None:  # type: ignore[no-untyped-def]
        faults.hits += 1
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    def open_(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and faults.covers(path):
            refuse(path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def mkdir(path, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
        if faults.covers(path):
            if os.path.lexists(path):  # the kernel reports an existing name before checking permission
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))
            refuse(path)
        return real_mkdir(path, mode, dir_fd=dir_fd)

    def replace(src, dst, *, src_dir_fd=None, dst_dir_fd=None):  # type: ignore[no-untyped-def]
        if faults.covers(dst):
            refuse(dst)
        return real_replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    try:
        with monkeypatch.context() as m:
            if faults.emulated:
                m.setattr(os, "open", open_)
                m.setattr(os, "mkdir", mkdir)
                m.setattr(os, "replace", replace)
            yield faults
    finally:
        for d, mode in modes.items():
            d.chmod(mode)
