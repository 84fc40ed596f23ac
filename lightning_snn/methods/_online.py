"""What SLTT and OTTT share: the time loop outside the network, one backward pass per time step.

Both methods train a backbone built with temporally cut neurons (:mod:`lightning_snn.neurons.online`,
ARCHITECTURE.md mechanism 1). With the temporal path cut, the gradient of a loss that is a sum of
per-step terms, ``L = Σ_t L_t``, splits into per-step pieces: ``∂L/∂θ = Σ_t ∂L_t/∂θ`` where each piece
only needs the graph of step ``t``. So the batch is fed one step at a time, ``L_t`` is backpropagated
right after step ``t`` and that step's graph is freed: the memory kept for backward is one step's,
whatever T is (SLTT, Sec. 4.2; OTTT, Sec. 4.1). This runs under Lightning's manual optimisation:

* gradient accumulation over the steps, one optimiser step per batch (SLTT; OTTT's variant A), or an
  optimiser step after every time step (OTTT's variant O);
* under DDP, the steps before the last backward pass of a batch run inside ``no_sync()``, so the
  gradients are all-reduced once per update (every step when updating every step);
* learning-rate schedulers are stepped here (interval ``step`` after each update, ``epoch`` at the end
  of the epoch), since Lightning does not step them under manual optimisation.

The per-step loss is the one of both official codes: ``L_t = [(1 - λ)·CE(O_t, y) + λ·MSE(O_t, ŷ)] / T``
with ``ŷ`` the constant ``φ`` (TET's regulariser; SLTT's default) or the one-hot label (OTTT; SLTT's
``-mse_n_reg``). A loss on the mean output over T couples the steps and is refused.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ..neurons import build_neuron_factory, cut_neuron_type, reset_states
from ..neurons.compression import compress_saved_spikes
from .base import SpikingClassifier
from .dsr import load_ann_weights

__all__ = ["OnlineThroughTime"]

MseTarget = Literal["constant", "onehot"]


class OnlineThroughTime(SpikingClassifier):
    """Base of the online methods (module docstring).

    Args:
        tet_lambda: λ, the weight of the MSE term of the per-step loss (both official codes: 0.05).
        mse_target: ``"constant"`` (MSE to ``phi``) or ``"onehot"`` (MSE to the one-hot label).
        phi: the constant target of ``mse_target="constant"`` (SLTT's ``-loss_means``, 1.0).
        pretrained: checkpoint (Lightning ``.ckpt`` or a state dict) whose backbone weights initialise the network
            before training, every key and shape checked (SLTT's ImageNet stage 2: ``-pre_train`` with the T = 1
            stage's weights). Read in ``setup``; a run resumed from its own checkpoint never reads it.
        **kwargs: see :class:`SpikingClassifier`; ``loss`` must be ``"tet"`` (the per-step loss above).
            ``neuron`` is a BPTT neuron spec (``type: lif`` or ``if``); the method swaps in its temporally
            cut twin (``online_lif`` / ``online_if``).
    """

    #: default neuron spec of the method (its official code's neuron)
    default_neuron: Mapping[str, Any]
    #: the method's name in error messages
    method_name = "online method"
    #: whether the optimiser steps after every time step (OTTT's variant O)
    updates_every_step = False

    def __init__(
        self,
        *args: Any,
        loss: Literal["tet"] = "tet",
        tet_lambda: float = 0.05,
        mse_target: MseTarget = "constant",
        phi: float = 1.0,
        pretrained: str | None = None,
        **kwargs: Any,
    ) -> None:
        if loss != "tet":
            raise ValueError(
                f"{self.method_name}: loss must be 'tet' (a per-step loss, backpropagated step by step); "
                f"got {loss!r}: a loss on the mean output over T couples the time steps. Use tet_lambda: 0 "
                "for the plain per-step cross-entropy"
            )
        if mse_target not in ("constant", "onehot"):
            raise ValueError(f"{self.method_name}: mse_target must be 'constant' or 'onehot', got {mse_target!r}")
        if not 0.0 <= tet_lambda <= 1.0:
            raise ValueError(f"{self.method_name}: tet_lambda must lie in [0, 1], got {tet_lambda}")
        self.mse_target: MseTarget = mse_target
        self.phi = float(phi)
        self.pretrained = pretrained
        self._pretrained_loaded = False
        super().__init__(*args, loss=loss, tet_lambda=tet_lambda, **kwargs)
        self.automatic_optimization = False
        self._updates = 0  # optimiser updates so far (the count of step-interval schedulers)

    # ------------------------------------------------------------------------------------ neuron
    def neuron_spec(self, neuron: Mapping[str, Any] | None) -> Any:
        spec = dict(self.default_neuron if neuron is None else neuron)
        spec["type"] = cut_neuron_type(str(spec.get("type", "lif")), self.method_name)
        return build_neuron_factory(spec)

    def setup(self, stage: str) -> None:
        if self.pretrained is not None and not self._pretrained_loaded:
            load_ann_weights(self.backbone, self.pretrained, field="pretrained")
        self._pretrained_loaded = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._pretrained_loaded = True  # the checkpoint's own weights win

    # -------------------------------------------------------------------------------------- loss
    def step_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(1 - λ)·CE(O_t, y) + λ·MSE(O_t, ŷ)`` of one step's output ``[B, K]`` (not yet divided by T).

        ``target`` is ``[B]`` labels or ``[B, K]`` Mixup soft targets; a soft target is its own one-hot goal and
        comes smoothed already (the method's ``label_smoothing`` applies to hard labels only)."""
        soft = target.is_floating_point()
        ce = F.cross_entropy(output, target, label_smoothing=0.0 if soft else self.label_smoothing)
        if self.tet_lambda == 0.0:
            return ce
        if self.mse_target == "onehot":
            goal = target.to(output.dtype) if soft else F.one_hot(target, output.shape[-1]).to(output.dtype)
        else:
            goal = torch.full_like(output, self.phi)
        return (1.0 - self.tet_lambda) * ce + self.tet_lambda * F.mse_loss(output, goal)

    def compute_loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``Σ_t L_t / T`` over the per-step outputs ``[T, B, K]``."""
        return torch.stack([self.step_loss(o, target) for o in outputs]).mean()

    # ----------------------------------------------------------------------------- the time loop
    def backward_steps(self, T: int) -> list[bool]:
        """Which time steps are backpropagated (all; SLTT-K draws K of them)."""
        return [True] * T

    def online_context(self) -> contextlib.AbstractContextManager[Any]:
        """Entered around the time loop of a training batch (OTTT installs its trace hooks here)."""
        return contextlib.nullcontext()

    def begin_step(self, t: int) -> None:
        """Called before the backbone sees step ``t`` of the batch."""

    def run_sequence(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        backward: Callable[[torch.Tensor], None],
        update: Callable[[], None] | None = None,
        grad_sync: Callable[[bool], contextlib.AbstractContextManager[Any]] | None = None,
    ) -> torch.Tensor:
        """Feed batch ``x`` one step at a time, calling ``backward(L_t / T)`` after each backpropagated step.

        ``update`` runs after every backpropagated step when :attr:`updates_every_step` (OTTT-O).
        ``grad_sync(sync)`` wraps each backward call; ``sync`` is False where the gradients need not be
        all-reduced yet. Returns the detached per-step outputs ``[T, B, K]``.
        """
        seq = self.encode(x)
        T = seq.shape[0]
        grad_at = self.backward_steps(T)
        last = max(t for t, g in enumerate(grad_at) if g)
        reset_states(self.backbone)
        outputs = []
        with self.online_context():
            for t in range(T):
                self.begin_step(t)
                if not grad_at[t]:
                    with torch.no_grad():
                        outputs.append(self.backbone(seq[t : t + 1])[0])
                    continue
                with compress_saved_spikes(self.spike_storage):
                    out = self.backbone(seq[t : t + 1])[0]
                loss = self.step_loss(out, y) / T
                sync = self.updates_every_step or t == last
                with grad_sync(sync) if grad_sync is not None else contextlib.nullcontext():
                    backward(loss)
                if self.updates_every_step and update is not None:
                    update()
                outputs.append(out.detach())
        return torch.stack(outputs)

    # --------------------------------------------------------------------------- Lightning steps
    def _grad_sync(self, sync: bool) -> contextlib.AbstractContextManager[Any]:
        model = self.trainer.model
        if not sync and isinstance(model, DistributedDataParallel):
            return model.no_sync()
        return contextlib.nullcontext()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.mixup is not None:
            x, y = self.mixup(x, y, self.current_epoch)
        optimizers = self.optimizers()
        opts = optimizers if isinstance(optimizers, list) else [optimizers]

        def update() -> None:
            for opt in opts:
                opt.step()
                opt.zero_grad()
            self._step_schedulers("step")

        for opt in opts:
            opt.zero_grad()
        outputs = self.run_sequence(x, y, self.manual_backward, update, self._grad_sync)
        if not self.updates_every_step:
            update()
        with torch.no_grad():
            loss = self.compute_loss(outputs, y)
        self.train_acc(self.readout(outputs), y.argmax(-1) if y.is_floating_point() else y)
        self.log("train/loss", loss, prog_bar=True, sync_dist=False)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        self.log("lr", opts[0].param_groups[0]["lr"], on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self._step_schedulers("epoch")

    def _step_schedulers(self, interval: str) -> None:
        """Step the configured schedulers of this ``interval`` at their ``frequency`` (manual optimisation)."""
        trainer = self.trainer
        if interval == "step":
            self._updates += 1
        count = trainer.current_epoch + 1 if interval == "epoch" else self._updates
        for config in trainer.lr_scheduler_configs:
            if config.interval != interval or count % config.frequency != 0:
                continue
            if config.reduce_on_plateau:
                metric = trainer.callback_metrics.get(config.monitor) if config.monitor else None
                if metric is None:
                    if config.strict:
                        raise ValueError(
                            f"{self.method_name}: ReduceLROnPlateau monitors {config.monitor!r}, which was not logged; "
                            f"logged metrics: {sorted(trainer.callback_metrics)}"
                        )
                    continue
                config.scheduler.step(metric)
            else:
                config.scheduler.step()

