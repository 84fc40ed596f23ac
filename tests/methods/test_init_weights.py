"""init_weights: the STBP repository's --resume (weights only, fresh optimiser and epochs), also under QAT."""
from __future__ import annotations

import lightning as L
import pytest
import torch

from lightning_snn.callbacks import QuantizationAwareTraining
from lightning_snn.data import DigitsDataModule
from lightning_snn.methods import BPTT
from lightning_snn.methods.init_weights import load_weights_only, plain_key

SMALL = {"channels": [4, 8], "hidden": 16, "spiking_output": True}


def _model(**kw) -> BPTT:
    return BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=2, backbone_kwargs=SMALL, **kw)


def _trainer(tmp_path, callbacks=(), steps=2) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=steps, limit_val_batches=0, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     callbacks=list(callbacks), default_root_dir=tmp_path)


class _Probe(L.Callback):
    """Records the float weights, the optimiser state and the loop counters when training starts."""

    def on_train_start(self, trainer, pl_module):
        self.weights = {plain_key(k): v.detach().clone() for k, v in pl_module.state_dict().items()}
        self.opt_state = dict(trainer.optimizers[0].state)
        self.epoch, self.step = trainer.current_epoch, trainer.global_step


def test_qat_finetune_starts_from_the_fp32_weights_with_a_fresh_optimizer(tmp_path):
    torch.manual_seed(0)
    fp32 = _model()
    trainer = _trainer(tmp_path / "fp32", steps=3)
    trainer.fit(fp32, DigitsDataModule(batch_size=32))
    ckpt = tmp_path / "fp32.ckpt"
    trainer.save_checkpoint(ckpt)  # a full Lightning checkpoint: optimiser state, epoch and loops included
    saved = {k: v.clone() for k, v in fp32.state_dict().items()}

    torch.manual_seed(1)  # a different random init, which the checkpoint must replace
    model = _model(init_weights=str(ckpt))
    qat, probe = QuantizationAwareTraining(bits=4, quantize_bias=True), _Probe()
    _trainer(tmp_path / "q4", [qat, probe]).fit(model, DigitsDataModule(batch_size=32))
    assert set(probe.weights) == set(saved)
    for key, value in saved.items():
        assert torch.equal(probe.weights[key], value), key
    assert probe.opt_state == {} and (probe.epoch, probe.step) == (0, 0)  # only the weights came from the file
    conv = model.backbone.body[0].module
    assert len(conv.weight.unique()) <= 15  # the forward pass sees 4-bit weights of the loaded float ones


def test_mismatched_or_missing_checkpoints_are_clear_errors(tmp_path):
    model = _model()
    with pytest.raises(FileNotFoundError, match="init_weights: checkpoint .*nope.ckpt does not exist"):
        load_weights_only(model, str(tmp_path / "nope.ckpt"))
    other = BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=2,
                 backbone_kwargs={**SMALL, "hidden": 12})
    path = tmp_path / "other.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError, match=r"other.pt does not match the model: key '.*' has shape"):
        load_weights_only(model, str(path))
    state = model.state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(ValueError, match="the checkpoint has key 'extra.weight'"):
        load_weights_only(model, str(path))
