"""Initialise a model's weights from a checkpoint file, weights only (no optimiser, epoch or scheduler state).

This is what the STBP training-and-compression repository's ``--resume`` does (``main.py``, README-era
``1de278bf`` and HEAD ``8769231b``): ``model.load_state_dict(torch.load('./ckpt/<model>_ckpt.pth')['model'])``
and nothing else that matters: the optimiser is built afresh afterwards with ``--lr``, the loop still runs
``--epochs`` epochs (the saved epoch only shifts their numbering, and no schedule reads it), and the saved
accuracy is assigned to a local variable that nothing reads. With ``-q`` the weights are quantized after
loading, so ``-q --resume --bit 4 --lr 0.01`` fine-tunes the fp32 network under 4-bit QAT. Lightning's
``--ckpt_path`` restores optimiser, epoch and loop state as well, which is a different recipe.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import nn

from ..checkpoint import CheckpointError, load_checkpoint

__all__ = ["load_weights_only", "plain_key", "read_state_dict"]

_PARAMETRIZED = re.compile(r"\.parametrizations\.([^.]+)\.original$")


def plain_key(key: str) -> str:
    """The state-dict key of a tensor without its parametrization (``conv.parametrizations.weight.original``
    -> ``conv.weight``), so that float and fake-quantized (QAT) models exchange weights."""
    return _PARAMETRIZED.sub(r".\1", key)


def read_state_dict(path: str, what: str, missing_hint: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a Lightning checkpoint (its ``state_dict``) or of a plain state dict, read with
    ``weights_only=True``, keyed without parametrizations (:func:`plain_key`). Errors name ``what`` and the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: checkpoint {path} does not exist{missing_hint}")
    try:  # one reader for every checkpoint: weights_only, one sentence naming the file (lightning_snn.checkpoint)
        obj = load_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(f"{what}: {err}") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{what}: {path} holds neither a Lightning checkpoint nor a state dict of tensors")
    return {plain_key(k): v for k, v in obj.items()}


def load_weights_only(module: nn.Module, path: str, what: str = "init_weights") -> list[str]:
    """Copy every parameter and buffer of ``module`` from the checkpoint ``path``; returns the keys set.

    Accepts a Lightning checkpoint (its ``state_dict``) or a plain state dict, read with
    ``weights_only=True``. Keys are matched without parametrizations (:func:`plain_key`), so an fp32
    checkpoint loads into a model already fake-quantized by ``QuantizationAwareTraining`` (the float
    shadow weights receive the values) and vice versa. The two sets of keys must be equal and every shape
    must match; otherwise ``ValueError`` names the file and the first offending key.
    """
    source = read_state_dict(path, what)
    own = module.state_dict()
    target = {plain_key(k): k for k in own}
    for key, full in target.items():
        if key not in source:
            raise ValueError(f"{what}: {path} does not match the model: key {key!r} {tuple(own[full].shape)} is missing "
                             "from the checkpoint (was it trained with the same backbone and backbone_kwargs?)")
        if tuple(source[key].shape) != tuple(own[full].shape):
            raise ValueError(f"{what}: {path} does not match the model: key {key!r} has shape {tuple(source[key].shape)} "
                             f"in the checkpoint but {tuple(own[full].shape)} in the model")
    for key in source:
        if key not in target:
            raise ValueError(f"{what}: {path} does not match the model: the checkpoint has key {key!r}, which the model lacks")
    module.load_state_dict({full: source[key] for key, full in target.items()}, strict=True)
    return list(target)
