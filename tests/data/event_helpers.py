"""Helpers shared by the event-dataset tests: the shared real data, SpikingJelly's readers, checks."""
from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tonic.io
import torch

from lightning_snn.data import SpikingDataModule
from lightning_snn.data.event_base import EventBinning

SHARED_DATA = Path(os.environ.get("LIGHTNING_SNN_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
NO_SHARED_DATA = (f"no real sample recordings: {SHARED_DATA} does not exist (see PROVENANCE.md there when it "
                  "does; set LIGHTNING_SNN_SHARED_DATA to point elsewhere)")


def epoch(dm: SpikingDataModule) -> int:
    return sum(len(y) for _, y in dm.train_dataloader())


def spikingjelly_readers():
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


def assert_reads_back(reader: Callable[[Path], np.ndarray], path: Path, events: np.ndarray) -> np.ndarray:
    """``reader(path)`` returns tonic's event dtype holding exactly ``events`` (those written to ``path``)."""
    got = reader(path)
    assert got.dtype == tonic.io.events_struct
    for k in "xytp":
        assert np.array_equal(got[k].astype(np.int64), events[k]), (path, k)
    return got


def same_events(ours: np.ndarray, theirs: dict) -> bool:
    return len(ours) == len(theirs["t"]) and all(
        np.array_equal(ours[k].astype(np.int64), np.asarray(theirs[k]).astype(np.int64)) for k in "xytp"
    )


def real_files(pattern: str) -> list[Path]:
    return sorted(p for p in SHARED_DATA.rglob(pattern) if ".lightning_snn_cache" not in p.parts)


def check_real(events: np.ndarray, sensor: tuple[int, int], path: Path) -> None:
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
