"""Export of a fake-quantized SNN as integer weights + scales + neuron parameters, and its loader.

An export ``<stem>`` is two files:

``<stem>.safetensors``
    ``<layer>.weight.int`` (int8 codes) and ``<layer>.weight.scale`` (float32; shape ``[]`` per tensor or
    ``[C_out, 1, ...]`` per channel) for every quantized layer, likewise ``<layer>.bias.int`` /
    ``<layer>.bias.scale``; the real weight is ``int / scale``. Every other parameter or buffer of the
    model (BatchNorm, learnable thresholds, ...) is stored as is under its ``state_dict`` name.
``<stem>.json``
    ``format`` (``"lightning-snn-quantized"``), ``version``, ``model`` (the LightningModule's class path
    and constructor arguments), ``quantization`` (bits, per_channel, percentile), ``layers`` (name, kind,
    weight shape, whether the bias is quantized) and ``neurons`` (name, type, ``v_threshold``, leak
    ``decay``, ``input_scale``, ``v_reset`` (null = reset by subtraction), ``detach_reset``) in forward order.

:func:`load_quantized` rebuilds the model from the JSON and the tensors; its outputs equal those of the
fake-quantized model the export was taken from, bit for bit.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as serialize_safetensors
from torch import nn

from ..fileio import write_atomic
from ..neurons import BaseNode
from ..quantization.fake_quant import FakeQuantize, is_quantized, quantize_symmetric, quantized_layers

__all__ = ["export_quantized", "load_quantized", "FORMAT", "VERSION"]

FORMAT = "lightning-snn-quantized"
VERSION = 1


def _paths(stem: str | Path) -> tuple[Path, Path]:
    stem = Path(stem)
    if stem.suffix in (".json", ".safetensors"):
        stem = stem.with_suffix("")
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def _spec_of(module: nn.Module, name: str):
    return next(p for p in module.parametrizations[name] if isinstance(p, FakeQuantize)).spec


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"cannot export constructor argument of type {type(value).__name__}: {value!r}")


def _value(v: Any) -> float:
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


def neuron_table(model: nn.Module) -> list[dict[str, Any]]:
    """Neuron parameters of every spiking layer, in module order."""
    rows = []
    for name, m in model.named_modules():
        if isinstance(m, BaseNode):
            rows.append({
                "name": name,
                "type": type(m).__name__,
                "v_threshold": _value(m.v_threshold),
                "decay": _value(m.decay),  # a learned leak (PLIF) or threshold is written at its current value
                "input_scale": _value(m.input_scale),
                "v_reset": m.v_reset,
                "detach_reset": bool(m.detach_reset),
            })
    return rows


def export_quantized(model: nn.Module, stem: str | Path) -> tuple[Path, Path]:
    """Write the integer export of a fake-quantized :class:`SpikingClassifier`; returns both paths.

    Both files are written with :func:`lightning_snn.fileio.write_atomic`: complete, or not at all, with a
    previous export of the same name left intact. An unwritable place (read-only folder, full disk) raises
    :class:`~lightning_snn.fileio.WriteError` naming the file and the cause.
    """
    layers = list(quantized_layers(model))
    if not layers:
        raise ValueError("export_quantized: the model has no fake-quantized layers; train it with QuantizationAwareTraining")
    hparams = {k: v for k, v in dict(getattr(model, "hparams", {})).items() if not k.startswith("_")}
    if not isinstance(hparams.get("backbone"), str):
        raise ValueError("export_quantized: the model must be built from a registered backbone name (hparams.backbone)")
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if ".parametrizations." not in key:
            tensors[key] = value.detach().contiguous()
    table = []
    spec = None
    for name, m in layers:
        spec = _spec_of(m, "weight")
        w = m.parametrizations.weight.original
        codes, scale = quantize_symmetric(w, spec)
        tensors[f"{name}.weight.int"], tensors[f"{name}.weight.scale"] = codes.contiguous(), scale.contiguous()
        bias_q = is_quantized(m, "bias")
        if bias_q:
            codes, scale = quantize_symmetric(m.parametrizations.bias.original, _spec_of(m, "bias"))
            tensors[f"{name}.bias.int"], tensors[f"{name}.bias.scale"] = codes.contiguous(), scale.contiguous()
        elif getattr(m, "bias", None) is not None:
            tensors[f"{name}.bias"] = m.bias.detach().contiguous()
        kind = next(c.__name__ for c in type(m).__mro__ if c.__module__.startswith("torch.nn.modules"))
        table.append({"name": name, "kind": kind, "weight_shape": list(w.shape), "bias_quantized": bias_q})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"class_path": f"{type(model).__module__}.{type(model).__qualname__}", "init_args": _jsonable(hparams)},
        "quantization": {"bits": spec.bits, "per_channel": spec.per_channel, "percentile": spec.percentile},
        "layers": table,
        "neurons": neuron_table(model),
    }
    st_path, json_path = _paths(stem)
    blob = serialize_safetensors(tensors, metadata={"format": FORMAT, "version": str(VERSION)})
    write_atomic([(st_path, blob), (json_path, json.dumps(meta, indent=2).encode())], "quantized export",
                 "choose a writable folder with free space", make_folders=True)
    return st_path, json_path


def load_quantized(stem: str | Path) -> nn.Module:
    """Rebuild the model of an export (eval mode) with weights ``int / scale``."""
    st_path, json_path = _paths(stem)
    for p in (st_path, json_path):
        if not p.is_file():
            raise FileNotFoundError(f"quantized export incomplete: {p} does not exist")
    try:
        meta = json.loads(json_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{json_path}: not valid JSON ({err})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{json_path}: format {meta.get('format')!r} version {meta.get('version')!r}, expected {FORMAT!r} {VERSION}")
    module_name, _, cls_name = meta["model"]["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), cls_name)
    model = cls(**meta["model"]["init_args"])
    tensors = load_file(str(st_path))
    state = {}
    for row in meta["layers"]:
        name = row["name"]
        for part in ("weight", "bias"):
            if f"{name}.{part}.int" in tensors:
                codes, scale = tensors.pop(f"{name}.{part}.int"), tensors.pop(f"{name}.{part}.scale")
                state[f"{name}.{part}"] = codes.to(torch.float32) / scale
            elif part == "weight":
                raise ValueError(f"{st_path}: missing tensor {name}.weight.int for layer {name}")
    state.update(tensors)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{st_path}: does not match {cls_name}({meta['model']['init_args'].get('backbone')}): "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    rebuilt = neuron_table(model)
    if rebuilt != meta["neurons"]:
        raise ValueError(f"{json_path}: neuron parameters differ from the rebuilt model's (first: {meta['neurons'][:1]} vs {rebuilt[:1]})")
    return model.eval()
