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
  :class:`~lightning_snn.callbacks.FiringRateMonitor` measured (no second count); at the start of ``fit``
  those of the :class:`~lightning_snn.callbacks.SpikingSummary` pass, when it ran.

Cost: the finiteness of all gradients (and of all parameters) is one fused reduction,
``torch._foreach_norm(tensors, inf)`` (a max-abs that propagates NaN and never overflows, unlike a 2-norm in
float16), and all flags of a training step are read with one host-device synchronisation, before the
optimizer step. Parameters after a step are checked together with the next step (or at the epoch end, the
next evaluation loop, a checkpoint save and the end of ``fit``), so a failure names the step that caused it.
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

__all__ = ["NonFiniteError", "SpikingGuard", "finite_flags", "named_tensors"]

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


def finite_flags(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One boolean per tensor, True where every entry is finite, from one fused max-abs reduction.

    ``torch._foreach_norm(ts, inf)`` is the per-tensor max |x|: NaN if any entry is NaN, inf if any is inf,
    finite otherwise (no overflow, whatever the dtype). The result stays on the tensors' device (no sync).
    """
    if not tensors:
        return torch.ones(0, dtype=torch.bool)
    ts = [t.detach().abs() if t.is_complex() else t.detach() for t in tensors]
    device = ts[0].device
    if any(t.device != device for t in ts):  # spread over devices: one reduction each
        return torch.stack([torch.isfinite(t).all().to(device) for t in ts])
    ts = [t if t.numel() else t.new_zeros(1) for t in ts]  # an empty tensor is finite (and has no max)
    norms = torch._foreach_norm(ts, math.inf)
    if len({n.dtype for n in norms}) > 1:
        norms = [n.float() for n in norms]
    return torch.stack(norms).isfinite()


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
        self._names: dict[int, str] = {}  # id(parameter) -> name, for gradients found through the optimizer
        # flags of the current training step not yet read: (0-d bool tensor, report) in check order
        self._pending: list[tuple[torch.Tensor, Callable[[], None]]] = []
        self._where = "global step 0"
        self._step_at_batch_start = 0
        self._level: torch.Tensor | None = None  # running level of the loss
        self._reference: torch.Tensor | None = None  # first loss of the run
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
        """Read all pending flags with one synchronisation and report the first failure, in check order."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        device = pending[0][0].device
        flags = torch.stack([f.to(device) for f, _ in pending]).tolist()
        for ok, (_, report) in zip(flags, pending):
            if not ok:
                report()

    def _queue(self, named: list[tuple[str, torch.Tensor]], report: Callable[[str, torch.Tensor], None]) -> None:
        """Queue the finiteness flag of ``named`` tensors; on failure ``report(name, tensor)`` of the first bad one."""
        if not named:
            return
        flags = finite_flags([t for _, t in named])

        def first_failure() -> None:
            for (name, t), ok in zip(named, flags.tolist()):
                if not ok:
                    report(name, t)

        self._pending.append((flags.all(), first_failure))

    def _check_now(self, named: list[tuple[str, torch.Tensor]], report: Callable[[str, torch.Tensor], None]) -> None:
        self._queue(named, report)
        self._flush()

    @staticmethod
    def _precision_hint(trainer: L.Trainer) -> str:
        precision = str(getattr(trainer, "precision", ""))
        if precision in ("16-true", "bf16-true", "16", "bf16"):
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
        self._names = {id(p): n for n, p in pl_module.named_parameters()}
        self._pending = []
        if self.check_finite:
            self._check_now(list(pl_module.named_parameters()),
                            self._bad_parameter("before training", "the start of fit", "was it loaded from a damaged checkpoint?"))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self.active and self.dead_layers):
            return
        from .summary import SpikingSummary

        for cb in trainer.callbacks:  # the fit-start summary ran in on_fit_start: reuse its rates
            if isinstance(cb, SpikingSummary) and cb.summary.get("firing_rates"):
                self._warn_rates(cb.summary["firing_rates"], "at the start of fit (summary pass)", trainer.current_epoch)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if not self.active:
            return
        self._step_at_batch_start = trainer.global_step
        self._where = f"global step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch_idx})"
        if self.check_finite:
            self._queue(list(named_tensors(batch)), self._bad_input("training", self._where))

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if not self.active:
            return
        value = loss.detach().float()
        if self.check_finite:
            where, hint = self._where, self._precision_hint(trainer) or (
                "the inputs were finite: look for a log or division by zero in the loss, or an overflow "
                "(lower the learning rate)")
            self._pending.append((value.isfinite(), lambda: self._fail(where, f"the training loss is {float(value)}", hint)))
        if self.divergence_factor is not None:
            self._track_divergence(value, trainer.current_epoch)

    def _track_divergence(self, value: torch.Tensor, epoch: int) -> None:
        if self._level is None or self._reference is None:
            self._level, self._reference = value.clone(), value.clone()
            return
        self._level, self._reference = self._level.to(value.device), self._reference.to(value.device)
        diverged = value > self.divergence_factor * torch.maximum(self._level, self._reference)
        where, level, reference = self._where, self._level.clone(), self._reference

        def report() -> None:
            if epoch in self._diverged_epochs:
                return
            self._diverged_epochs.add(epoch)
            rank_zero_warn(
                f"SpikingGuard: the training loss diverges at {where}: {float(value):.4g} is more than "
                f"{self.divergence_factor:g}x its running level {float(level):.4g} (first loss {float(reference):.4g}); "
                "lower the learning rate, or add warm-up or gradient clipping (warned once per epoch)"
            )

        # a diverged or non-finite loss does not move the running level
        m = self.divergence_momentum
        self._level = torch.where(diverged | ~value.isfinite(), self._level, m * self._level + (1.0 - m) * value)
        self._pending.append((~diverged, report))

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
            self._queue(list(pl_module.named_parameters()),
                        self._bad_parameter("after the optimizer step", self._where, hint))

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
        if not (self.active and self.dead_layers) or trainer.sanity_checking:
            return
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
        return {"loss_level": float(self._level), "first_loss": float(self._reference)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "loss_level" in state_dict and "first_loss" in state_dict:
            self._level = torch.tensor(float(state_dict["loss_level"]))
            self._reference = torch.tensor(float(state_dict["first_loss"]))
