"""Disk cache of binned event frames, so that events are read and binned once, not every epoch.

Layout: ``<cache_root>/<name>-<key>/<sample id>.pt``, plus a human-readable ``cache.json`` describing
the parameters. ``key`` is a hash of **every parameter that changes the frames** (dataset, T, binning
mode, output size, polarity channels, denoising, tonic version, ...) and of :data:`CACHE_FORMAT_VERSION`,
so changing any of them, or upgrading the format, selects a fresh directory instead of reusing frames
binned differently.

Each entry is one ``torch.save`` file holding the frames together with what is needed to verify them::

    {"format": 1, "key": "<key>", "sample": "<sample id>", "label": 3,
     "source_size": 123456, "source_mtime_ns": ..., "shape": [T, C, H, W], "dtype": "torch.float32",
     "crc32": ..., "frames": <tensor>}

and is read back with ``torch.load(weights_only=True)`` (no code is unpickled). :meth:`FrameCache.load`
rejects an entry, raising :class:`CacheEntryInvalid` with the reason, when the file is missing,
unreadable or truncated, written for another key / format / sample / label, of the wrong shape or
dtype, when its CRC-32 does not match its frames (bit rot, partial overwrite), or when the source
event file changed size or modification time since the entry was written (stale). The dataset then
rebuilds the entry from the events; an entry is never used unverified.

Writing. An entry is serialised in memory, then written with :func:`lightning_snn.fileio.write_atomic`
(temporary file in the same folder, fsync, atomic rename; the temporary file removed on failure), so a
crash, a full disk or a concurrent writer (several DataLoader workers, DDP ranks) never leaves a partial
entry under the final name. :meth:`FrameCache.store` raises :class:`~lightning_snn.fileio.WriteError`
naming the entry and the cause (``No space left on device (ENOSPC)``, ``Read-only file system
(EROFS)``, ...); the dataset then stops writing and bins on the fly (see
:class:`~lightning_snn.data.event_base.EventFrameDataset`). A cache directory deleted while in use is
created again (with one warning) and the write retried.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import warnings
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import torch

from ..fileio import WriteError, ensure_folder, write_atomic

__all__ = ["CACHE_FORMAT_VERSION", "CacheEntryInvalid", "FrameCache", "cache_key", "source_fingerprint"]

#: bump when the entry layout or the binning code changes in a way the parameters do not capture
CACHE_FORMAT_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]


class CacheEntryInvalid(Exception):
    """A cache entry cannot be used; ``reason`` says why (``"missing"`` for an absent entry)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cache entry {path} is {reason}")
        self.path = path
        self.reason = reason

    @property
    def missing(self) -> bool:
        return self.reason == "missing"


