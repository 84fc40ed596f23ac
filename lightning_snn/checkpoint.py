"""Reading checkpoint files: one loader, ``weights_only=True``, and one clear sentence per failure.

Every place in lightning-snn that reads a checkpoint (``lightning-snn validate|test|fit --ckpt_path``,
``lightning-snn export``, DSR's ``pretrained_ann``) goes through :func:`load_checkpoint`. It never unpickles
code (``torch.load(weights_only=True)``), and it turns torch's errors into one sentence that names the file:
a missing path, a directory, an empty file, a file that is not a checkpoint, a truncated or damaged one, and a
file that holds Python objects besides tensors. torch's message for the last case advises retrying with
``weights_only=False``, which would run whatever code the file contains; that advice is never passed on.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "load_checkpoint"]

# torch.save writes a zip archive; the legacy format (torch < 1.6) starts with a pickle protocol byte
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


class CheckpointError(ValueError):
    """A checkpoint file cannot be read; the message names the file and the reason."""


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name ``path``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: ``path`` is a directory, empty, not a file written by ``torch.save``, truncated or
            damaged, or holds objects that ``weights_only=True`` does not load.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a directory, not a checkpoint file")
    with open(p, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes): the run that wrote it was probably stopped while saving; use an earlier checkpoint")
    if not head.startswith(_ZIP_MAGIC) and not head.startswith(_PICKLE_PROTO):
        raise CheckpointError(f"{p} is not a PyTorch checkpoint (it does not start like a file written by torch.save)")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if not found and not head.startswith(_ZIP_MAGIC):
            raise CheckpointError(f"{p} is not a PyTorch checkpoint (a pickle that torch.save did not write)") from None
        what = f" such as {found.group(1)}" if found else ""
        raise CheckpointError(
            f"checkpoint {p} holds Python objects{what} besides tensors and plain containers, and lightning-snn loads "
            "checkpoints with weights_only=True only, so that no code stored in a file is run"
        ) from None
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, KeyError, ValueError) as err:
        size = p.stat().st_size
        reason = str(err).split(". ")[0].strip() or type(err).__name__
        raise CheckpointError(
            f"checkpoint {p} ({size:,} bytes) is truncated or damaged and cannot be read ({reason}); "
            "copy it again or use an earlier checkpoint"
        ) from None
