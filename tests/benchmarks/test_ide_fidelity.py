"""benchmarks/ide_fidelity.py: the one-step comparison it is built on (the real-data run itself is the benchmark)."""
import torch

from benchmarks import ide_fidelity


def test_pair_compares_identical_weights_on_the_same_batch():
    base = dict(backbone="ide_fc", num_classes=4, input_shape=(2, 3, 3), T=4, neuron=ide_fidelity.LIF,
                backbone_kwargs={"hidden": 8, "dropout": 0.0})
    torch.manual_seed(0)
    x = (torch.rand(5, 4, 2, 3, 3) < 0.4).double()
    y = torch.tensor([0, 1, 2, 3, 0])
    same = ide_fidelity.pair(base, ide_fidelity.OFFICIAL_EVENTS, ide_fidelity.OFFICIAL_EVENTS, x, y, seed=0)
    assert same["rel_l2"] == 0.0 and same["norm_ratio"] == 1.0 and same["loss_official"] == same["loss_library"]
    broyden = ide_fidelity.pair(base, {**ide_fidelity.OFFICIAL_EVENTS, "solver": "broyden"}, ide_fidelity.OFFICIAL_EVENTS, x, y, seed=0)
    assert broyden["norm_ratio"] > 1.2 and broyden["loss_official"] == broyden["loss_library"]  # same forward, larger gradient
