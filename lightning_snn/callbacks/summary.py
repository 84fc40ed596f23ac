"""A one-screen summary of a spiking model printed when ``fit`` starts.

``lightning-snn fit --config configs/quickstart.yaml`` prints, on rank zero only::

    lightning-snn summary
      method        BPTT
      backbone      mnistnet (MNISTNet)
      time steps    T = 4, multi-step
      parameters    31.00 K (31,002 trainable)
      data          DigitsDataModule: input (1, 8, 8) (C, H, W), 10 classes, 1,293 training samples
      neurons       5 layers, mean firing rate 0.462 at fit start (body.1 0.353, body.3 0.676, ...)
      synaptic ops  594.96 K SOPs + 102.40 K MACs per sample (dense: 992.26 K MACs; 16 training samples, summed over T)

Synaptic operations (SOPs) follow the usual definition of the SNN literature (synaptic operations as
counted for TrueNorth, Merolla et al., Science 2014; the per-layer estimate ``SOPs = firing rate x T x
FLOPs`` of Zhou et al., "Spikformer", ICLR 2023): every spike arriving at a synapse triggers one
accumulate, so a layer's SOPs are the sum over its input spikes of their fan-out. With the dense
operation count of a layer (its MACs) this is estimated, per sample and per time step, as
``MACs x (fraction of nonzero inputs)``, and summed over the T steps (exact up to the border effects of
padded convolutions, whose edge inputs have a smaller fan-out).
A layer whose input is not binary (the first layer receiving the real-valued image, or a layer after
average pooling) performs real multiply-accumulates: its dense MACs are reported separately.
Only convolutions and linear layers count (bias additions, normalisation and pooling are left out).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.seed import isolate_rng
from torch import nn
from torch.utils.data import IterableDataset, default_collate

from ..neurons import BaseNode, reset_states
from .firing_rate import firing_rates

__all__ = ["SpikingSummary", "SynapticOps", "count_synaptic_ops", "format_count"]

#: set to ``0`` / ``false`` to switch the summary off everywhere (the callback's ``enabled`` does it per run)
ENV_SWITCH = "LIGHTNING_SNN_SUMMARY"


@dataclass
class SynapticOps:
    """Per-sample operation counts of one forward pass (see the module docstring).

    Attributes:
        sops: accumulates triggered by spikes (layers whose input is binary), per sample, summed over T.
        macs: multiply-accumulates of layers with real-valued input (dense count), per sample, over T.
        dense_macs: the dense operation count of all counted layers, per sample, over T.
        layers: per-layer ``{"sops": ..., "macs": ..., "input_rate": ...}`` keyed by module name.
        firing_rates: spikes per neuron per time step of every neuron layer in this pass.
        samples: number of samples the counts were averaged over.
    """

    sops: float = 0.0
    macs: float = 0.0
    dense_macs: float = 0.0
    layers: dict[str, dict[str, float]] = field(default_factory=dict)
    firing_rates: dict[str, float] = field(default_factory=dict)
    samples: int = 0


def _dense_macs(module: nn.Module, out: torch.Tensor) -> int:
    """Multiply-accumulates of one call of a convolution or linear layer (bias left out)."""
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    assert isinstance(module, nn.modules.conv._ConvNd)
    kernel = 1
    for k in module.kernel_size:
        kernel *= int(k)
    return out.numel() * (module.in_channels // module.groups) * kernel


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def count_synaptic_ops(run: Callable[[], Any], model: nn.Module, batch_size: int) -> SynapticOps:
    """Count the synaptic operations of ``run()``, one forward pass of ``model`` over ``batch_size`` samples.

    Forward hooks on every ``nn.Linear`` and convolution inside ``model`` (also when wrapped in
    ``TimeDistributed``, and in either step mode: the per-call counts are summed) record the dense MACs
    of each call and the fraction of nonzero entries of its input. Neuron layers
    (:class:`~lightning_snn.neurons.BaseNode`) record their firing rate. The caller decides the mode
    (eval / no_grad) and resets neuron state; the hooks are always removed.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    result = SynapticOps(samples=batch_size)
    handles = []

    def weight_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            x = args[0]
            dense = float(_dense_macs(module, out)) / batch_size
            entry = result.layers.setdefault(name, {"sops": 0.0, "macs": 0.0, "dense_macs": 0.0, "nonzero": 0.0, "inputs": 0.0})
            entry["dense_macs"] += dense
            entry["nonzero"] += float((x != 0).sum())
            entry["inputs"] += float(x.numel())
            if _is_binary(x):
                entry["sops"] += dense * float((x != 0).float().mean())
            else:
                entry["macs"] += dense

        return hook

    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            handles.append(m.register_forward_hook(weight_hook(name)))
    # the neurons' own spike counting (as FiringRateMonitor uses it), with any count in progress put back after
    neurons = [m for m in model.modules() if isinstance(m, BaseNode)]
    recording = [(m.record_rate, m.spike_count) for m in neurons]
    for m in neurons:
        m.record_rate, m.spike_count = True, None
    try:
        run()
        result.firing_rates = firing_rates(model)
    finally:
        for h in handles:
            h.remove()
        for m, (record, count) in zip(neurons, recording):
            m.record_rate, m.spike_count = record, count
    for entry in result.layers.values():
        entry["input_rate"] = entry.pop("nonzero") / max(entry.pop("inputs"), 1.0)
        result.sops += entry["sops"]
        result.macs += entry["macs"]
        result.dense_macs += entry["dense_macs"]
    return result