def cache_key(params: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of ``params`` (as sorted JSON) and the cache format version."""
    blob = json.dumps({"cache_format": CACHE_FORMAT_VERSION, **params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def source_fingerprint(path: PathLike) -> tuple[int, int]:
    """``(size in bytes, mtime in ns)`` of a source file: a changed file makes its entries stale."""
    st = os.stat(path)
    return int(st.st_size), int(st.st_mtime_ns)


def _crc32(frames: torch.Tensor) -> int:
    return zlib.crc32(frames.detach().cpu().contiguous().view(torch.uint8).numpy()) & 0xFFFFFFFF


class FrameCache:
    """Verified ``.pt`` entries of binned frames under ``<root>/<name>-<key>/``.

    Args:
        root: cache root, e.g. ``<dataset root>/.lightning_snn_cache``.
        name: readable prefix of the entry directory (dataset and main parameters).
        params: every parameter that changes the frames; hashed into the key and written to
            ``cache.json``.
        frame_shape: expected ``(T, C, H, W)`` of every entry.
        dtype: expected dtype of the stored frames.
    """

    def __init__(
        self,
        root: PathLike,
        name: str,
        params: Mapping[str, Any],
        frame_shape: Sequence[int],
        dtype: torch.dtype,
    ) -> None:
        self.params = dict(params)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.dtype = dtype
        self.key = cache_key({**self.params, "frame_shape": list(self.frame_shape), "dtype": str(dtype)})
        self.root = Path(root)
        self.directory = self.root / f"{name}-{self.key}"
        self._prepared = False  # this instance made the directory: its disappearance is then worth a warning
        self._recreated = False

    # ------------------------------------------------------------------ paths
    def entry_path(self, sample_id: str) -> Path:
        """Where the entry of ``sample_id`` (a relative, ``/``-separated id) lives."""
        parts = [p for p in sample_id.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            raise ValueError(f"invalid cache sample id {sample_id!r}")
        return self.directory.joinpath(*parts[:-1], parts[-1] + ".pt")

    def has(self, sample_id: str) -> bool:
        """Whether an entry file exists (not whether it is valid: that is checked on :meth:`load`)."""
        return self.entry_path(sample_id).is_file()

    #: how to get out of a write failure, appended to every :class:`WriteError` of the cache
    HINT = "set cache_dir to a writable folder with free space, or cache: false to bin events on every access"

    def prepare(self) -> None:
        """Create the entry directory and its ``cache.json``; :class:`WriteError` naming the path if impossible."""
        ensure_folder(self.directory, "frame cache directory", self.HINT)
        self._prepared = True
        meta = self.directory / "cache.json"
        content = {"key": self.key, "cache_format": CACHE_FORMAT_VERSION, "frame_shape": list(self.frame_shape),
                   "dtype": str(self.dtype), "params": self.params}
        try:
            if json.loads(meta.read_text()) == json.loads(json.dumps(content, default=str)):
                return
        except (OSError, ValueError):
            pass
        text = json.dumps(content, indent=2, sort_keys=True, default=str) + "\n"
        write_atomic([(meta, text.encode())], "frame cache description", self.HINT)

    # ------------------------------------------------------------------ read / write
    def load(self, sample_id: str, source: PathLike, label: int) -> torch.Tensor:
        """The verified frames of ``sample_id``, or :class:`CacheEntryInvalid` saying why not."""
        path = self.entry_path(sample_id)
        if not path.is_file():
            raise CacheEntryInvalid(path, "missing")
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError as err:  # removed since is_file(), e.g. the cache deleted under the run
            raise CacheEntryInvalid(path, "missing") from err
        except Exception as err:  # truncated zip, garbage bytes, unsafe pickle, ...
            raise CacheEntryInvalid(path, f"unreadable ({type(err).__name__}: {str(err)[:200]})") from err
        if not isinstance(entry, dict):
            raise CacheEntryInvalid(path, f"not a cache entry (holds a {type(entry).__name__})")
        if entry.get("format") != CACHE_FORMAT_VERSION or entry.get("key") != self.key:
            raise CacheEntryInvalid(path, f"from another cache version or key ({entry.get('format')}, {entry.get('key')})")
        if entry.get("sample") != sample_id:
            raise CacheEntryInvalid(path, f"for another sample ({entry.get('sample')!r})")
        if entry.get("label") != int(label):
            raise CacheEntryInvalid(path, f"labelled {entry.get('label')}, expected {label}")
        frames = entry.get("frames")
        if not isinstance(frames, torch.Tensor):
            raise CacheEntryInvalid(path, "without frames")
        if tuple(frames.shape) != self.frame_shape or frames.dtype != self.dtype:
            raise CacheEntryInvalid(
                path, f"of shape {tuple(frames.shape)} {frames.dtype}, expected {self.frame_shape} {self.dtype}"
            )
        if entry.get("crc32") != _crc32(frames):
            raise CacheEntryInvalid(path, "corrupt (CRC-32 mismatch)")
        try:
            fingerprint = source_fingerprint(source)
        except OSError as err:
            raise CacheEntryInvalid(path, f"orphaned: its source {source} cannot be read ({err})") from err
        if (entry.get("source_size"), entry.get("source_mtime_ns")) != fingerprint:
            raise CacheEntryInvalid(path, f"stale: its source {source} changed since the entry was written")
        return frames

    def store(self, sample_id: str, source: PathLike, label: int, frames: torch.Tensor) -> Path:
        """Write (atomically) the entry of ``sample_id``; returns its path."""
        frames = frames.detach().cpu().contiguous()
        if tuple(frames.shape) != self.frame_shape or frames.dtype != self.dtype:
            raise ValueError(
                f"frames of shape {tuple(frames.shape)} {frames.dtype} do not fit this cache "
                f"({self.frame_shape} {self.dtype})"
            )
        size, mtime = source_fingerprint(source)
        entry = {
            "format": CACHE_FORMAT_VERSION,
            "key": self.key,
            "sample": sample_id,
            "label": int(label),
            "source_size": size,
            "source_mtime_ns": mtime,
            "shape": list(frames.shape),
            "dtype": str(frames.dtype),
            "crc32": _crc32(frames),
            "frames": frames,
        }
        buffer = io.BytesIO()
        torch.save(entry, buffer)
        path = self.entry_path(sample_id)
        try:
            self._write(path, buffer.getbuffer())
        except WriteError as err:
            if err.errno != errno.ENOENT:
                raise
            self._write(path, buffer.getbuffer())  # the directory vanished between the check and the write
        return path

    def _write(self, path: Path, data: memoryview) -> None:
        if not self.directory.is_dir():
            if self._prepared and not self._recreated:
                warnings.warn(f"frame cache directory {self.directory} was deleted while in use; creating it again "
                              "(delete a cache only between runs)", RuntimeWarning, stacklevel=3)
                self._recreated = True
            self.prepare()
        write_atomic([(path, data)], "frame cache entry", self.HINT, make_folders=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.directory})"
