"""``SpikingGuard``: no non-finite value passes silently; divergence and dead or saturated layers are reported.

A spiking network hides numerical failure well. A NaN input pixel makes the first layer's weight gradient
NaN; after one optimizer step the layer's weights are NaN, ``NaN >= V_th`` is false, so the layer never
fires again and nothing non-finite reaches the loss, which sits at ``ln(K)`` while the run "succeeds" and
saves a checkpoint full of NaN. Likewise a layer that stopped firing (rate 0) or fires at every step (rate
1) passes no information and, through most surrogates, little gradient. The guard turns these into errors
and warnings that name the step, the batch and the tensor at fault.

Checks (all on by default; :class:`SpikingGuard` is added to every method by
:meth:`~lightning_snn.methods.SpikingClassifier.configure_callbacks`):

- training: every floating-point tensor of the input batch, the loss, the gradients (before the optimizer
  step) and the parameters (after it) are finite; otherwise :class:`NonFiniteError` naming the global step,
  the epoch, the batch index and the first input key / parameter at fault. The optimizer step that would
  follow a non-finite input, loss or gradient is never taken;
- a checkpoint whose state dict holds a non-finite tensor is refused (:class:`NonFiniteError` in
  ``on_save_checkpoint``, before anything is written);
- validation / test / predict: non-finite inputs raise naming the batch (an SNN gives a finite, confident
  prediction for a NaN image), and non-finite parameters raise when the loop starts;
- divergence: a warning when the training loss exceeds ``divergence_factor`` times the larger of its running
  level (an exponential moving average) and its first value;
- dead / saturated layers: a warning, once per epoch, naming the neuron layers whose firing rate over the
  validation (or test) epoch is 0 (or 1), with a hint. The rates are the ones
  :class:`~lightning_snn.callbacks.FiringRateMonitor` measured (no second count); not under ``fast_dev_run``
  or the sanity check, whose single batches through an untrained network prove nothing. (The rates of the
  :class:`~lightning_snn.callbacks.SpikingSummary` pass at the start of ``fit`` are printed, not warned about:
  on 16 samples of an untrained network a deep layer is often silent and wakes up in training.)

Cost: the finiteness of all gradients (and of all parameters, and of the input batch) is one fused
reduction each, ``torch._foreach_norm(tensors, 2, dtype=float32)`` (NaN or inf whenever an entry is; see
:func:`fused_norms`), and these norms and the loss of a training step are read with one host-device
synchronisation, before the optimizer step; the divergence bookkeeping is then plain Python on those values.
Parameters after a step are checked together with the next step (or at the epoch end, the next evaluation
loop, a checkpoint save and the end of ``fit``), so a failure names the step that caused it.
Under a ``GradScaler`` (``precision: 16-mixed``) inf gradients are expected and skipped by the scaler, so
gradients are not checked there (inputs, loss and parameters still are).

Switch the guard off with ``enabled=False`` (in a config: ``trainer.callbacks: [{class_path:
lightning_snn.callbacks.SpikingGuard, init_args: {enabled: false}}]``; in Python
``Trainer(callbacks=[SpikingGuard(enabled=False)])``) or everywhere with ``LIGHTNING_SNN_GUARD=0``.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

__all__ = ["NonFiniteError", "SpikingGuard", "fused_norms", "named_tensors"]

#: set to ``0`` / ``false`` to switch the guard off everywhere (the callback's ``enabled`` does it per run)
ENV_SWITCH = "LIGHTNING_SNN_GUARD"

_DEAD_HINT = (
    "a silent layer passes no signal and, through the surrogate, little gradient: check v_threshold (too high "
    "for the input scale?), the initialisation (weight scale, normalisation) and the learning rate (a too-large "
    "step can silence a layer for good)"
)
_SATURATED_HINT = (
    "a layer that fires at every step passes no information: check v_threshold (too low?), the initialisation "
    "(weight scale, normalisation) and the learning rate"
)


class NonFiniteError(RuntimeError):
    """A NaN or inf in an input batch, the loss, a gradient, a parameter or a checkpoint to be saved."""


def named_tensors(obj: Any, prefix: str = "batch") -> Iterator[tuple[str, torch.Tensor]]:
    """The floating-point tensors of a (nested) batch with their access path, e.g. ``batch[0]``, ``batch['x']``."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            yield prefix, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from named_tensors(v, f"{prefix}[{k!r}]")
    elif isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        for i, v in enumerate(obj):
            yield from named_tensors(v, f"{prefix}[{i}]")


