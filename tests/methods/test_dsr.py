"""DSR method: gradients of the representation mapping on a small layer, readouts, thresholds, warm-up, digits."""
from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_snn.backbones import Flatten, TimeDistributed
from lightning_snn.methods import DSR
from lightning_snn.neurons import DSRIFNode, DSRLIFNode, IFNode, representation_weights

T = 6


def layer_model(neuron: nn.Module, seed: int = 0) -> DSR:
    """One linear layer + one neuron (the output layer) as the whole backbone."""
    torch.manual_seed(seed)
    backbone = nn.Sequential(Flatten(), TimeDistributed(nn.Linear(6, 4)), neuron)
    backbone.num_classes = 4
    return DSR(backbone=backbone, num_classes=4, input_shape=(1, 2, 3), T=T).double()


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 1, 2, 3, generator=g, dtype=torch.float64) * 3, torch.randint(0, 4, (16,), generator=g)


def dsr_grads(model: DSR, x, y):
    model.zero_grad()
    model.compute_loss(model(x), y).backward()
    lin = model.backbone[1].module
    return lin.weight.grad.clone(), lin.bias.grad.clone(), model.backbone[2].v_threshold.grad.clone()


def mapping_grads(model: DSR, x, y, vth, tau=None, dt=None):
    """Gradients of the loss through the layer's representation mapping a = clamp(W x + b [/ tau], 0, V_th [/ dt])
    (direct encoding: the input representation is x itself). As in DSR, the loss is evaluated at the
    representation of the simulated spikes and differentiated through the mapping."""
    with torch.no_grad():
        a_spikes = model.readout(model(x))
    lin = model.backbone[1].module
    W = lin.weight.detach().clone().requires_grad_(True)
    b = lin.bias.detach().clone().requires_grad_(True)
    th = torch.tensor(vth, dtype=torch.float64, requires_grad=True)
    r = x.flatten(1) @ W.T + b
    a = torch.minimum(torch.clamp(r, min=0.0), th) if tau is None else torch.minimum(torch.clamp(r / tau, min=0.0), th / dt)
    F.cross_entropy(a + (a_spikes - a).detach(), y).backward()
    return W.grad, b.grad, th.grad


@pytest.mark.parametrize("grad_mode", ["official", "exact"])
def test_if_layer_gradient_is_the_gradient_of_the_representation_mapping(grad_mode):
    model = layer_model(DSRIFNode(v_threshold=2.0, alpha=0.5, grad_mode=grad_mode))
    x, y = batch()
    got = dsr_grads(model, x, y)
    ref = mapping_grads(model, x, y, 2.0)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b)
    assert got[2] != 0  # some outputs sit on the upper clamp: the threshold learns


def test_lif_layer_gradient_is_the_gradient_of_the_weighted_rate_mapping():
    tau, dt = 1.0, 0.05
    x, y = batch()
    exact = layer_model(DSRLIFNode(v_threshold=0.1, alpha=0.3, tau=tau, delta_t=dt, grad_mode="exact"))
    got = dsr_grads(exact, x, y)
    ref = mapping_grads(exact, x, y, 0.1, tau, dt)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b)
    # the official rule: the same direction, scaled by T * sum(p^2) (and by dt^2 more for the threshold)
    official = layer_model(DSRLIFNode(v_threshold=0.1, alpha=0.3, tau=tau, delta_t=dt))
    off = dsr_grads(official, x, y)
    p = representation_weights(T, tau, dt, dtype=torch.float64)
    k = T * float((p * p).sum())
    torch.testing.assert_close(off[0], k * ref[0])
    torch.testing.assert_close(off[1], k * ref[1])
    torch.testing.assert_close(off[2], k * dt * dt * ref[2])


