"""``t_train``: training on a random, time-ordered subset of an event batch's frames (SEW ResNet's --T_train)."""
from collections import Counter
from itertools import combinations

import pytest
import torch
from torch import nn

from lightning_snn.methods import BPTT


class FrameRecorder(nn.Module):
    """A T-agnostic backbone that keeps the time-major input it was given and returns ``[T, B, K]`` logits."""

    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 3)
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        return self.fc(x.flatten(2)[..., :2])


def model_with(T: int = 4, t_train: int | None = 2) -> BPTT:
    return BPTT(backbone=FrameRecorder(), num_classes=3, input_shape=(1, 1, 2), T=T, t_train=t_train)


def labelled_frames(B: int, T: int) -> torch.Tensor:
    """``[B, T, 1, 1, 2]`` frames whose value is ``100 * sample + step``, so each step names itself."""
    b = torch.arange(B, dtype=torch.float32).view(B, 1, 1, 1, 1)
    t = torch.arange(T, dtype=torch.float32).view(1, T, 1, 1, 1)
    return (100 * b + t).expand(B, T, 1, 1, 2).clone()


def steps_seen(model: BPTT) -> list[list[int]]:
    """For each sample, the frame indices its time steps came from, in the order the backbone saw them."""
    seen = model.backbone.seen  # [T', B, 1, 1, 2]
    return [[int(v) % 100 for v in seen[:, b, 0, 0, 0].tolist()] for b in range(seen.shape[1])]


def test_training_batches_see_a_sorted_random_subset_shared_by_the_batch():
    # the official rule (dvsgesture/train.py): np.random.choice(T, T_train, replace=False), sorted, image[:, idx]
    T, k, B = 4, 2, 3
    model = model_with(T, k).train()
    torch.manual_seed(0)
    draws = Counter()
    for _ in range(300):
        model(labelled_frames(B, T))
        per_sample = steps_seen(model)
        assert all(s == per_sample[0] for s in per_sample), "one draw per batch, the same frames for every sample"
        idx = per_sample[0]
        assert len(idx) == k and idx == sorted(set(idx)) and all(0 <= i < T for i in idx)
        draws[tuple(idx)] += 1
    # every k-subset of range(T) is drawn, about equally often (uniform without replacement: 1/6 each here)
    assert set(draws) == set(combinations(range(T), k))
    assert all(30 <= n <= 70 for n in draws.values()), draws


def test_evaluation_uses_every_frame_and_the_training_step_runs():
    T = 4
    model = model_with(T, 3)
    x, y = labelled_frames(2, T), torch.tensor([0, 2])
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (T, 2, 3) and steps_seen(model) == [list(range(T))] * 2
    model.train()
    loss = model.compute_loss(model(x), y)
    loss.backward()
    assert model.backbone.seen.shape[0] == 3 and model.backbone.fc.weight.grad is not None
    model.t_train = None  # without t_train, training sees every frame too
    model(x)
    assert steps_seen(model) == [list(range(T))] * 2


def test_t_train_equal_to_T_keeps_every_frame():
    model = model_with(4, 4).train()
    model(labelled_frames(1, 4))
    assert steps_seen(model) == [[0, 1, 2, 3]]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "12"])
def test_bad_t_train_is_named(bad):
    with pytest.raises(ValueError, match=r"t_train .* must be an integer >= 1 or None"):
        model_with(4, bad)


def test_t_train_above_T_fails_when_fitting_not_when_evaluating():
    # a checkpoint trained on 3 of 4 frames may be evaluated at T = 2 (T is an evaluation setting) ...
    model = model_with(2, 3)
    model.eval()
    with torch.no_grad():
        model(labelled_frames(1, 2))
    assert steps_seen(model) == [[0, 1]]
    # ... but neither fitted nor trained so
    with pytest.raises(ValueError, match=r"t_train=3 .* exceeds the T=2 frames.*model.init_args.t_train"):
        model.on_fit_start()
    with pytest.raises(ValueError, match=r"t_train=3 .* exceeds the T=2 frames"):
        model.train()(labelled_frames(1, 2))


def test_wrong_data_T_and_static_images_are_refused():
    model = model_with(4, 2).train()
    # the data's T is still checked against the model's T before any frames are chosen
    with pytest.raises(ValueError, match="has T=6 frames but the model was built with T=4"):
        model(labelled_frames(1, 6))
    with pytest.raises(ValueError, match="t_train=2 selects frames of event batches"):
        model(torch.rand(2, 1, 1, 2))
