"""The event-frame augmentations move all T frames of a sample together."""
from __future__ import annotations

import pytest
import torch

from lightning_snn.data.event_transforms import (
    EventRandomHorizontalFlip,
    EventRandomRoll,
    SNNAugmentWide,
    build_event_train_transform,
)


def test_event_transforms_move_all_frames_together():
    frames = torch.rand(1, 2, 16, 16).expand(5, 2, 16, 16).clone()  # identical frames
    torch.manual_seed(0)
    for t in (EventRandomHorizontalFlip(1.0), EventRandomRoll(4), SNNAugmentWide()):
        for _ in range(12):  # SNNAugmentWide: every op gets drawn
            out = t(frames)
            assert out.shape == frames.shape
            assert all(torch.equal(out[0], out[k]) for k in range(1, 5)), repr(t)
    assert build_event_train_transform() is None
    with pytest.raises(ValueError, match="expects event frames"):
        EventRandomRoll(2)(torch.zeros(4))
