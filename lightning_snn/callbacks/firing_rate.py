"""Per-layer firing rates of the spiking neurons, measured during validation."""
from __future__ import annotations

from typing import Any

import lightning as L
import torch

from ..neurons import BaseNode

__all__ = ["FiringRateMonitor", "firing_rates"]


def firing_rates(module: torch.nn.Module) -> dict[str, float]:
    """Firing rate (spikes per neuron per time step) of every recording neuron since recording began."""
    rates = {}
    for name, m in module.named_modules():
        if isinstance(m, BaseNode) and m.spike_count is not None:
            spikes, n = m.spike_count.tolist()
            rates[name] = spikes / max(n, 1.0)
    return rates


class FiringRateMonitor(L.Callback):
    """Logs ``val/firing_rate/<layer>`` for every neuron and their mean ``val/firing_rate``.

    Counting costs one reduction per neuron call and is switched on only during validation (and
    testing, logged as ``test/...``). Counts are summed over DDP ranks before logging.

    Args:
        per_layer: also log one value per neuron layer (off: only the mean).
        stages: which evaluation loops to monitor.
    """

    def __init__(self, per_layer: bool = True, stages: tuple[str, ...] = ("val", "test")) -> None:
        self.per_layer = per_layer
        self.stages = stages
        self.last_rates: dict[str, float] = {}

    @staticmethod
    def _neurons(pl_module: L.LightningModule) -> list[tuple[str, BaseNode]]:
        return [(n, m) for n, m in pl_module.named_modules() if isinstance(m, BaseNode)]

    def _start(self, pl_module: L.LightningModule) -> None:
        for _, m in self._neurons(pl_module):
            m.record_rate = True
            m.spike_count = None

    def _end(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        neurons = self._neurons(pl_module)
        if not neurons:
            return
        counts = []
        for _, m in neurons:
            m.record_rate = False
            counts.append(m.spike_count if m.spike_count is not None else torch.zeros(2, device=pl_module.device))
        stacked = torch.stack([c.to(pl_module.device) for c in counts])  # [layers, 2]
        stacked = pl_module.all_gather(stacked)
        if stacked.dim() == 3:  # gathered over ranks
            stacked = stacked.sum(0)
        rates = stacked[:, 0] / stacked[:, 1].clamp_min(1.0)
        self.last_rates = {name: float(r) for (name, _), r in zip(neurons, rates)}
        metrics: dict[str, Any] = {f"{stage}/firing_rate": float(rates.mean())}
        if self.per_layer:
            metrics.update({f"{stage}/firing_rate/{name}": float(r) for (name, _), r in zip(neurons, rates)})
        if not trainer.sanity_checking:
            pl_module.log_dict(metrics, rank_zero_only=True)
        for _, m in neurons:
            m.spike_count = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if "val" in self.stages:
            self._start(pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if "val" in self.stages:
            self._end(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if "test" in self.stages:
            self._start(pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if "test" in self.stages:
            self._end(trainer, pl_module, "test")
