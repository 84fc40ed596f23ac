"""Per-layer firing rates of the spiking neurons, measured during validation and testing.

Optionally also the distribution of the per-neuron rates of every layer (``distribution=True``): for each
neuron, spikes / (samples x time steps) over the whole evaluation, summarised per layer by quantiles, the
fraction of silent neurons and a histogram over [0, 1], as the firing-rate statistics of the IDE paper
(its ``get_rate`` script, Sec. 5.3).
"""
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

    With ``distribution=True`` it also logs, per layer, ``<stage>/firing_rate_dist/<layer>/{p10,p50,p90,max,silent}``
    (quantiles of the per-neuron rates and the fraction of neurons that never fired) and keeps the
    per-layer histograms (``bins`` bins over [0, 1]) in :attr:`last_distribution`.

    Args:
        per_layer: also log one value per neuron layer (off: only the mean).
        stages: which evaluation loops to monitor.
        distribution: also collect per-neuron rates (one extra reduction over the batch per neuron call).
        bins: histogram bins of :attr:`last_distribution`.
    """

    def __init__(
        self, per_layer: bool = True, stages: tuple[str, ...] = ("val", "test"), distribution: bool = False, bins: int = 20
    ) -> None:
        if bins < 1:
            raise ValueError(f"FiringRateMonitor: bins must be >= 1, got {bins}")
        self.per_layer = per_layer
        self.stages = stages
        self.distribution = distribution
        self.bins = bins
        self.last_rates: dict[str, float] = {}
        self.last_distribution: dict[str, dict[str, Any]] = {}
        self._hooks: list[Any] = []
        self._per_neuron: dict[str, list[Any]] = {}

    @staticmethod
    def _neurons(pl_module: L.LightningModule) -> list[tuple[str, BaseNode]]:
        return [(n, m) for n, m in pl_module.named_modules() if isinstance(m, BaseNode)]

    def _start(self, pl_module: L.LightningModule) -> None:
        for name, m in self._neurons(pl_module):
            m.record_rate = True
            m.spike_count = None
            if self.distribution:
                self._per_neuron[name] = [None, 0]
                self._hooks.append(m.register_forward_hook(self._collector(name)))

    def _collector(self, name: str) -> Any:
        def hook(module: BaseNode, args: Any, out: torch.Tensor) -> None:
            with torch.no_grad():
                spikes = out.detach().float()
                lead = 2 if module.step_mode == "m" else 1  # [T, B, ...] or [B, ...]
                total = spikes.sum(tuple(range(lead)))
                slot = self._per_neuron[name]
                if slot[0] is not None and slot[0].shape != total.shape:
                    raise RuntimeError(
                        f"FiringRateMonitor: layer {name!r} changed its neuron shape from {tuple(slot[0].shape)} to "
                        f"{tuple(total.shape)} during evaluation; per-neuron rates need a fixed input size"
                    )
                slot[0] = total if slot[0] is None else slot[0] + total
                slot[1] += int(torch.tensor(spikes.shape[:lead]).prod())

        return hook

    def _distribution(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> dict[str, float]:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        metrics: dict[str, float] = {}
        self.last_distribution = {}
        for name, (total, count) in self._per_neuron.items():
            if total is None:
                continue
            total = total.to(pl_module.device)
            n = torch.tensor(float(count), device=pl_module.device)
            gathered_total, gathered_n = pl_module.all_gather(total), pl_module.all_gather(n)
            if gathered_n.dim() == 1:  # gathered over ranks
                total, n = gathered_total.sum(0), gathered_n.sum()
            rates = (total / n.clamp_min(1.0)).flatten().cpu()
            q = torch.quantile(rates, torch.tensor([0.1, 0.5, 0.9]))
            silent = float((rates == 0).float().mean())
            hist = torch.histc(rates, bins=self.bins, min=0.0, max=1.0)
            self.last_distribution[name] = {
                "mean": float(rates.mean()), "p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2]),
                "max": float(rates.max()), "silent": silent, "neurons": rates.numel(),
                "histogram": hist.tolist(), "bin_edges": torch.linspace(0.0, 1.0, self.bins + 1).tolist(),
            }
            for key in ("p10", "p50", "p90", "max", "silent"):
                metrics[f"{stage}/firing_rate_dist/{name}/{key}"] = self.last_distribution[name][key]
        self._per_neuron = {}
        return metrics

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
        if self.distribution:
            metrics.update(self._distribution(trainer, pl_module, stage))
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
