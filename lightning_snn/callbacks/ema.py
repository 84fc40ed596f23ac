"""Exponential moving average of the weights (timm's ``ModelEmaV3``) as a Lightning callback.

After every optimiser step the averaged copy moves towards the live weights,
``θ_ema ← d · θ_ema + (1 - d) · θ`` (Polyak & Juditsky 1992; timm's ``--model-ema``, which RevSFormer and
most spiking-transformer code offer), for parameters and floating-point buffers (BatchNorm statistics)
alike. The callback averages the method's ``backbone`` (the only module with weights in a method).

* ``validate_on_ema: true`` evaluates validation and test epochs on the averaged weights (the live weights
  are put back right after, so training continues on them).
* Checkpoints keep both: the live weights in ``state_dict`` as always, the averaged ones in this
  callback's state (``checkpoint["callbacks"]["EMA..."]["ema_state_dict"]``), restored on resume and by
  ``validate``/``test --ckpt_path``. :func:`ema_state_dict` reads them from a checkpoint file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch

__all__ = ["EMA", "ema_state_dict"]


class EMA(L.Callback):
    """Exponential moving average of the backbone's weights.

    Args:
        decay: the decay ``d`` (timm's default 0.9998 in ``train.py``).
        warmup: timm's decay warm-up, ``d_t = min(decay, 1 - (1 + t)^(-2/3))``, for short runs.
        validate_on_ema: evaluate validation and test epochs on the averaged weights.
        every_n_steps: update after every n-th optimiser step.
    """

    def __init__(self, decay: float = 0.9998, warmup: bool = False, validate_on_ema: bool = True, every_n_steps: int = 1) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA: decay must be in [0, 1), got {decay}")
        if every_n_steps < 1:
            raise ValueError(f"EMA: every_n_steps must be >= 1, got {every_n_steps}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.validate_on_ema = bool(validate_on_ema)
        self.every_n_steps = int(every_n_steps)
        self.ema: Optional[torch.nn.Module] = None
        self._loaded: Optional[dict[str, torch.Tensor]] = None
        self._live: Optional[dict[str, torch.Tensor]] = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(decay=self.decay, every_n_steps=self.every_n_steps)

    # ------------------------------------------------------------------------------ the average
    def _ensure(self, pl_module: L.LightningModule) -> None:
        if self.ema is not None:
            return
        from timm.utils import ModelEmaV3

        self.ema = ModelEmaV3(pl_module.backbone, decay=self.decay, use_warmup=self.warmup)
        if self._loaded is not None:
            self.ema.module.load_state_dict(self._loaded)
            self._loaded = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ensure(pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.ema is not None and step % self.every_n_steps == 0:
            self.ema.update(pl_module.backbone, step=step)

    # --------------------------------------------------------------------- evaluate on the average
    def _swap_in(self, pl_module: L.LightningModule) -> None:
        if not self.validate_on_ema:
            return
        self._ensure(pl_module)
        backbone = pl_module.backbone
        self._live = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
        backbone.load_state_dict(self.ema.module.state_dict())

    def _swap_out(self, pl_module: L.LightningModule) -> None:
        if self._live is not None:
            pl_module.backbone.load_state_dict(self._live)
            self._live = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_in(pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_out(pl_module)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_in(pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_out(pl_module)

    # ----------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._live is not None:  # saved during validation: the live weights belong in state_dict
            checkpoint["state_dict"].update({f"backbone.{k}": v for k, v in self._live.items()})

    def state_dict(self) -> dict[str, Any]:
        if self.ema is None:
            return {} if self._loaded is None else {"ema_state_dict": self._loaded}
        return {"ema_state_dict": {k: v.detach().clone() for k, v in self.ema.module.state_dict().items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        loaded = state_dict.get("ema_state_dict")
        if loaded is None:
            return
        if self.ema is not None:
            self.ema.module.load_state_dict(loaded)
        else:
            self._loaded = loaded


def ema_state_dict(checkpoint_path: str | Path) -> dict[str, torch.Tensor]:
    """The averaged backbone weights stored by :class:`EMA` in a checkpoint (loaded with ``weights_only``)."""
    ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    for key, state in (ckpt.get("callbacks") or {}).items():
        if str(key).startswith("EMA") and "ema_state_dict" in state:
            return state["ema_state_dict"]
    raise KeyError(f"{checkpoint_path}: no EMA weights in this checkpoint (was the EMA callback in trainer.callbacks?)")