def test_layer_gradient_differs_from_bptt():
    x, y = batch()
    dsr = dsr_grads(layer_model(DSRIFNode(v_threshold=1.0, alpha=1.0)), x, y)
    bptt = layer_model(IFNode(v_threshold=1.0, v_reset=None))
    bptt.zero_grad()
    F.cross_entropy(bptt(x).mean(0), y).backward()
    assert not torch.allclose(bptt.backbone[1].module.weight.grad, dsr[0], atol=1e-3)


def test_readout_is_the_firing_rate_or_the_weighted_rate():
    out = torch.rand(5, 2, 3)
    if_model = DSR(backbone="preact_resnet", backbone_kwargs={"width": 4, "layers": [1, 1, 1, 1]},
                   num_classes=3, input_shape=(1, 8, 8), T=5)
    torch.testing.assert_close(if_model.readout(out), out.mean(0))
    lif_model = DSR(backbone="preact_resnet", backbone_kwargs={"width": 4, "layers": [1, 1, 1, 1]},
                    num_classes=3, input_shape=(1, 8, 8), T=5, neuron={"type": "dsr_lif", "tau": 2.0, "delta_t": 0.1})
    p = representation_weights(5, 2.0, 0.1)
    torch.testing.assert_close(lif_model.readout(out), torch.einsum("t,tbk->bk", p, out))
    assert all(isinstance(m, DSRLIFNode) and m.tau == 2.0 for m in lif_model.modules() if isinstance(m, DSRIFNode | DSRLIFNode))


def test_lif_readout_in_float64_is_the_weighted_rate_formula():
    T, tau, dt = 20, 1.0, 0.05
    model = DSR(backbone="preact_resnet", backbone_kwargs={"width": 4, "layers": [1, 1, 1, 1]}, num_classes=3,
                input_shape=(1, 8, 8), T=T, neuron={"type": "dsr_lif", "tau": tau, "delta_t": dt}).double()
    out = torch.rand(T, 4, 3, dtype=torch.float64)
    w = [math.exp(-(T - t) * dt / tau) for t in range(1, T + 1)]
    expected = sum(w[t] * out[t] for t in range(T)) / sum(w)
    got = model.readout(out)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0.0, atol=1e-15)


def test_thresholds_get_gradients_and_stay_above_the_bound_in_training():
    torch.manual_seed(0)
    model = DSR(backbone="preact_resnet", backbone_kwargs={"width": 4, "layers": [1, 1, 1, 1]}, num_classes=10,
                input_shape=(1, 8, 8), T=4, neuron={"type": "dsr_if", "v_threshold": 0.5, "v_threshold_bound": 0.3})
    thresholds = [m.v_threshold for m in model.modules() if isinstance(m, DSRIFNode)]
    opt = torch.optim.SGD(thresholds, lr=5.0)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    for _ in range(5):
        opt.zero_grad()
        model.compute_loss(model(x), y).backward()
        assert all(t.grad is not None for t in thresholds) and any(float(t.grad) != 0 for t in thresholds)
        assert all(float(t.detach()) >= 0.3 - 1e-7 for t in thresholds)  # projected before use
        opt.step()


def test_invalid_configurations_are_clear_errors():
    kw = dict(backbone="preact_resnet", backbone_kwargs={"width": 4, "layers": [1, 1, 1, 1]}, num_classes=10, input_shape=(2, 8, 8))
    with pytest.raises(ValueError, match="neuron.type must be one of"):
        DSR(neuron={"type": "lif", "decay": 0.5}, **kw)
    with pytest.raises(ValueError, match="runs at T=1"):
        DSR(neuron={"type": "ann_relu"}, T=4, **kw)
    with pytest.raises(ValueError, match="step_mode='m'"):
        DSR(step_mode="s", neuron={"type": "ann_relu"}, T=1, **kw)
    model = DSR(T=4, **kw)
    with pytest.raises(ValueError, match=r"T=3 .*T=4"):
        model.encode(torch.rand(2, 3, 2, 8, 8))


