"""Random-number-generator states in checkpoints, for exact resume.

Lightning checkpoints hold the weights, the optimiser, the loop counters and (with
:class:`~lightning_snn.data.ResumableDataLoader`) the position in the epoch, but not the global random
generators. Anything random inside a training step (Poisson encoding, dropout, augmentation in the main
process) then draws other numbers after a resume than the uninterrupted run did. This callback stores the
states of torch (CPU and every CUDA device), NumPy and Python's ``random`` in the checkpoint, and sets them
back when training restarts (``on_train_start``, after the loaders have been re-created and before the
first resumed step), so the resumed steps draw what the uninterrupted run drew from the same point.

The states are those of the process that writes the checkpoint (global rank 0); under DDP every process
restores them. Random augmentation inside ``DataLoader`` worker processes is seeded by the workers and is
not covered: a run with ``num_workers > 0`` and random augmentation resumes with the same samples in the
same order, but other augmentation draws for the rest of the interrupted epoch.
"""
from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch

__all__ = ["RandomStateCheckpoint"]


def _numpy_state() -> dict[str, Any]:
    """NumPy's legacy global state as tensors and numbers (checkpoints load with ``weights_only=True``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _numpy_tuple(state: dict[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["gauss"])


class RandomStateCheckpoint(L.Callback):
    """Save the global RNG states with every checkpoint and restore them when a fit resumes."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state(),
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state, self._pending = self._pending, None
        if not state:
            return
        torch.set_rng_state(state["torch"])
        np.random.set_state(_numpy_tuple(state["numpy"]))
        random.setstate(state["python"])
        cuda = state.get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
