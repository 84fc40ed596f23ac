"""SpikingClassifier / BPTT: encoding, readout, losses, state reset, errors."""
import pytest
import torch
import torch.nn.functional as F

from lightning_snn.methods import BPTT, SpikingClassifier, direct_encoding, poisson_encoding, tet_loss
from lightning_snn.neurons import ATan, LIFNode


def small_model(**kw):
    kw.setdefault("backbone_kwargs", {"channels": [4, 8], "hidden": 16})
    return BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=3, **kw)


def test_direct_and_poisson_encoding():
    x = torch.rand(2, 1, 8, 8)
    d = direct_encoding(x, 4)
    assert d.shape == (4, 2, 1, 8, 8) and torch.equal(d[3], x)
    torch.manual_seed(0)
    p = poisson_encoding(torch.full((1000,), 0.3), 50)
    assert set(p.unique().tolist()) <= {0.0, 1.0} and abs(p.mean().item() - 0.3) < 0.01
    with pytest.raises(ValueError, match=r"intensities in \[0, 1\]"):
        poisson_encoding(torch.tensor([-0.5, 0.5]), 2)


def test_tet_loss_formula():
    torch.manual_seed(0)
    out = torch.randn(4, 3, 5)
    y = torch.tensor([0, 2, 4])
    lam = 0.05
    expected = sum((1 - lam) * F.cross_entropy(out[t], y) + lam * F.mse_loss(out[t], torch.ones_like(out[t])) for t in range(4)) / 4
    torch.testing.assert_close(tet_loss(out, y, lamb=lam), expected)


def test_forward_resets_state_between_batches():
    torch.manual_seed(0)
    model = small_model().eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


def test_event_batches_are_transposed_and_checked():
    model = small_model()
    frames = torch.rand(2, 3, 1, 8, 8)  # [B, T, C, H, W]
    assert model.encode(frames).shape == (3, 2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"input_shape \(1, 8, 8\)"):
        model.encode(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="has T=5 frames but the model was built with T=3"):
        model.encode(torch.rand(2, 5, 1, 8, 8))
    with pytest.raises(ValueError, match="expected images"):
        model.encode(torch.rand(2, 8, 8))


def test_bptt_surrogate_override_and_loss_backward():
    model = small_model(surrogate={"name": "atan", "alpha": 3.0}, loss="tet")
    nodes = [m for m in model.modules() if isinstance(m, LIFNode)]
    assert nodes and all(isinstance(n.surrogate, ATan) and n.surrogate.alpha == 3.0 for n in nodes)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    loss = model.compute_loss(model(x), y)
    loss.backward()
    assert all(p.grad is not None for p in model.backbone.parameters())


def test_bad_neuron_spec_names_the_field():
    with pytest.raises(ValueError, match="neuron.type: unknown neuron 'izh'"):
        small_model(neuron={"type": "izh"})
    with pytest.raises(ValueError, match="invalid arguments for 'lif'"):
        small_model(neuron={"type": "lif", "decay": 0.5, "bogus": 1})


def test_bad_arguments():
    with pytest.raises(ValueError, match="T .* must be >= 1"):
        SpikingClassifier(T=0)
    with pytest.raises(ValueError, match="input_shape must be"):
        SpikingClassifier(input_shape=(8, 8))
    with pytest.raises(ValueError, match="unknown backbone 'nope'"):
        SpikingClassifier(backbone="nope")


def test_classifier_classes_widens_the_head_and_the_metrics():
    """classifier_classes = 100 on 10-class data: a 100-way head (as RevSNN's CIFAR-10 ResNets), CE and accuracy
    over all 100 logits; labels stay 0..9."""
    model = small_model(classifier_classes=100)
    assert model.num_classes == 100
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 3, 9, 1])
    out = model(x)
    assert out.shape == (3, 4, 100)
    loss = model.compute_loss(out, y)
    torch.testing.assert_close(loss, F.cross_entropy(out.mean(0), y))
    assert model.val_acc.num_classes == 100
    same = small_model()
    assert same.num_classes == 10 and same(x).shape[-1] == 10
    with pytest.raises(ValueError, match=r"classifier_classes \(5\) must be >= num_classes \(10\)"):
        small_model(classifier_classes=5)


def test_classifier_classes_override_wins_over_the_datamodule_link(tmp_path):
    """`--model.init_args.num_classes` is overwritten by the DataModule link (apply_on="instantiate");
    `classifier_classes` is not: the RevSNN CIFAR-10 config with it builds the official 100-way RevSResNet21
    (11.05M parameters, the RevSNN README's count)."""
    from lightning_snn.cli import build_cli

    args = ["--config", "configs/revsnn/cifar10_revs_resnet21.yaml", "--trainer.logger", "false",
            "--trainer.default_root_dir", str(tmp_path), "--data.init_args.root", str(tmp_path)]
    wide = build_cli([*args, "--model.init_args.classifier_classes", "100"], run=False).model
    assert wide.num_classes == 100 and wide.hparams.classifier_classes == 100
    heads = [m for m in wide.backbone.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in heads] == [(896, 100)]
    n_params = sum(p.numel() for p in wide.parameters())
    assert round(n_params / 1e6, 2) == 11.05
