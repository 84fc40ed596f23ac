"""EpochSeededSampler and ResumableDataLoader: sharding, the position in the epoch, and resuming it."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from lightning_snn.data.base import EpochSeededSampler, ResumableDataLoader

DATA = TensorDataset(torch.arange(23))


def _order(loader) -> list[int]:
    return [int(i) for (batch,) in loader for i in batch]


def test_one_process_order_is_the_seeded_permutation():
    sampler = EpochSeededSampler(DATA, seed=3)
    sampler.set_epoch(2)
    g = torch.Generator().manual_seed(3 * 1_000_003 + 2)
    assert list(sampler) == torch.randperm(23, generator=g).tolist()


def test_shards_interleave_the_one_process_permutation():
    whole = list(EpochSeededSampler(DATA, seed=1))
    shards = [list(EpochSeededSampler(DATA, seed=1, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(s) for s in shards] == [8, 8, 8]
    padded = whole + whole[:1]  # 24 = 3 x 8: the first index is repeated once
    assert [padded[r::3] for r in range(3)] == shards


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_state_resumes_the_epoch_where_it_stopped(workers):
    loader = ResumableDataLoader(DATA, batch_size=4, sampler=EpochSeededSampler(DATA, seed=5), num_workers=workers)
    loader.sampler.set_epoch(1)
    it = iter(loader)
    seen = [int(i) for _ in range(3) for i in next(it)[0]]  # workers have fetched further ahead than this
    state = loader.state_dict()
    assert state == {"seed": 5, "epoch": 1, "num_replicas": 1, "position": 12}
    fresh = ResumableDataLoader(DATA, batch_size=4, sampler=EpochSeededSampler(DATA, seed=5))
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(1)  # Lightning sets the same epoch again: the position stays
    rest = _order(fresh)
    reference = EpochSeededSampler(DATA, seed=5)
    reference.set_epoch(1)
    assert seen + rest == list(reference)
    assert fresh.state_dict()["position"] == 23
    fresh.sampler.set_epoch(2)  # a new epoch starts from its beginning
    assert len(_order(fresh)) == 23


def test_a_mid_epoch_state_moves_between_numbers_of_processes():
    two = [EpochSeededSampler(DATA, seed=0, num_replicas=2, rank=r) for r in range(2)]
    state = {**two[0].state_dict(), "position": 4}  # each of 2 processes drew 4: samples 0..7 of the permutation
    one = EpochSeededSampler(DATA, seed=0)
    one.load_state_dict(state)
    assert list(one) == list(EpochSeededSampler(DATA, seed=0))[8:]
    three = EpochSeededSampler(DATA, seed=0, num_replicas=3)
    with pytest.raises(ValueError, match=r"by 2 process\(es\) after 8 samples, which do not split over 3 process\(es\)"):
        three.load_state_dict(state)
    with pytest.raises(ValueError, match="data seed 0, this run's DataModule has seed 9"):
        EpochSeededSampler(DATA, seed=9).load_state_dict(state)


def test_an_end_of_epoch_state_loads_into_any_number_of_processes():
    two = EpochSeededSampler(DATA, seed=0, num_replicas=2)
    list(two)  # the whole shard drawn: the epoch is finished
    three = EpochSeededSampler(DATA, seed=0, num_replicas=3)
    three.load_state_dict(two.state_dict())
    assert list(three) == []  # nothing left of that epoch
    three.set_epoch(1)
    assert len(list(three)) == 8