def format_count(n: float) -> str:
    """``1234567 -> "1.23 M"``: a count with an SI suffix."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f}"


class SpikingSummary(L.Callback):
    """Prints backbone, method, T, parameter count, synaptic operations per sample and data shape at fit start.

    Added to every :class:`~lightning_snn.methods.SpikingClassifier` by its ``configure_callbacks`` (once:
    an instance in ``trainer.callbacks`` is kept as is). The operation counts come from one extra forward
    pass on at most ``max_samples`` training samples (a random input of the model's ``input_shape`` when
    no training data is reachable), under ``torch.no_grad`` in eval mode: neuron states are reset before
    and after, BatchNorm running statistics are not touched, the random number generators are restored
    and the previous train/eval mode of every module is put back. See the module docstring for the SOP
    definition. Only rank zero computes and prints. Under ``fast_dev_run`` (a smoke test of the training
    loops) the extra forward pass is skipped and only the static part is printed.

    Switch it off with ``enabled=False`` (e.g. in a config: ``trainer.callbacks: [{class_path:
    lightning_snn.callbacks.SpikingSummary, init_args: {enabled: false}}]``) or with the environment
    variable ``LIGHTNING_SNN_SUMMARY=0``.

    Args:
        enabled: print the summary (False: do nothing).
        max_samples: samples of the extra forward pass.
        count_ops: run the extra forward pass for SOPs and firing rates (False: only the static part).

    After ``fit`` started, :attr:`summary` holds the printed values as a dict.
    """

    def __init__(self, enabled: bool = True, max_samples: int = 16, count_ops: bool = True) -> None:
        if max_samples < 1:
            raise ValueError(f"SpikingSummary: max_samples must be >= 1, got {max_samples}")
        self.enabled = bool(enabled)
        self.max_samples = int(max_samples)
        self.count_ops = bool(count_ops)
        self.summary: dict[str, Any] = {}

    @staticmethod
    def _switched_off_by_env() -> bool:
        return os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off")

    # ------------------------------------------------------------------------------ data sample
    def _sample_batch(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[torch.Tensor, str]:
        """Up to ``max_samples`` training inputs, and where they came from."""
        dm = trainer.datamodule
        if dm is not None and hasattr(dm, "train_dataloader"):
            try:
                loader = dm.train_dataloader()
                dataset = loader.dataset
                if isinstance(dataset, IterableDataset):
                    batch = next(iter(loader))
                else:
                    n = min(self.max_samples, loader.batch_size or self.max_samples, len(dataset))  # type: ignore[arg-type]
                    collate = loader.collate_fn or default_collate
                    batch = collate([dataset[i] for i in range(n)])
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                if isinstance(x, torch.Tensor):
                    return x[: self.max_samples], f"{len(x[: self.max_samples])} training samples"
            except Exception as err:  # a summary must never stop a run: fall back to random input
                return self._random_input(pl_module), f"random input ({type(err).__name__} reading training data: {err})"
        return self._random_input(pl_module), "random input"

    def _random_input(self, pl_module: L.LightningModule) -> torch.Tensor:
        shape = tuple(getattr(pl_module, "input_shape", ()))
        if not shape:
            raise ValueError("SpikingSummary: the model has no input_shape and no training data is reachable")
        g = torch.Generator().manual_seed(0)
        return torch.rand((min(self.max_samples, 4), *shape), generator=g)

    # ------------------------------------------------------------------------------- the pass
    def measure(self, pl_module: L.LightningModule, x: torch.Tensor) -> SynapticOps:
        """Synaptic operations and firing rates of one forward pass of ``pl_module`` on ``x``, leaving no trace.

        The module must be a :class:`~lightning_snn.methods.SpikingClassifier` (its ``forward`` encodes
        the input and resets neuron state). Train/eval mode of every submodule, every buffer (BatchNorm
        statistics, the power-iteration vectors of IDE's feedback norm, which advance at every forward),
        neuron states and the CPU/CUDA random number generators are as before afterwards.
        """
        modes = {m: m.training for m in pl_module.modules()}
        buffers = [(b, b.detach().clone()) for b in pl_module.buffers()]
        x = x.to(pl_module.device)
        if x.is_floating_point():
            x = x.to(pl_module.dtype)
        cuda = [x.device] if x.device.type == "cuda" else []
        try:
            pl_module.eval()
            with torch.no_grad(), torch.random.fork_rng(devices=cuda):  # restores the RNG when used on its own
                return count_synaptic_ops(lambda: pl_module(x), pl_module, x.shape[0])
        finally:
            reset_states(pl_module)
            with torch.no_grad():
                for buf, saved in buffers:
                    buf.copy_(saved)
            for m, mode in modes.items():
                m.training = mode

    # ------------------------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled or self._switched_off_by_env() or not trainer.is_global_zero:
            return
        self.summary = self.collect(trainer, pl_module)
        print(self.format(self.summary), flush=True)

    def collect(self, trainer: L.Trainer | None, pl_module: L.LightningModule) -> dict[str, Any]:
        """The summary values as a dict (what :meth:`format` prints)."""
        backbone = getattr(pl_module, "backbone", pl_module)
        hp = getattr(pl_module, "hparams", {})
        name = hp.get("backbone") if isinstance(hp.get("backbone"), str) else None
        params = list(pl_module.parameters())
        info: dict[str, Any] = {
            "method": type(pl_module).__name__,
            "backbone": name,
            "backbone_class": type(backbone).__name__,
            "T": getattr(pl_module, "T", None),
            "step_mode": getattr(pl_module, "step_mode", None),
            "parameters": sum(p.numel() for p in params),
            "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
            "neuron_layers": sum(isinstance(m, BaseNode) for m in backbone.modules()),
            "input_shape": tuple(getattr(pl_module, "input_shape", ()) or ()),
            "num_classes": getattr(pl_module, "num_classes", None),
        }
        dm = trainer.datamodule if trainer is not None else None
        if dm is not None:
            info["data"] = type(dm).__name__
            info["data_input_shape"] = tuple(getattr(dm, "input_shape", ()) or ())
            info["data_num_classes"] = getattr(dm, "num_classes", None)
            info["data_T"] = getattr(dm, "T", None)
            train_set = getattr(dm, "train_set", None)
            try:
                info["train_samples"] = len(train_set) if train_set is not None else None  # type: ignore[arg-type]
            except TypeError:
                info["train_samples"] = None
        if trainer is not None and trainer.fast_dev_run:
            info["ops_skipped"] = "fast_dev_run"  # a smoke test of the loops: no extra forward pass
        elif self.count_ops and hasattr(pl_module, "encode"):
            try:
                with isolate_rng():  # data augmentation and Poisson encoding must not shift the run's RNG
                    if trainer is not None:
                        x, source = self._sample_batch(trainer, pl_module)
                    else:
                        x, source = self._random_input(pl_module), "random input"
                    ops = self.measure(pl_module, x)
            except Exception as err:  # the summary is informative only: never stop a run because of it
                rank_zero_warn(f"SpikingSummary: could not count synaptic operations ({type(err).__name__}: {err})")
                return info
            info.update(
                sops_per_sample=ops.sops,
                macs_per_sample=ops.macs,
                dense_macs_per_sample=ops.dense_macs,
                firing_rates=ops.firing_rates,
                ops_source=source,
                batch_shape=tuple(x.shape),
            )
        return info

    @staticmethod
    def format(info: dict[str, Any]) -> str:
        """The printed text of a :meth:`collect` dict."""
        rows: list[tuple[str, str]] = [("method", info["method"])]
        bb = info["backbone_class"] if info.get("backbone") is None else f"{info['backbone']} ({info['backbone_class']})"
        rows.append(("backbone", bb))
        if info.get("T") is not None:
            mode = {"m": "multi-step", "s": "single-step"}.get(info.get("step_mode") or "", "")
            rows.append(("time steps", f"T = {info['T']}" + (f", {mode}" if mode else "")))
        rows.append(("parameters", f"{format_count(info['parameters'])} ({info['trainable_parameters']:,} trainable)"))
        if info.get("data"):
            shape = info.get("data_input_shape") or info.get("input_shape")
            parts = [f"input {tuple(shape)} (C, H, W)"]
            if info.get("data_T"):
                parts.append(f"T = {info['data_T']} frames per sample")
            if info.get("data_num_classes") is not None:
                parts.append(f"{info['data_num_classes']} classes")
            if info.get("train_samples") is not None:
                parts.append(f"{info['train_samples']:,} training samples")
            rows.append(("data", f"{info['data']}: " + ", ".join(parts)))
        elif info.get("input_shape"):
            rows.append(("input", f"{tuple(info['input_shape'])} (C, H, W), {info.get('num_classes')} classes"))
        if "sops_per_sample" in info:
            rates = info.get("firing_rates") or {}
            if rates:
                mean = sum(rates.values()) / len(rates)
                if len(rates) <= 8:
                    detail = ", ".join(f"{n.removeprefix('backbone.')} {r:.3f}" for n, r in rates.items())
                else:
                    detail = f"min {min(rates.values()):.3f}, max {max(rates.values()):.3f}"
                rows.append(("neurons", f"{len(rates)} layers, mean firing rate {mean:.3f} at fit start ({detail})"))
            rows.append((
                "synaptic ops",
                f"{format_count(info['sops_per_sample'])} SOPs + {format_count(info['macs_per_sample'])} MACs per sample "
                f"(dense: {format_count(info['dense_macs_per_sample'])} MACs; {info['ops_source']}, summed over T)",
            ))
        elif info.get("ops_skipped"):
            rows.append(("synaptic ops", f"not counted ({info['ops_skipped']})"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(["lightning-snn summary", *(f"  {k.ljust(width)}  {v}" for k, v in rows)])
