"""lightning_snn.checkpoint.load_checkpoint: one sentence naming the file for every unreadable checkpoint."""
from __future__ import annotations

import argparse

import pytest
import torch

from lightning_snn.checkpoint import CheckpointError, load_checkpoint


@pytest.fixture
def files(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.arange(300.0)}, "epoch": 3}, good)
    data = good.read_bytes()
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "notes.ckpt").write_text("epoch: 3\nthis is not a checkpoint\n")
    (tmp_path / "half.ckpt").write_bytes(data[: len(data) // 2])
    (tmp_path / "tail.ckpt").write_bytes(data[:-10])
    torch.save({"args": argparse.Namespace(lr=1.0)}, tmp_path / "objects.ckpt")
    return tmp_path


@pytest.mark.parametrize("name, reason", [
    ("empty.ckpt", "is empty"),
    ("notes.ckpt", "is not a PyTorch checkpoint"),
    ("half.ckpt", "is truncated or damaged"),
    ("tail.ckpt", "is truncated or damaged"),
    ("objects.ckpt", "holds Python objects such as argparse.Namespace"),
    ("missing.ckpt", "does not exist"),
    (".", "is a directory"),
])
def test_unreadable_checkpoints_are_one_sentence_naming_the_file(files, name, reason):
    path = files / name
    with pytest.raises((CheckpointError, FileNotFoundError)) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert reason in message and str(path) in message
    assert "weights_only=False" not in message and "\n" not in message
    assert info.value.__cause__ is None  # torch's own message (with its weights_only=False advice) is not chained


def test_a_good_checkpoint_loads(files):
    assert load_checkpoint(files / "good.ckpt")["epoch"] == 3
