"""DSR: differentiation on spike representation (Meng et al., CVPR 2022; github.com/qymeng94/DSR).

The method swaps the neuron (ARCHITECTURE.md, mechanism 1): the backbone is built with DSR's IF or
LIF neurons (:mod:`lightning_snn.neurons.dsr`), which simulate the spiking dynamics over T steps in the
forward pass and, in the backward pass, differentiate the sub-differentiable mapping between the spike
representations of their input and output (clamped firing rate / weighted firing rate) instead of
backpropagating through time. The network's output layer is a neuron; its spike train is read out as
the firing rate (IF) or the weighted firing rate (LIF), and the cross-entropy is taken on that.

The same class trains the ANN of the hybrid ImageNet pipeline (``neuron: {type: ann_relu}``, ``T: 1``),
and initialises an SNN from that ANN and a threshold file written by
:class:`~lightning_snn.callbacks.ThresholdCalibration` (``pretrained_ann`` / ``thresholds``)::

    # (a) the ANN -> runs/dsr/imagenet/ann/checkpoints/last.ckpt
    lightning-snn fit --config configs/dsr/imagenet_preact_resnet18_ann.yaml
    # (b) the thresholds -> runs/dsr/imagenet/thresholds.json
    lightning-snn validate --config configs/dsr/imagenet_preact_resnet18_calibrate.yaml \\
        --ckpt_path runs/dsr/imagenet/ann/checkpoints/last.ckpt
    # (c) the SNN from both files
    lightning-snn fit --config configs/dsr/imagenet_preact_resnet18_if.yaml \\
        --model.init_args.pretrained_ann runs/dsr/imagenet/ann/checkpoints/last.ckpt \\
        --model.init_args.thresholds runs/dsr/imagenet/thresholds.json
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..neurons import BaseNode, build_neuron_factory
from ..neurons.dsr import DSRLIFNode, DSRNode, ReLUActivation, representation_weights
from .base import SpikingClassifier
from .warmup import LinearWarmup, checked_warmup_steps

__all__ = ["DSR", "DSR_IF", "DSR_LIF", "THRESHOLD_FORMAT", "load_ann_weights", "load_thresholds", "read_thresholds"]

#: the IF neuron of the official IF commands: ``--Vth 6 --alpha 0.5 --Vth_bound 0.01``
DSR_IF: dict[str, Any] = {"type": "dsr_if", "v_threshold": 6.0, "alpha": 0.5, "v_threshold_bound": 0.01}
#: the LIF neuron of the official LIF commands (the code's defaults): Vth 0.3, alpha 0.3, Vth_bound 0.0005,
#: tau 1, delta_t 0.05
DSR_LIF: dict[str, Any] = {
    "type": "dsr_lif", "v_threshold": 0.3, "alpha": 0.3, "v_threshold_bound": 0.0005, "tau": 1.0, "delta_t": 0.05,
}
#: ``format`` field of the threshold files written by ThresholdCalibration
THRESHOLD_FORMAT = "lightning_snn.dsr_thresholds"

_DSR_TYPES = ("dsr_if", "dsr_lif")
_ANN_TYPES = ("ann_relu",)


class DSR(LinearWarmup, SpikingClassifier):
    """DSR training (``neuron: {type: dsr_if | dsr_lif, ...}``), or the hybrid pipeline's ANN (``ann_relu``).

    Args:
        pretrained_ann: checkpoint of the ANN (Lightning ``.ckpt`` or a plain state dict) whose weights
            initialise the backbone before training; every parameter and buffer except the neurons'
            thresholds must match in name and shape (``ValueError`` naming the file and the first
            mismatched key otherwise).
        thresholds: threshold file of :class:`~lightning_snn.callbacks.ThresholdCalibration`; sets the
            initial ``V_th`` of every neuron (times ``delta_t`` for LIF neurons, as the official code).
        warmup_steps: linear learning-rate warm-up over the first optimiser steps, as the official code
            (``--warmup``: 400 on CIFAR / DVS-CIFAR10, 5000 on ImageNet): the scheduled rate is multiplied
            by ``(step + 1) / warmup_steps``.
        **kwargs: see :class:`SpikingClassifier`. ``neuron`` defaults to :data:`DSR_IF`. ``T`` is the
            number of time steps (the official default is 20; 50 on ImageNet; 1 for the ANN).

    Both files are read in ``setup`` (on every rank, before ``configure_optimizers`` and before a
    ``--ckpt_path`` is restored); a model loaded from a checkpoint of its own never reads them.
    """

    def __init__(
        self,
        *args: Any,
        pretrained_ann: str | None = None,
        thresholds: str | None = None,
        warmup_steps: int = 0,
        **kwargs: Any,
    ) -> None:
        self.warmup_steps = checked_warmup_steps(warmup_steps)
        self.pretrained_ann = pretrained_ann
        self.thresholds = thresholds
        self._initialised = False
        self.is_ann = False
        self._rep: tuple[float | None, float | None] = (None, None)
        super().__init__(*args, **kwargs)
        if isinstance(kwargs.get("backbone", args[0] if args else None), nn.Module):
            self._infer_neuron_kind()
        if self.step_mode != "m":
            raise ValueError("DSR needs step_mode='m': its neurons see the whole spike train at once")
        if self.is_ann:
            if self.T != 1:
                raise ValueError(f"DSR with the ANN activation (neuron type ann_relu) runs at T=1, got T={self.T}")
            if pretrained_ann is not None or thresholds is not None:
                raise ValueError("pretrained_ann / thresholds initialise an SNN; the ANN (ann_relu) takes neither")

    # ---------------------------------------------------------------------------------- the neuron
    def neuron_spec(self, neuron: Mapping[str, Any] | None) -> Any:
        spec = dict(DSR_IF if neuron is None else neuron)
        kind = str(spec.get("type", "")).lower()
        if kind not in _DSR_TYPES + _ANN_TYPES:
            raise ValueError(
                f"DSR: neuron.type must be one of {list(_DSR_TYPES + _ANN_TYPES)} (DSR's IF / LIF neurons, or the "
                f"hybrid pipeline's ANN activation), got {spec.get('type')!r}"
            )
        self.is_ann = kind in _ANN_TYPES
        factory = build_neuron_factory(spec)
        probe = factory()
        self._rep = (probe.tau, probe.delta_t) if isinstance(probe, DSRLIFNode) else (None, None)
        return factory

    def _infer_neuron_kind(self) -> None:
        nodes = [m for m in self.backbone.modules() if isinstance(m, DSRNode)]
        self.is_ann = not nodes and any(isinstance(m, ReLUActivation) for m in self.backbone.modules())
        lif = [m for m in nodes if isinstance(m, DSRLIFNode)]
        self._rep = (lif[-1].tau, lif[-1].delta_t) if lif else (None, None)

    def readout(self, outputs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Spike representation of the output spike train: firing rate (IF, ANN) or weighted rate (LIF)."""
        tau, dt = self._rep
        if tau is None:
            return outputs.mean(0)
        p = representation_weights(outputs.shape[0], tau, dt, device=outputs.device, dtype=torch.float32)
        return torch.tensordot(p.to(outputs.dtype), outputs, dims=1)

    # ------------------------------------------------------------------- hybrid initialisation
    def setup(self, stage: str) -> None:
        self.initialise_from_files()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the checkpoint holds trained weights and thresholds: never overwrite them with the ANN's
        self._initialised = True

    def initialise_from_files(self) -> None:
        """Load ``pretrained_ann`` and ``thresholds`` into the backbone (once)."""
        if self._initialised:
            return
        if self.pretrained_ann is not None:
            load_ann_weights(self.backbone, self.pretrained_ann)
        if self.thresholds is not None:
            load_thresholds(self.backbone, self.thresholds)
        self._initialised = True