def test_linear_warmup_scales_the_scheduled_learning_rate():
    class LrLog(L.Callback):
        lrs: list[float] = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.lrs.append(optimizer.param_groups[0]["lr"])

    from lightning_snn.data import DigitsDataModule

    model = DSR(backbone="preact_resnet", backbone_kwargs={"width": 4, "layers": [1, 1, 1, 1]}, num_classes=10,
                input_shape=(1, 8, 8), T=2, warmup_steps=4)
    log = LrLog()
    trainer = L.Trainer(max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[log])
    trainer.fit(model, DigitsDataModule(batch_size=16))
    assert log.lrs == pytest.approx([1e-3 * 0.25, 1e-3 * 0.5, 1e-3 * 0.75, 1e-3, 1e-3, 1e-3])
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-3)


def test_dsr_reaches_95_percent_on_digits_at_T8():
    """Real data (scikit-learn's 8x8 digits), DSR's IF neuron with the official IF settings, T = 8."""
    from lightning_snn.data import DigitsDataModule

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread is far faster than two contended ones
    try:
        L.seed_everything(0, verbose=False)
        epochs = 8
        model = DSR(backbone="preact_resnet", backbone_kwargs={"width": 16, "layers": [1, 1, 1, 1]}, num_classes=10,
                    input_shape=(1, 8, 8), T=8, neuron={"type": "dsr_if", "v_threshold": 6.0, "alpha": 0.5, "v_threshold_bound": 0.01})

        def configure_optimizers():
            opt = torch.optim.Adam(model.parameters(), lr=0.01)
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)}

        model.configure_optimizers = configure_optimizers
        dm = DigitsDataModule(batch_size=64, val_split=0.0)
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            check_val_every_n_epoch=epochs, deterministic=True)
        trainer.fit(model, dm)
        acc = trainer.test(model, dm, verbose=False)[0]["test/acc"]
    finally:
        torch.set_num_threads(threads)
    assert acc >= 0.95, f"DSR (IF, T=8) reached only {acc:.3f} on the digits test split"


def test_backbones_follow_the_official_layouts():
    from lightning_snn.backbones import create_backbone

    def count(model, cls):
        return sum(isinstance(m, cls) for m in model.modules())

    if_spec = {"type": "dsr_if"}
    cifar = create_backbone("preact_resnet18", num_classes=10, neuron=if_spec)
    convs = [m for m in cifar.modules() if isinstance(m, nn.Conv2d)]
    assert count(cifar, DSRIFNode) == 2 * 8 + 3 and len(convs) == 1 + 16 + 3  # stem, blocks, 3 projection shortcuts
    assert convs[0].bias is None and all(c.bias is not None for c in convs[1:])  # CIFAR: biased block convs
    assert count(cifar, nn.BatchNorm1d) == 1 and sum(p.numel() for p in cifar.parameters()) == 11_176_945
    imagenet = create_backbone("preact_resnet18_imagenet", num_classes=1000, neuron=if_spec)
    assert count(imagenet, DSRIFNode) == 1 + 16 + 3 and all(m.bias is None for m in imagenet.modules() if isinstance(m, nn.Conv2d))
    # torchvision's ResNet-18 (11,689,512) + BN1d(1000) + final BN(512) + 20 V_th - the 3 halved pre-activation BNs
    assert sum(p.numel() for p in imagenet.parameters()) == 11_689_512 + 2000 + 1024 + 20 - 2 * (64 + 128 + 256)
    vgg = create_backbone("dsr_vgg11", num_classes=10, in_channels=2, neuron={"type": "dsr_lif"})
    assert count(vgg, nn.Conv2d) == 8 and count(vgg, DSRLIFNode) == 9 and count(vgg, nn.Dropout) == 8
    assert [m for m in vgg.modules() if isinstance(m, nn.Linear)][0].in_features == 512 * 7 * 7
    with torch.no_grad():
        assert cifar(torch.randn(2, 3, 3, 32, 32)).shape == (2, 3, 10)
        assert vgg.eval()(torch.rand(2, 1, 2, 48, 48)).shape == (2, 1, 10)
