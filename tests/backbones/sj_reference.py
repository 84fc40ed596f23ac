"""Functional transcriptions of the official spiking-transformer code paths, for reference tests.

Independent of the library's neurons and layers: SpikingJelly's ``MultiStepLIFNode(tau=2.0,
detach_reset=True)`` (decay_input, hard reset to 0, sigmoid surrogate α = 4) as a plain loop, and
conv / linear / BatchNorm (batch statistics, train mode) as ``torch.nn.functional`` calls on weights
read from a library model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_snn.neurons import reset_states


class _Heaviside(torch.autograd.Function):
    """Spike ``x >= 0``; backward: SpikingJelly's ``surrogate.Sigmoid(alpha=4)``."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(4.0 * x)
        return grad * 4.0 * sg * (1 - sg)


def lif(x: torch.Tensor, v_threshold: float = 1.0) -> torch.Tensor:
    """MultiStepLIFNode(tau=2.0, detach_reset=True) on ``[T, ...]``, from a zero membrane."""
    v = torch.zeros_like(x[0])
    out = []
    for xt in x:
        h = v + (xt - v) / 2.0
        s = _Heaviside.apply(h - v_threshold)
        v = h * (1 - s.detach())
        out.append(s)
    return torch.stack(out)


def bn(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """BatchNorm with batch statistics over every dimension but 1 (BatchNorm1d / 2d in train mode)."""
    return F.batch_norm(x, None, None, layer.weight, layer.bias, training=True, eps=layer.eps)


def layers(model: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def max_pool(x: torch.Tensor) -> torch.Tensor:
    """MaxPool2d(3, 2, 1) on ``[T, B, C, H, W]``."""
    return F.max_pool2d(x.flatten(0, 1), 3, 2, 1).unflatten(0, x.shape[:2])


def conv_bn(x: torch.Tensor, conv: nn.Module, norm: nn.Module, padding: int = 1) -> torch.Tensor:
    """``BN(Conv(x))`` on ``[T, B, C, H, W]`` with the time steps folded into the batch."""
    y = F.conv2d(x.flatten(0, 1), conv.weight, conv.bias, padding=padding)
    return bn(y, norm).unflatten(0, x.shape[:2])


def spread_batchnorm(model: nn.Module, bias: tuple[float, float]) -> None:
    """Random BN affine parameters (weight in [0.5, 2], bias in ``bias``) so that every neuron fires sometimes
    and never always: the reference comparison then covers every spike path."""
    with torch.no_grad():
        for m in layers(model, nn.modules.batchnorm._BatchNorm):
            m.weight.uniform_(0.5, 2.0)
            m.bias.uniform_(*bias)


def assert_same_forward_and_gradients(model: nn.Module, reference, x: torch.Tensor) -> None:
    """The library model (mean over T of ``[T, B, K]``) against ``reference(model, x) -> [B, K]``, float64."""
    outs = []
    for fn in (lambda xi: model(xi).mean(0), lambda xi: reference(model, xi)):
        model.zero_grad()
        reset_states(model)
        xi = x.clone().requires_grad_(True)
        out = fn(xi)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        outs.append((out.detach(), xi.grad, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (o1, g1, p1), (o2, g2, p2) = outs
    torch.testing.assert_close(o1, o2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-12)
    assert p1.keys() == p2.keys()
    for name in p1:
        torch.testing.assert_close(p1[name], p2[name], rtol=1e-8, atol=1e-12, msg=name)


def assert_single_step_equals_multi_step(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode outputs of the multi-step and the single-step (T loop outside the layers) modes agree."""
    model.eval()
    with torch.no_grad():
        reset_states(model)
        y_m = model(x)
        reset_states(model)
        model.step_mode = "s"
        y_s = model(x)
    torch.testing.assert_close(y_m, y_s)
    return y_m


def digits_test_accuracy(backbone: str, neuron: dict, backbone_kwargs: dict, epochs: int = 10) -> float:
    """Train ``backbone`` by BPTT (T = 2, Adam 5e-3, cosine) on scikit-learn's real 8x8 digits; test accuracy."""
    import lightning as L

    from lightning_snn.data import DigitsDataModule
    from lightning_snn.methods import BPTT

    class _DigitsBPTT(BPTT):
        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=5e-3)
            return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.trainer.max_epochs)]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per-op overhead dominates these tiny networks; extra threads only contend
    try:
        L.seed_everything(0)
        model = _DigitsBPTT(backbone=backbone, num_classes=10, input_shape=(1, 8, 8), T=2, neuron=neuron,
                            backbone_kwargs={"in_channels": 1, **backbone_kwargs})
        trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, deterministic=True, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, limit_val_batches=0)
        dm = DigitsDataModule(batch_size=32)
        trainer.fit(model, dm)
        (result,) = trainer.test(model, dm, verbose=False)
    finally:
        torch.set_num_threads(threads)
    return float(result["test/acc"])