# ============================================================================ file loading helpers
def _neuron_state_keys(backbone: nn.Module) -> set[str]:
    keys = set()
    for name, module in backbone.named_modules():
        if isinstance(module, (BaseNode, ReLUActivation)):
            keys.update(f"{name}.{k}" if name else k for k in module.state_dict())
    return keys


def _read_weights(path: str, field: str = "pretrained_ann") -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{field}: checkpoint {path} does not exist (train that stage first)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files, non-allowlisted objects
        raise ValueError(f"{field}: cannot read {path} as a PyTorch checkpoint ({type(err).__name__}: {err})") from err
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{field}: {path} holds neither a Lightning checkpoint nor a state dict of tensors")
    state = dict(obj)
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return state


def load_ann_weights(backbone: nn.Module, path: str, field: str = "pretrained_ann") -> list[str]:
    """Copy the ANN's weights from ``path`` into ``backbone``; returns the loaded keys.

    Every entry of the backbone's state dict except the neurons' own (their thresholds) must be in the
    file with the same shape, and the file must hold nothing else; otherwise ``ValueError`` names the
    file and the first mismatched key.
    """
    state = _read_weights(path, field)
    skip = _neuron_state_keys(backbone)
    target = {k: v for k, v in backbone.state_dict().items() if k not in skip}
    for key, value in target.items():
        if key not in state:
            raise ValueError(
                f"{field}: {path} does not match the SNN backbone: key {key!r} ({tuple(value.shape)}) is missing "
                f"from the checkpoint; was the ANN trained with the same backbone and backbone_kwargs?"
            )
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(
                f"{field}: {path} does not match the SNN backbone: key {key!r} has shape "
                f"{tuple(state[key].shape)} in the checkpoint but {tuple(value.shape)} in the SNN"
            )
    for key in state:
        if key not in target and key not in skip:
            raise ValueError(
                f"{field}: {path} does not match the SNN backbone: the checkpoint has key {key!r}, "
                "which the SNN backbone does not have"
            )
    backbone.load_state_dict({k: state[k] for k in target}, strict=False)
    return list(target)


