"""SpikingClassifier's ``time_readout``: the reduction of the per-step outputs over T (mean, sum, max)."""
import pytest
import torch
import torch.nn.functional as F

from lightning_snn.methods import BPTT

SPARCH_IF = {"type": "if", "v_threshold": 1.0, "v_reset": None}


def _model(time_readout: str) -> BPTT:
    return BPTT(backbone="rlif_snn", num_classes=5, input_shape=(6, 1, 1), T=4, time_readout=time_readout, neuron=SPARCH_IF,
                backbone_kwargs={"hidden": [8], "readout": "membrane"})


@pytest.mark.parametrize("kind", ["mean", "sum", "max"])
def test_readout_reduces_over_time(kind: str):
    torch.manual_seed(0)
    out = torch.randn(4, 3, 5)
    steps = [out[t] for t in range(4)]
    want = {
        "mean": sum(steps) / 4,
        "sum": sum(steps),
        "max": torch.stack([torch.stack([torch.max(torch.stack([s[b, k] for s in steps])) for k in range(5)]) for b in range(3)]),
    }[kind]
    model = _model(kind)
    torch.testing.assert_close(model.readout(out), want)
    y = torch.tensor([0, 3, 4])
    torch.testing.assert_close(model.compute_loss(out, y), F.cross_entropy(want, y))


def test_sparch_loss_is_cross_entropy_of_the_summed_softmax():
    """sparch's loss: CrossEntropyLoss(Σ_t softmax(u[t]), y) with u the readout integrator's membrane."""
    torch.manual_seed(0)
    model = BPTT(backbone="rlif_snn", num_classes=5, input_shape=(6, 1, 1), T=4, time_readout="sum", neuron=SPARCH_IF,
                 backbone_kwargs={"hidden": [8], "dropout": 0.0}).eval()
    x = (torch.rand(3, 4, 6, 1, 1) < 0.5).float()
    y = torch.tensor([1, 2, 0])
    model.backbone.readout.readout = "membrane"
    with torch.no_grad():
        u = model(x)
        model.backbone.readout.readout = "softmax"
        loss = model.compute_loss(model(x), y)
    want = F.cross_entropy(torch.softmax(u, -1).sum(0), y)
    torch.testing.assert_close(loss, want)


def test_bad_time_readout():
    with pytest.raises(ValueError, match="time_readout"):
        _model("median")
