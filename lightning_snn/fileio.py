"""Atomic file writes whose errors name the path and the cause.

:func:`write_atomic` writes each file to a temporary file in the **same folder**
(``.<name>.<pid>.<random>.tmp``), flushes it to the disk (``os.fsync``) and renames it over the final
name with ``os.replace``, which is atomic within one filesystem (POSIX ``rename(2)``). A reader therefore
sees the old file or the complete new one, never a partial one, even when the disk fills up, the
process is killed or the folder is deleted half-way. On any failure the temporary files are removed and
a :class:`WriteError` (an ``OSError`` keeping the ``errno``) says which path could not be written and
why, e.g. ``No space left on device (ENOSPC): the filesystem is full``, instead of the writer's own
message (torch's ``unexpected pos 1024 vs 918``, safetensors' ``SafetensorError``).

Writes go through ``os.open`` / ``os.write`` / ``os.fsync`` only, in Python, so an ``OSError`` from the
kernel reaches the caller with its ``errno`` (the serialisers write to memory first).
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Union

__all__ = ["WriteError", "describe_os_error", "ensure_folder", "write_atomic"]

PathLike = Union[str, "os.PathLike[str]"]
Data = Union[bytes, bytearray, memoryview]

_CAUSES = {
    errno.ENOSPC: "the filesystem is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "no permission to write there",
    errno.EPERM: "no permission to write there",
    errno.ENOENT: "its folder does not exist (deleted while in use?)",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def describe_os_error(err: OSError) -> str:
    """``"<strerror> (<ERRNO NAME>): <what it means>"``, e.g. ``"No space left on device (ENOSPC): ..."``."""
    name = errno.errorcode.get(err.errno, "") if err.errno is not None else ""
    text = err.strerror or str(err)
    meaning = _CAUSES.get(err.errno) if err.errno is not None else None
    return text + (f" ({name})" if name else "") + (f": {meaning}" if meaning else "")


class WriteError(OSError):
    """A file or folder could not be written. ``str()`` names the path and the cause; ``errno`` is the kernel's.

    Args:
        path: the file (or folder) that could not be written.
        cause: the ``OSError`` raised by the system call.
        what: what the file is, for the message (``"frame cache entry"``, ``"quantized export"``).
        hint: how to fix it, appended to the message.
    """

    def __init__(self, path: PathLike, cause: OSError, what: str = "file", hint: str = "") -> None:
        self.path = Path(path)
        self.cause = describe_os_error(cause)
        self.message = f"cannot write the {what} {self.path}: {self.cause}" + (f"; {hint}" if hint else "")
        super().__init__(cause.errno, self.message, str(self.path))

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable, e.g. to cross from a worker process
        return _rebuild_write_error, (self.errno, self.message, str(self.path), self.cause)


def _rebuild_write_error(code: int, message: str, path: str, cause: str) -> WriteError:
    err = WriteError.__new__(WriteError)
    OSError.__init__(err, code, message, path)
    err.path, err.message, err.cause = Path(path), message, cause
    return err


def ensure_folder(folder: PathLike, what: str = "folder", hint: str = "") -> Path:
    """``mkdir -p folder``, raising :class:`WriteError` naming the folder when it cannot be created."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(folder, err, what, hint) from err
    return folder


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_temporary(path: Path, data: Data) -> Path:
    """Write ``data`` to a fresh temporary file next to ``path``, fsync it, return its name (removed on failure)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            view = memoryview(data).cast("B")
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)  # on NFS a deferred ENOSPC can surface here
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def write_atomic(
    files: Sequence[tuple[PathLike, Data]],
    what: str = "file",
    hint: str = "",
    make_folders: bool = False,
) -> list[Path]:
    """Write each ``(path, data)`` of ``files`` complete or not at all (see the module docstring).

    Every temporary file is written and flushed before the first rename, so a full disk or a read-only
    folder leaves every previous file as it was. ``make_folders`` creates missing parent folders first.
    Raises :class:`WriteError` naming the path at fault; returns the paths written.
    """
    targets = [(Path(p), data) for p, data in files]
    if make_folders:
        for folder in dict.fromkeys(p.parent for p, _ in targets):
            ensure_folder(folder, f"folder of the {what}", hint)
    staged: list[Path] = []
    current = Path()
    try:
        for path, data in targets:
            current = path
            staged.append(_write_temporary(path, data))
        for tmp, (path, _) in zip(list(staged), targets):
            current = path
            os.replace(tmp, path)
            staged.remove(tmp)
    except BaseException as err:
        for tmp in staged:
            _unlink_quietly(tmp)
        if isinstance(err, OSError):
            raise WriteError(current, err, what, hint) from err
        raise
    return [path for path, _ in targets]
