"""QuantizationAwareTraining: digits accuracy vs fp32, and composition with the methods."""
from __future__ import annotations

import lightning as L
import pytest
import torch

from lightning_snn.callbacks import QuantizationAwareTraining
from lightning_snn.data import DigitsDataModule
from lightning_snn.methods import BPTT
from lightning_snn.quantization import is_quantized, quantized_layers

STBP_LIF = {"type": "lif", "decay": 0.25, "v_threshold": 0.2, "v_reset": 0.0, "surrogate": {"name": "rectangular", "width": 1.0}}


def _trainer(tmp_path, epochs: int, callbacks=()) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_epochs=epochs, deterministic=True, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
                     default_root_dir=tmp_path, limit_val_batches=0)


def test_qat_8_and_4_bit_accuracy_on_digits(tmp_path):
    """The quickstart recipe in fp32, then QAT fine-tuning of those weights at 8 and 4 bits, as the STBP
    repository does (``main.py ... -q --resume --bit {8,4}``); the quantized models lose <= 1 / <= 3 points."""
    import copy

    L.seed_everything(0)
    fp32_model = BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=4, neuron=STBP_LIF,
                      backbone_kwargs={"channels": [16, 32], "hidden": 128, "spiking_output": False})
    # the quickstart's optimiser: Adam 1e-3 with a cosine schedule over the 30 epochs
    fp32_model.configure_optimizers = lambda: {
        "optimizer": (opt := torch.optim.Adam(fp32_model.parameters(), lr=1e-3)),
        "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30),
    }
    dm = DigitsDataModule(batch_size=32)
    trainer = _trainer(tmp_path, 30)
    trainer.fit(fp32_model, dm)
    fp32 = float(trainer.test(fp32_model, dm, verbose=False)[0]["test/acc"])
    acc = {}
    for bits in (8, 4):
        L.seed_everything(0)
        model = copy.deepcopy(fp32_model)
        # QAT fine-tuning of the converged weights at a tenth of the initial rate (the copy's own parameters)
        model.configure_optimizers = (lambda m: lambda: torch.optim.Adam(m.parameters(), lr=1e-4))(model)
        trainer = _trainer(tmp_path, 10, [QuantizationAwareTraining(bits=bits)])
        trainer.fit(model, dm)
        assert len(list(quantized_layers(model))) == 4
        acc[bits] = float(trainer.test(model, dm, verbose=False)[0]["test/acc"])
    print(f"digits test accuracy: fp32 {fp32:.4f}  8-bit {acc[8]:.4f}  4-bit {acc[4]:.4f}")
    assert fp32 >= 0.95
    assert acc[8] >= fp32 - 0.01, (fp32, acc[8])
    assert acc[4] >= fp32 - 0.03, (fp32, acc[4])


def test_setup_is_idempotent_and_errors_are_clear():
    model = BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8))
    cb = QuantizationAwareTraining(bits=8)
    assert len(cb.apply(model)) == 4 and cb.apply(model) == []
    model.backbone.supports_weight_quantization = False
    model.backbone.quantization_unsupported_reason = "feedback weights solved implicitly"
    with pytest.raises(ValueError, match="does not support weight quantization .feedback weights"):
        QuantizationAwareTraining().apply(model)


@pytest.mark.parametrize("quantize_bias", [True, False])
def test_quantize_bias_false_leaves_biases_float(quantize_bias):
    """The STBP repository quantizes biases up to 1de278bf and leaves them float at HEAD 8769231b."""
    torch.manual_seed(0)
    model = BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8))
    linears = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Linear)]
    biases = [m.bias.detach().clone() for m in linears]
    QuantizationAwareTraining(bits=4, quantize_bias=quantize_bias).apply(model)
    for m, b in zip(linears, biases):
        assert len(m.weight.unique()) <= 15
        codes = b * (7 / b.abs().max())  # the 4-bit grid of the bias's own per-tensor scale
        if quantize_bias:
            torch.testing.assert_close(m.bias.detach(), codes.round() / (7 / b.abs().max()))
            assert not torch.equal(m.bias.detach(), b)
        else:
            assert not is_quantized(m, "bias") and torch.equal(m.bias.detach(), b)
            assert not torch.equal(codes, codes.round())  # the float biases are off the grid


def _composition_cases():
    from lightning_snn.methods import DSR, RateBP

    small = {"channels": [4, 8], "hidden": 16, "spiking_output": False}
    return {
        "bptt": lambda: BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=2, backbone_kwargs=small),
        "dsr": lambda: DSR(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=4, backbone_kwargs=small),
        "rate_bp": lambda: RateBP(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=2, backbone_kwargs=small),
        "revsnn": lambda: BPTT(backbone="revs_resnet21", num_classes=10, input_shape=(1, 8, 8), T=2,
                               backbone_kwargs={"planes": [4, 8, 8, 8]}),
    }


@pytest.mark.parametrize("method", ["bptt", "dsr", "rate_bp", "revsnn"])
def test_qat_composes_with_every_method(method, tmp_path):
    torch.manual_seed(0)
    model = _composition_cases()[method]()
    cb = QuantizationAwareTraining(bits=4)
    trainer = L.Trainer(accelerator="cpu", fast_dev_run=True, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[cb], default_root_dir=tmp_path)
    layers = [m for m in model.backbone.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    before = [m.weight.detach().clone() for m in layers]
    trainer.fit(model, DigitsDataModule(batch_size=8))
    assert trainer.global_step == 1 and cb.layers
    quantized = dict(quantized_layers(model.backbone))
    assert len(quantized) == len(layers)
    for m in layers:
        assert m.weight.unique().numel() <= 16  # what the forward pass uses: 4-bit levels
    # the float shadow weights are what the optimiser trains (one step may leave a silent layer unchanged)
    assert any(not torch.equal(m.parametrizations.weight.original, w0) for m, w0 in zip(layers, before))