def fused_norms(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The 2-norm of every tensor as a 0-d float tensor, from one fused reduction per accumulation dtype.

    A 2-norm is NaN or inf when an entry is, so a finite norm means "all entries finite"; a non-finite one
    means "some entry is non-finite" or, rarely, that the sum of squares overflowed (float32 accumulation:
    entries beyond about 1e19), which :class:`SpikingGuard` confirms with an exact ``isfinite`` before it
    reports. Float16 / bfloat16 tensors accumulate in float32 (no overflow of their squares), float64 in
    float64. No synchronisation: the norms stay on the device. (On the CPU the 2-norm is the fast one:
    ``_foreach_norm`` with ord=inf and per-tensor ``isfinite().all()`` cost about ten times more.)
    """
    out: list[torch.Tensor | None] = [None] * len(tensors)
    with torch.no_grad():
        real = [t.abs() if t.is_complex() else t for t in tensors]
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, t in enumerate(real):
            groups.setdefault((t.device, torch.promote_types(t.dtype, torch.float32)), []).append(i)
        for (_, dtype), idx in groups.items():
            for i, n in zip(idx, torch._foreach_norm([real[i] for i in idx], 2, dtype=dtype)):
                out[i] = n
    return out  # type: ignore[return-value]


def _describe(t: torch.Tensor) -> str:
    t = t.detach()
    nan = int(torch.isnan(t).sum())
    inf = int(torch.isinf(t).sum())
    return f"{nan} NaN and {inf} inf among {t.numel()} values"


def _env_off() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off")


class SpikingGuard(L.Callback):
    """Stops a run at the first non-finite input, loss, gradient or parameter, refuses to save non-finite
    weights, and warns on divergence and on dead or saturated neuron layers (module docstring).

    Args:
        enabled: run the checks (False: do nothing; ``LIGHTNING_SNN_GUARD=0`` switches it off everywhere).
        check_finite: the finiteness checks (inputs, loss, gradients, parameters, checkpoints).
        divergence_factor: warn when the training loss exceeds this factor times the larger of its running
            level and its first value (None: no divergence warning).
        divergence_momentum: momentum of the running level (exponential moving average of the loss).
        dead_layers: warn (once per epoch) about layers whose firing rate over an evaluation epoch is 0 or 1.
    """

    def __init__(
        self,
        enabled: bool = True,
        check_finite: bool = True,
        divergence_factor: float | None = 10.0,
        divergence_momentum: float = 0.9,
        dead_layers: bool = True,
    ) -> None:
        if divergence_factor is not None and not divergence_factor > 1.0:
            raise ValueError(f"SpikingGuard: divergence_factor must be > 1 (or None), got {divergence_factor}")
        if not 0.0 <= divergence_momentum < 1.0:
            raise ValueError(f"SpikingGuard: divergence_momentum must lie in [0, 1), got {divergence_momentum}")
        self.enabled = bool(enabled)
        self.check_finite = bool(check_finite)
        self.divergence_factor = divergence_factor
        self.divergence_momentum = float(divergence_momentum)
        self.dead_layers = bool(dead_layers)
        self._params: list[tuple[str, torch.nn.Parameter]] = []  # the module's named parameters at fit start
        self._names: dict[int, str] = {}  # id(parameter) -> name, for gradients found through the optimizer
        # values of the current training step not read yet (0-d tensors), each group with its handler of the
        # read values; handlers run in queue order, so the first failure reported is the first check's
        self._pending: list[tuple[list[torch.Tensor], Callable[[list[float]], None]]] = []
        self._where = "global step 0"
        self._step_at_batch_start = 0
        self._level: float | None = None  # running level of the loss
        self._reference: float | None = None  # first loss of the run
        self._diverged_epochs: set[int] = set()
        self._rate_warnings: set[tuple[str, str, int]] = set()  # (kind, measured over, epoch) already warned

    @property
    def active(self) -> bool:
        return self.enabled and not _env_off()

    # ------------------------------------------------------------------------------ helpers
    def _fail(self, where: str, what: str, hint: str = "") -> None:
        raise NonFiniteError(f"SpikingGuard: {what} at {where}" + (f"; {hint}" if hint else "")
                             + f" (the guard's off switch: SpikingGuard(enabled=False) or {ENV_SWITCH}=0)")

    def _flush(self) -> None:
        """Read all pending values with one synchronisation and run their handlers in queue order."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        tensors = [t for values, _ in pending for t in values]
        first = tensors[0]
        if any(t.dtype != first.dtype or t.device != first.device for t in tensors):
            tensors = [t.to(first.device, torch.float64) for t in tensors]
        values = torch.stack(tensors).tolist()
        i = 0
        for group, handle in pending:
            handle(values[i:i + len(group)])
            i += len(group)

    def _queue(self, named: list[tuple[str, torch.Tensor]], report: Callable[[str, torch.Tensor], None]) -> None:
        """Queue the fused norms of ``named`` tensors; ``report(name, tensor)`` the first non-finite one."""
        if not named:
            return

        def handle(norms: list[float]) -> None:
            for (name, t), norm in zip(named, norms):
                if not math.isfinite(norm) and not bool(torch.isfinite(t).all()):  # exact: the norm may overflow
                    report(name, t)

        self._pending.append((fused_norms([t for _, t in named]), handle))

    def _check_now(self, named: list[tuple[str, torch.Tensor]], report: Callable[[str, torch.Tensor], None]) -> None:
        self._queue(named, report)
        self._flush()

    @staticmethod
    def _precision_hint(trainer: L.Trainer) -> str:
        precision = str(getattr(trainer, "precision", ""))
        if precision in ("16-true", "bf16-true"):
            return (f"with precision={precision!r} weights, gradients and optimizer state are low-precision floats, "
                    "where e.g. Adam's eps (1e-8) underflows to 0 and its update divides by 0; use '16-mixed' or "
                    "'bf16-mixed'")
        return ""

    def _bad_input(self, stage: str, where: str) -> Callable[[str, torch.Tensor], None]:
        if stage == "training":
            consequence = "one optimizer step on it would make the weights NaN while the loss stays finite"
        else:
            consequence = "an SNN turns a NaN input into silence, not into a NaN output, so its predictions would look valid"

        def report(name: str, t: torch.Tensor) -> None:
            self._fail(where, f"non-finite {stage} input {name} ({_describe(t)})",
                       f"{consequence}; clean or filter the data")

        return report

    def _bad_parameter(self, when: str, where: str, hint: str = "") -> Callable[[str, torch.Tensor], None]:
        def report(name: str, t: torch.Tensor) -> None:
            self._fail(where, f"parameter {name!r} is non-finite {when} ({_describe(t)})", hint)

        return report

    # -------------------------------------------------------------------------- training hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active:
            return
        self._params = list(pl_module.named_parameters())
        self._names = {id(p): n for n, p in self._params}
        self._pending = []
        if self.check_finite:
            self._check_now(self._params,
                            self._bad_parameter("before training", "the start of fit", "was it loaded from a damaged checkpoint?"))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if not self.active:
            return
        self._step_at_batch_start = trainer.global_step
        self._where = f"global step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch_idx})"
        if self.check_finite:
            self._queue(list(named_tensors(batch)), self._bad_input("training", self._where))

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if not self.active or not (self.check_finite or self.divergence_factor is not None):
            return
        where, epoch = self._where, trainer.current_epoch
        hint = self._precision_hint(trainer) or (
            "the inputs were finite: look for a log or division by zero in the loss, or an overflow (lower the "
            "learning rate)")

        def handle(values: list[float]) -> None:
            value = values[0]
            if not math.isfinite(value):
                if self.check_finite:
                    self._fail(where, f"the training loss is {value}", hint)
            elif self.divergence_factor is not None:
                self._track_divergence(value, where, epoch)

        self._pending.append(([loss.detach().float()], handle))

    def _track_divergence(self, value: float, where: str, epoch: int) -> None:
        """Warn when ``value`` exceeds ``divergence_factor`` x max(running level, first loss); a diverged loss
        does not move the running level."""
        if self._level is None or self._reference is None:
            self._level = self._reference = value
            return
        if value > self.divergence_factor * max(self._level, self._reference):
            if epoch not in self._diverged_epochs:
                self._diverged_epochs.add(epoch)
                rank_zero_warn(
                    f"SpikingGuard: the training loss diverges at {where}: {value:.4g} is more than "
                    f"{self.divergence_factor:g}x its running level {self._level:.4g} (first loss {self._reference:.4g}); "
                    "lower the learning rate, or add warm-up or gradient clipping (warned once per epoch)"
                )
            return
        m = self.divergence_momentum
        self._level = m * self._level + (1.0 - m) * value

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if not self.active:
            return
        if self.check_finite and getattr(trainer.precision_plugin, "scaler", None) is None:
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            named = [(self._names.get(id(p), f"<parameter of shape {tuple(p.shape)}>"), p.grad) for p in params]
            where, hint = self._where, self._precision_hint(trainer) or (
                "inputs and loss were finite: the backward pass overflowed (lower the learning rate, clip gradients, "
                "or check a custom surrogate or loss)")

            def report(name: str, t: torch.Tensor) -> None:
                self._fail(where, f"the gradient of {name!r} is non-finite ({_describe(t)})", hint)

            self._queue(named, report)
        self._flush()  # the one synchronisation of the step: nothing non-finite reaches the optimizer

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.active:
            return
        if trainer.global_step == self._step_at_batch_start:
            self._flush()  # no optimizer step in this batch (skipped step, gradient accumulation)
        elif self.check_finite:  # read with the next step's flags, or at the next flush point
            hint = self._precision_hint(trainer) or "its gradient was finite, so the update overflowed: lower the learning rate"
            self._queue(self._params, self._bad_parameter("after the optimizer step", self._where, hint))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.active:
            self._flush()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.active:
            self._flush()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if not (self.active and self.check_finite):
            return
        self._flush()
        state = checkpoint.get("state_dict", {})
        named = [(k, v) for k, v in state.items() if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex())]
        where = f"global step {trainer.global_step} (epoch {trainer.current_epoch})"

        def report(name: str, t: torch.Tensor) -> None:
            self._fail(where, f"refusing to save a checkpoint: state_dict entry {name!r} is non-finite ({_describe(t)})")

        self._check_now(named, report)

    # ------------------------------------------------------------------------ evaluation hooks
    def _eval_start(self, pl_module: L.LightningModule, stage: str) -> None:
        if not (self.active and self.check_finite):
            return
        self._flush()
        self._check_now(list(pl_module.named_parameters()),
                        self._bad_parameter(f"before {stage}", f"the start of {stage}", "the model's outputs would be meaningless"))

    def _eval_batch(self, trainer: L.Trainer, batch: Any, batch_idx: int, dataloader_idx: int, stage: str) -> None:
        if not (self.active and self.check_finite):
            return
        loader = f", dataloader {dataloader_idx}" if dataloader_idx else ""
        where = f"{stage} batch {batch_idx}{loader} (global step {trainer.global_step})"
        self._check_now(list(named_tensors(batch)), self._bad_input(stage, where))

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_start(pl_module, "validation")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_start(pl_module, "test")

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_start(pl_module, "predict")

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, batch, batch_idx, dataloader_idx, "validation")

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, batch, batch_idx, dataloader_idx, "test")

    def on_predict_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, batch, batch_idx, dataloader_idx, "predict")

    # ---------------------------------------------------------------------- dead / saturated layers
    def _warn_rates(self, rates: Mapping[str, float], over: str, epoch: int) -> None:
        """Warn about the layers of ``rates`` at firing rate 0 or 1, once per kind, source (``over``) and epoch."""
        for kind, hit, hint in (("silent (firing rate 0)", 0.0, _DEAD_HINT), ("saturated (firing rate 1)", 1.0, _SATURATED_HINT)):
            layers = [name for name, r in rates.items() if r == hit]
            if not layers or (kind, over, epoch) in self._rate_warnings:
                continue
            self._rate_warnings.add((kind, over, epoch))
            shown = ", ".join(layers[:8]) + (f" and {len(layers) - 8} more" if len(layers) > 8 else "")
            rank_zero_warn(f"SpikingGuard: epoch {epoch}: {len(layers)} of {len(rates)} neuron layers are {kind} "
                           f"{over}: {shown}. {hint[0].upper()}{hint[1:]}")

    def _monitored_rates(self, trainer: L.Trainer, stage: str, over: str) -> None:
        if not (self.active and self.dead_layers) or trainer.sanity_checking or trainer.fast_dev_run:
            return  # the sanity check and fast_dev_run's one batch are smoke tests of untrained networks
        from .firing_rate import FiringRateMonitor

        for cb in trainer.callbacks:  # on_*_end runs after every on_*_epoch_end: the monitor's rates are in
            if isinstance(cb, FiringRateMonitor) and stage in cb.stages and cb.last_rates:
                self._warn_rates(cb.last_rates, over, trainer.current_epoch)
                return

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._monitored_rates(trainer, "val", "over the validation epoch")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._monitored_rates(trainer, "test", "over the test epoch")

    # ------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The divergence baseline (running level and first loss), so a resumed run keeps it."""
        if self._level is None or self._reference is None:
            return {}
        return {"loss_level": self._level, "first_loss": self._reference}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "loss_level" in state_dict and "first_loss" in state_dict:
            self._level = float(state_dict["loss_level"])
            self._reference = float(state_dict["first_loss"])