def read_thresholds(path: str) -> dict[str, float]:
    """The ``{neuron name: threshold}`` mapping of a threshold file (names relative to the backbone)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"thresholds: file {path} does not exist (run the calibration, step (b))")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"thresholds: cannot read {path} as JSON ({err})") from err
    if not isinstance(data, dict) or data.get("format") != THRESHOLD_FORMAT or not isinstance(data.get("thresholds"), dict):
        raise ValueError(f"thresholds: {path} is not a threshold file (expected format {THRESHOLD_FORMAT!r} with a 'thresholds' map)")
    out = {}
    for name, value in data["thresholds"].items():
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"thresholds: {path}: entry {name!r} is {value!r}, expected a finite number >= 0")
        out[name] = float(value)
    return out


def load_thresholds(backbone: nn.Module, path: str) -> dict[str, float]:
    """Set every DSR neuron's ``V_th`` from the threshold file ``path`` (times ``delta_t`` for LIF).

    The file must name exactly the backbone's DSR neurons; otherwise ``ValueError`` names the file and
    the first mismatched neuron. Returns the thresholds set.
    """
    values = read_thresholds(path)
    neurons = {name: m for name, m in backbone.named_modules() if isinstance(m, DSRNode)}
    if not neurons:
        raise ValueError(f"thresholds: the backbone has no DSR neurons to take the thresholds of {path}")
    for name in neurons:
        if name not in values:
            raise ValueError(f"thresholds: {path} does not match the SNN backbone: it has no entry for neuron {name!r}")
    for name in values:
        if name not in neurons:
            raise ValueError(f"thresholds: {path} does not match the SNN backbone: entry {name!r} is not a DSR neuron of it")
    applied = {}
    with torch.no_grad():
        for name, m in neurons.items():
            scale = m.delta_t if m.tau is not None else 1.0
            m.v_threshold.fill_(values[name] * scale)
            m.project_threshold()
            applied[name] = float(m.v_threshold)
    return applied
