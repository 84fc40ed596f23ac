"""Threshold calibration for DSR's hybrid ImageNet pipeline (step (b), ``preresnet_cal_Vth.py`` of the
official code).

Before the validation loop starts, the ANN (a :class:`~lightning_snn.methods.DSR` model with the
``ann_relu`` activation) runs in eval mode over ``num_batches`` batches of the training split (or the
validation split); the outputs of every activation layer (post-activations) are recorded, and the
``percentile`` of each layer's values becomes that layer's threshold (the official code: the 99.9th
percentile, of a random sample of at most ten million values, over five batches). The thresholds are
written to a JSON file that ``DSR(thresholds=...)`` reads in step (c)::

    lightning-snn validate --config configs/dsr/imagenet_preact_resnet18_calibrate.yaml \\
        --ckpt_path runs/dsr/imagenet/ann/checkpoints/last.ckpt

File format (names are relative to the model's ``backbone``; the SNN's neurons carry the same names)::

    {"format": "lightning_snn.dsr_thresholds", "version": 1, "statistic": "percentile",
     "percentile": 99.9, "split": "train", "num_batches": 5, "values_per_layer": {...},
     "max": {...}, "thresholds": {"body.sn1": 3.12, "body.layer1.0.sn1": 2.57, ...}}
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from ..neurons.dsr import ReLUActivation

__all__ = ["ActivationStatistics", "ThresholdCalibration", "calibrate_thresholds"]

FORMAT = "lightning_snn.dsr_thresholds"  # = lightning_snn.methods.dsr.THRESHOLD_FORMAT


class ActivationStatistics:
    """Random sample (at most ``max_samples`` values, as the official ``DataStatus``) and exact maximum
    of the outputs of one layer."""

    def __init__(self, max_samples: int, generator: torch.Generator) -> None:
        self.max_samples = int(max_samples)
        self.generator = generator
        self.pool: list[torch.Tensor] = []
        self.count = 0
        self.seen = 0
        self.max = float("-inf")

    def add(self, values: torch.Tensor) -> None:
        flat = values.detach().flatten().float().cpu()
        if flat.numel() == 0:
            return
        self.max = max(self.max, float(flat.max()))
        self.seen += flat.numel()
        self.pool.append(flat)
        self.count += flat.numel()
        if self.count > self.max_samples:
            self._shrink()

    def _shrink(self) -> None:
        data = torch.cat(self.pool)
        idx = torch.randint(len(data), (self.max_samples,), generator=self.generator)
        self.pool = [data[idx]]
        self.count = self.max_samples

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) of the sample; ``q = 100`` is the exact maximum."""
        if self.seen == 0:
            raise RuntimeError("no values recorded")
        if q >= 100.0:
            return self.max
        data = torch.sort(torch.cat(self.pool))[0]
        index = min(int(q / 100.0 * data.numel()), data.numel() - 1)
        return float(data[index])


def _activation_modules(model: nn.Module, types: tuple[type, ...]) -> list[tuple[str, nn.Module]]:
    root = getattr(model, "backbone", model)
    return [(name, m) for name, m in root.named_modules() if isinstance(m, types)]


@torch.no_grad()
def calibrate_thresholds(
    model: nn.Module,
    batches: Iterable[Any],
    num_batches: int = 5,
    percentile: float = 99.9,
    max_samples: int = 10_000_000,
    seed: int = 0,
    types: tuple[type, ...] = (ReLUActivation, nn.ReLU),
) -> tuple[dict[str, float], dict[str, Any]]:
    """Run ``model`` (eval mode, no grad) over up to ``num_batches`` of ``batches`` and return
    ``({layer: threshold}, {"max": ..., "values_per_layer": ..., "num_batches": ...})``.

    Layers are the modules of ``types`` inside ``model.backbone`` (or ``model``); the threshold of a layer
    is the ``percentile`` of its post-activation values (negative values count as 0, as after a ReLU).
    """
    layers = _activation_modules(model, types)
    if not layers:
        raise ValueError(
            f"threshold calibration: {type(model).__name__} has no activation layers of types "
            f"{[t.__name__ for t in types]} (calibrate the ANN, neuron type ann_relu)"
        )
    g = torch.Generator().manual_seed(seed)
    stats = {name: ActivationStatistics(max_samples, g) for name, _ in layers}
    handles = [m.register_forward_hook(lambda mod, inp, out, _n=name: stats[_n].add(out.clamp_min(0))) for name, m in layers]
    was_training = model.training
    device = next(model.parameters()).device
    used = 0
    model.eval()
    try:
        for batch in batches:
            if used >= num_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
            used += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if used == 0:
        raise ValueError("threshold calibration: the data loader yielded no batches")
    thresholds = {name: s.percentile(percentile) for name, s in stats.items()}
    info = {
        "num_batches": used,
        "max": {name: s.max for name, s in stats.items()},
        "values_per_layer": {name: s.seen for name, s in stats.items()},
    }
    return thresholds, info


