import numpy as np
import pytest
import torch

from lightning_snn.data import DigitsDataModule, SpikingDataModule


@pytest.fixture(scope="module")
def dm() -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=32, seed=0)
    dm.setup("fit")
    return dm


def test_attributes_before_setup():
    dm = DigitsDataModule()
    assert isinstance(dm, SpikingDataModule)
    assert dm.num_classes == 10
    assert dm.input_shape == (1, 8, 8)
    assert dm.train_set is None


def test_split_sizes(dm):
    assert len(dm.test_set) == 360
    assert len(dm.val_set) == 144
    assert len(dm.train_set) == 1797 - 360 - 144


def test_no_overlap_and_full_cover(dm):
    tr, va, te = (set(dm.split_indices[k].tolist()) for k in ("train", "val", "test"))
    assert not tr & va and not tr & te and not va & te
    assert len(tr | va | te) == 1797


def test_stratified(dm):
    y = dm.test_set.tensors[1]
    counts = torch.bincount(y, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # ~36 of each class


def test_batches_and_normalisation(dm):
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.long
    assert 0 <= y.min() and y.max() < 10
    xs = dm.train_set.tensors[0]
    assert abs(xs.mean().item()) < 1e-4 and abs(xs.std(unbiased=False).item() - 1) < 1e-4
    for loader in (dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        xb, yb = next(iter(loader))
        assert xb.shape[1:] == (1, 8, 8) and yb.dtype == torch.long


def test_deterministic_for_seed(dm):
    other = DigitsDataModule(seed=0)
    other.setup("fit")
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(other.split_indices[k], dm.split_indices[k])
    torch.testing.assert_close(other.train_set.tensors[0], dm.train_set.tensors[0])
    third = DigitsDataModule(seed=1)
    third.setup("fit")
    assert not np.array_equal(third.split_indices["test"], dm.split_indices["test"])


def test_val_split_zero_validates_on_test():
    dm = DigitsDataModule(val_split=0.0)
    dm.setup("fit")
    assert dm.val_set is dm.test_set
    assert len(dm.train_set) == 1797 - 360


def test_bad_args():
    with pytest.raises(ValueError, match="val_split"):
        DigitsDataModule(val_split=1.0)
    with pytest.raises(ValueError, match="test_split"):
        DigitsDataModule(test_split=0.0)
