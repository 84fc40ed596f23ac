"""Optimiser parameter groups and learning-rate schedules that the published recipes use.

* **Weight-decay exemptions.** Most spiking-network recipes decay only the convolution and linear weights:
  RevSFormer (timm's ``param_groups_weight_decay``: every 1-d parameter and every bias is exempt) and
  Rate-BP (``split_params``: BatchNorm parameters and biases get 0). :func:`weight_decay_groups` splits a
  model's parameters into a decayed and an exempt group by parameter *kind* (:func:`param_kind`); every
  method takes the kinds as ``no_weight_decay: [bias, norm]`` and the CLI builds the config's
  ``optimizer:`` over the two groups.
* **Warm-up, cosine and cool-down.** :class:`TimmCosineLR` is timm's ``CosineLRScheduler`` (the scheduler
  of RevSFormer and most spiking-transformer code) as a ``torch.optim.lr_scheduler.LRScheduler``, so that
  LightningCLI's ``lr_scheduler:`` section selects it and Lightning steps it per epoch or per optimiser step
  (``interval``). timm computes every value; this class only maps Lightning's step counter onto it.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["PARAM_KINDS", "param_kind", "weight_decay_groups", "TimmCosineLR"]

#: the parameter kinds a weight-decay exemption can name.
PARAM_KINDS: tuple[str, ...] = ("bias", "norm", "1d", "weight")
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def param_kind(name: str, module: nn.Module, param: torch.Tensor) -> str:
    """The kind of one parameter: ``norm`` (any parameter of a normalisation layer), ``bias`` (a layer's
    ``bias``), ``1d`` (another parameter with at most one dimension, e.g. a learnable threshold or
    time constant) or ``weight`` (a multi-dimensional weight: convolution, linear, embedding)."""
    if isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower():
        return "norm"
    if name.rsplit(".", 1)[-1] == "bias":
        return "bias"
    return "weight" if param.ndim > 1 else "1d"


def named_param_kinds(model: nn.Module) -> Iterable[tuple[str, nn.Parameter, str]]:
    """``(name, parameter, kind)`` for every parameter of ``model``, each once."""
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        for p_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            name = f"{mod_name}.{p_name}" if mod_name else p_name
            yield name, param, param_kind(name, module, param)


def check_param_kinds(kinds: Sequence[str] | None, field: str = "no_weight_decay") -> tuple[str, ...]:
    """Validate a list of parameter kinds, naming the field and the valid choices."""
    kinds = tuple(str(k) for k in (kinds or ()))
    bad = [k for k in kinds if k not in PARAM_KINDS]
    if bad:
        raise ValueError(f"{field}: unknown parameter kinds {bad}; choose from {list(PARAM_KINDS)}")
    return kinds


def weight_decay_groups(model: nn.Module, exempt: Sequence[str]) -> list[dict[str, Any]]:
    """Two optimiser parameter groups: the parameters whose kind is not in ``exempt`` (decayed with the
    optimiser's ``weight_decay``) and those whose kind is (``weight_decay: 0``). Frozen parameters are left
    out, as timm's ``param_groups_weight_decay`` does. ``exempt=("bias", "norm", "1d")`` is timm's rule."""
    exempt = check_param_kinds(exempt)
    decay, no_decay = [], []
    for _, param, kind in named_param_kinds(model):
        if param.requires_grad:
            (no_decay if kind in exempt else decay).append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


class TimmCosineLR(LRScheduler):
    """timm's cosine schedule with linear warm-up and a constant cool-down, as a torch ``LRScheduler``.

    The learning rate at step ``t`` (an epoch, or an optimiser step with ``interval: step``) is timm's
    ``CosineLRScheduler._get_lr(t)`` (Loshchilov & Hutter, "SGDR", ICLR 2017, Eq. 5, with timm's warm-up):

    * ``t < warmup_t``: ``warmup_lr_init + t · (lr - warmup_lr_init) / warmup_t``;
    * then ``lr_min + (lr - lr_min) · (1 + cos(π · t / t_initial)) / 2`` (with ``warmup_prefix`` the cosine
      starts after the warm-up, ``t - warmup_t``);
    * ``t >= t_initial`` (one cycle): ``lr_min``. Training for ``max_epochs > t_initial`` epochs therefore
      cools down at ``lr_min``: RevSFormer's 300 cosine epochs + 10 cool-down epochs are ``t_initial: 300``
      with ``max_epochs: 310`` (timm's ``create_scheduler`` does the same with ``cooldown_epochs``).

    Args:
        optimizer: the optimiser (LightningCLI passes it).
        t_initial: length of the cosine, in epochs (or steps with ``interval: step``).
        lr_min: the floor of the cosine and the cool-down learning rate.
        warmup_t: warm-up length; 0 disables.
        warmup_lr_init: the learning rate at the first warm-up step.
        warmup_prefix: start the cosine after the warm-up instead of counting the warm-up in it.
        cycle_mul, cycle_decay, cycle_limit, k_decay: timm's restart and decay arguments.
        interval: ``epoch`` (Lightning steps the schedule after every epoch) or ``step`` (after every
            optimiser step).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        t_initial: int,
        lr_min: float = 0.0,
        warmup_t: int = 0,
        warmup_lr_init: float = 0.0,
        warmup_prefix: bool = False,
        cycle_mul: float = 1.0,
        cycle_decay: float = 1.0,
        cycle_limit: int = 1,
        k_decay: float = 1.0,
        interval: Literal["epoch", "step"] = "epoch",
        last_epoch: int = -1,
    ) -> None:
        from timm.scheduler import CosineLRScheduler

        if t_initial < 1:
            raise ValueError(f"TimmCosineLR: t_initial must be >= 1, got {t_initial}")
        if warmup_t < 0:
            raise ValueError(f"TimmCosineLR: warmup_t must be >= 0, got {warmup_t}")
        if interval not in ("epoch", "step"):
            raise ValueError(f"TimmCosineLR: interval must be 'epoch' or 'step', got {interval!r}")
        self.interval = interval
        for group in optimizer.param_groups:  # the base learning rates timm reads
            group.setdefault("initial_lr", group["lr"])
        self.timm = CosineLRScheduler(
            optimizer,
            t_initial=t_initial,
            lr_min=lr_min,
            cycle_mul=cycle_mul,
            cycle_decay=cycle_decay,
            cycle_limit=cycle_limit,
            warmup_t=warmup_t,
            warmup_lr_init=warmup_lr_init,
            warmup_prefix=warmup_prefix,
            t_in_epochs=interval == "epoch",
            k_decay=k_decay,
            initialize=True,
        )
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [float(v) for v in self.timm._get_lr(self.last_epoch)]

    def state_dict(self) -> dict[str, Any]:
        # timm's scheduler holds the optimiser; its values are recomputed from last_epoch, so keep ours only
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "timm")}