class ThresholdCalibration(L.Callback):
    """Calibrate per-layer DSR thresholds from the ANN's post-activations and write the threshold file.

    Runs when a validation loop starts (``lightning-snn validate ... --ckpt_path ann.ckpt``; also at
    every validation of a ``fit``, the sanity check excepted), before any validation batch.

    Args:
        output: threshold file to write (JSON); a relative path is taken relative to the trainer's
            ``default_root_dir``.
        num_batches: batches to record (official: 5).
        percentile: percentile of each layer's post-activations (official: 99.9; 100 = maximum).
        split: ``"train"`` (the training split, with its augmentation) or ``"val"``. The official code
            happens to iterate its validation loader; the paper's recipe calibrates on training data.
        max_samples: values kept per layer (random subsample beyond; official: 1e7).
        seed: seed of the subsampling.
    """

    def __init__(
        self,
        output: str = "thresholds.json",
        num_batches: int = 5,
        percentile: float = 99.9,
        split: Literal["train", "val"] = "train",
        max_samples: int = 10_000_000,
        seed: int = 0,
    ) -> None:
        if num_batches < 1:
            raise ValueError(f"ThresholdCalibration: num_batches must be >= 1, got {num_batches}")
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"ThresholdCalibration: percentile must lie in (0, 100], got {percentile}")
        if split not in ("train", "val"):
            raise ValueError(f"ThresholdCalibration: split must be 'train' or 'val', got {split!r}")
        if max_samples < 1:
            raise ValueError(f"ThresholdCalibration: max_samples must be >= 1, got {max_samples}")
        self.output = output
        self.num_batches = int(num_batches)
        self.percentile = float(percentile)
        self.split = split
        self.max_samples = int(max_samples)
        self.seed = int(seed)
        self.thresholds: dict[str, float] = {}
        self.path: Path | None = None

    def resolve_output(self, trainer: L.Trainer) -> Path:
        path = Path(self.output)
        return path if path.is_absolute() else Path(trainer.default_root_dir) / path

    def _batches(self, trainer: L.Trainer) -> Iterable[Any]:
        dm = trainer.datamodule
        if dm is None:
            raise RuntimeError("ThresholdCalibration needs a LightningDataModule (the CLI's data: section)")
        return dm.train_dataloader() if self.split == "train" else dm.val_dataloader()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        thresholds, info = calibrate_thresholds(
            pl_module, self._batches(trainer), self.num_batches, self.percentile, self.max_samples, self.seed
        )
        names = list(thresholds)
        values = torch.tensor([thresholds[n] for n in names], device=pl_module.device)
        gathered = pl_module.all_gather(values)
        if gathered.dim() == 2:  # DDP: average the per-rank percentiles
            values = gathered.mean(0)
        self.thresholds = {n: float(v) for n, v in zip(names, values.tolist())}
        self.path = self.resolve_output(trainer)
        if trainer.is_global_zero:
            payload = {
                "format": FORMAT,
                "version": 1,
                "statistic": "percentile",
                "percentile": self.percentile,
                "split": self.split,
                "num_batches": info["num_batches"],
                "world_size": trainer.world_size,
                "model": type(pl_module).__name__,
                "backbone": str(dict(getattr(pl_module, "hparams", {})).get("backbone")),
                "values_per_layer": info["values_per_layer"],
                "max": info["max"],
                "thresholds": self.thresholds,
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_text(json.dumps(payload, indent=2) + "\n")
            os.replace(tmp, self.path)
        trainer.strategy.barrier("threshold_calibration")
