"""Linear learning-rate warm-up over the first optimiser steps (DSR and IDE code, ``--warmup``)."""
from __future__ import annotations

from typing import Any

__all__ = ["LinearWarmup", "checked_warmup_steps"]


def checked_warmup_steps(steps: int) -> int:
    """``warmup_steps`` as an int, or ``ValueError`` when negative."""
    if steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {steps}")
    return int(steps)


class LinearWarmup:
    """Mixin for a :class:`~lightning_snn.methods.SpikingClassifier`: during the first ``warmup_steps``
    optimiser steps the scheduled learning rate is multiplied by ``(step + 1) / warmup_steps`` (per
    iteration, on top of any epoch-wise ``lr_scheduler``), then handed back to the scheduler unchanged.

    The subclass sets ``self.warmup_steps = checked_warmup_steps(...)`` (0 disables it) in ``__init__``.
    """

    warmup_steps: int = 0
    _scheduled_lrs: list[float] | None = None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.warmup_steps <= 0 or self._trainer is None or self.trainer.global_step >= self.warmup_steps:
            return
        factor = (self.trainer.global_step + 1) / self.warmup_steps
        self._scheduled_lrs = []
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                self._scheduled_lrs.append(group["lr"])
                group["lr"] = group["lr"] * factor

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._scheduled_lrs is None:
            return
        lrs = iter(self._scheduled_lrs)  # give the scheduler back the rate it set
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = next(lrs)
        self._scheduled_lrs = None
