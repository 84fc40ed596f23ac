"""``SpikingClassifier``: what every training method shares.

Encoding of the input into a time-major tensor, the readout, loss, torchmetrics top-1/top-5 accuracy,
neuron state reset before every batch, logging, and a fallback optimiser for use outside the CLI
(``lightning-snn fit`` replaces it with the config's ``optimizer:`` / ``lr_scheduler:`` sections).
A method subclass changes how gradients flow (ARCHITECTURE.md) by overriding :meth:`neuron_spec`,
:meth:`build_backbone` or :meth:`forward`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ..backbones import create_backbone
from ..neurons import STBP_LIF, build_neuron_factory, reset_states
from ..neurons.compression import SpikeStorage, check_spike_storage, compress_saved_spikes
from ..optim import check_param_kinds, weight_decay_groups
from .mixup import SpikingMixup

__all__ = ["SpikingClassifier", "direct_encoding", "poisson_encoding", "tet_loss"]


def direct_encoding(x: torch.Tensor, T: int) -> torch.Tensor:
    """Direct (real-valued) input coding: the same image at every step, ``[B, ...] -> [T, B, ...]``."""
    return x.unsqueeze(0).expand(T, *x.shape)


def poisson_encoding(x: torch.Tensor, T: int) -> torch.Tensor:
    """Rate coding: a Bernoulli spike with probability equal to the intensity, per step.

    The input must be intensities in [0, 1]; anything else raises (values are never clipped).
    """
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"poisson encoding needs intensities in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
            "turn off input normalisation in the DataModule or use encoding='direct'"
        )
    return (torch.rand((T, *x.shape), device=x.device, dtype=x.dtype) < x.unsqueeze(0)).to(x.dtype)


def tet_loss(outputs: torch.Tensor, target: torch.Tensor, lamb: float = 1e-3, phi: float = 1.0, label_smoothing: float = 0.0) -> torch.Tensor:
    """Temporal efficient training loss (Deng et al., ICLR 2022, Eq. 8 and 10).

    ``L = 1/T Σ_t [(1 - λ)·CE(O_t, y) + λ·MSE(O_t, φ)]`` on the per-step outputs ``O_t`` ([T, B, K]).
    ``target`` is ``[B]`` class labels or ``[B, K]`` class probabilities (Mixup / CutMix soft targets).
    """
    T = outputs.shape[0]
    flat = outputs.flatten(0, 1)
    ce = F.cross_entropy(flat, target.repeat(T, *([1] * (target.dim() - 1))), label_smoothing=label_smoothing)
    if lamb == 0.0:
        return ce
    mse = F.mse_loss(flat, torch.full_like(flat, phi))
    return (1.0 - lamb) * ce + lamb * mse


class SpikingClassifier(L.LightningModule):
    """Base LightningModule of all methods: a backbone from the registry trained as a classifier.

    Args:
        backbone: registered backbone name (``lightning_snn.backbones.list_backbones()``), or a module.
        num_classes: number of classes (linked from the DataModule by the CLI).
        input_shape: ``(C, H, W)`` of one frame (linked from the DataModule by the CLI).
        T: number of simulation time steps for static images (event data bring their own T).
        neuron: neuron spec dict, e.g. ``{type: lif, decay: 0.25, v_threshold: 0.2}``; None: STBP's LIF.
        backbone_kwargs: extra arguments of the backbone constructor.
        encoding: ``"direct"`` (the image at every step) or ``"poisson"`` (rate coding of [0,1] inputs).
        loss: ``"ce"`` on the mean output over T (frequency decoding) or ``"tet"``.
        tet_lambda: λ of the TET loss (MSE regulariser weight).
        label_smoothing: cross-entropy label smoothing.
        step_mode: ``"m"`` (time loop inside layers) or ``"s"`` (time loop outside).
        spike_storage: how the spike trains that weight layers save for backward are stored during
            training: ``"float"`` (as computed), ``"bool"`` (1 byte per spike) or ``"bits"`` (1 bit per
            spike). Lossless: the gradients are identical; the saved activations shrink and compression
            costs a little time (:mod:`lightning_snn.neurons.compression`). No effect where no spike train
            is saved (Rate-BP's rate pass, IDE).
        classifier_classes: width of the classifier (outputs per step) when it must differ from the label
            count ``num_classes``; None (default) uses ``num_classes``. Must be at least ``num_classes``. The
            extra outputs are ordinary logits that no label names (cross-entropy and top-k accuracy run
            over all of them). This reproduces code that trains a dataset with fewer classes on a wider
            head, e.g. RevSNN's CIFAR-10 ResNets (``num_classes=100`` by default, never overridden):
            ``--model.init_args.classifier_classes 100``. (``num_classes`` itself is linked from the
            DataModule by the CLI, so it cannot be overridden on the command line.)
        no_weight_decay: parameter kinds exempt from the optimiser's weight decay
            (:func:`lightning_snn.optim.weight_decay_groups`): ``bias``, ``norm`` (normalisation layers),
            ``1d`` (other one-dimensional parameters: thresholds, time constants), ``weight``. E.g.
            ``[bias, norm]`` decays only convolution and linear weights (Rate-BP's ``split_params``);
            ``[bias, norm, 1d]`` is timm's rule (RevSFormer). Applies to the CLI's ``optimizer:`` section
            and to the fallback optimiser.
        mixup: Mixup / CutMix of training batches with soft targets, as timm's ``Mixup`` arguments plus
            ``off_epoch`` (:class:`lightning_snn.methods.mixup.SpikingMixup`), e.g.
            ``{mixup_alpha: 0.5, prob: 1.0, label_smoothing: 0.1, off_epoch: 200}``; None: no mixing.
            Training accuracy is then measured against each soft target's dominant label.
        time_readout: how :meth:`readout` reduces the per-step outputs ``[T, B, K]`` to the logits of the
            ``ce`` loss and of the accuracy: ``mean`` (frequency decoding, the default), ``sum`` (sparch's
            readout, whose cross-entropy takes the sum over T of the per-step softmax of a leaky integrator)
            or ``max`` (the maximum over T of a membrane readout, as in Cramer et al. 2020's SHD networks).
        t_train: train on ``t_train`` of the ``T`` frames of each event batch, a random subset in time order
            drawn afresh for every training batch and shared by its samples; evaluation, prediction and any
            forward in eval mode use all ``T`` frames (:meth:`select_train_frames`). SEW ResNet's
            ``--T_train`` (Fang et al. 2021, ``dvsgesture/train.py``). None (default): all frames. Needs
            event data ``[B, T, C, H, W]``; must lie in ``[1, T]`` (checked when fitting starts).
    """

    def __init__(
        self,
        backbone: str | nn.Module = "mnistnet",
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        T: int = 4,
        neuron: dict[str, Any] | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        encoding: Literal["direct", "poisson"] = "direct",
        loss: Literal["ce", "tet"] = "ce",
        tet_lambda: float = 1e-3,
        label_smoothing: float = 0.0,
        step_mode: Literal["m", "s"] = "m",
        spike_storage: SpikeStorage = "float",
        classifier_classes: int | None = None,
        no_weight_decay: Sequence[str] | None = None,
        mixup: dict[str, Any] | None = None,
        time_readout: Literal["mean", "sum", "max"] = "mean",
        t_train: int | None = None,
    ) -> None:
        super().__init__()
        if T < 1:
            raise ValueError(f"T (time steps) must be >= 1, got {T}")
        if t_train is not None and (isinstance(t_train, bool) or not isinstance(t_train, int) or t_train < 1):
            raise ValueError(f"t_train (training frames per event batch) must be an integer >= 1 or None, got {t_train!r}")
        if encoding not in ("direct", "poisson"):
            raise ValueError(f"encoding must be 'direct' or 'poisson', got {encoding!r}")
        if loss not in ("ce", "tet"):
            raise ValueError(f"loss must be 'ce' or 'tet', got {loss!r}")
        if time_readout not in ("mean", "sum", "max"):
            raise ValueError(f"time_readout must be 'mean', 'sum' or 'max', got {time_readout!r}")
        if len(tuple(input_shape)) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
        if classifier_classes is not None:
            if classifier_classes < num_classes:
                raise ValueError(
                    f"classifier_classes ({classifier_classes}) must be >= num_classes ({num_classes}), the number "
                    "of labels of the data"
                )
            num_classes = int(classifier_classes)
        self.save_hyperparameters(ignore=["backbone"] if isinstance(backbone, nn.Module) else None)
        self.num_classes = num_classes
        self.input_shape = tuple(int(s) for s in input_shape)
        self.T = T
        self.encoding = encoding
        self.loss_kind = loss
        self.time_readout = time_readout
        self.t_train = t_train
        self.tet_lambda = tet_lambda
        self.label_smoothing = label_smoothing
        self.step_mode = step_mode
        self.spike_storage = check_spike_storage(spike_storage)
        self.no_weight_decay = check_param_kinds(no_weight_decay)
        self.mixup = SpikingMixup.from_spec(mixup, num_classes)
        if isinstance(backbone, nn.Module):
            self.backbone = backbone
        else:
            self.backbone = self.build_backbone(backbone, neuron, dict(backbone_kwargs or {}))
        top5 = min(5, num_classes)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_top5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc_top5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")

    # ----------------------------------------------------------------- construction hooks (methods)
    def neuron_spec(self, neuron: Mapping[str, Any] | None) -> Any:
        """The neuron factory handed to the backbone. Methods that swap the neuron override this."""
        return build_neuron_factory(neuron, default=STBP_LIF)

    def build_backbone(self, name: str, neuron: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> nn.Module:
        c, h, w = self.input_shape
        kwargs.setdefault("in_channels", c)
        kwargs.setdefault("input_size", (h, w))
        return create_backbone(
            name, num_classes=self.num_classes, neuron=self.neuron_spec(neuron), step_mode=self.step_mode, **kwargs
        )

    # ------------------------------------------------------------------------------ forward pass
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Turn a batch into the time-major ``[T, B, ...]`` tensor the backbone expects.

        Static images ``[B, C, H, W]`` are encoded over ``T`` steps; event frames ``[B, T, C, H, W]``
        are transposed once, and in training mode cut to ``t_train`` frames when it is set
        (:meth:`select_train_frames`).
        """
        if x.dim() == 4:
            self._check_frame(tuple(x.shape[1:]), x.shape)
            if self.t_train is not None:
                raise ValueError(
                    f"t_train={self.t_train} selects frames of event batches [B, T, C, H, W], but got static images of "
                    f"shape {tuple(x.shape)}; set model.init_args.t_train to null (or T to the steps wanted)"
                )
            return direct_encoding(x, self.T) if self.encoding == "direct" else poisson_encoding(x, self.T)
        if x.dim() == 5:
            self._check_frame(tuple(x.shape[2:]), x.shape)
            if x.shape[1] != self.T:
                raise ValueError(
                    f"event batch of shape {tuple(x.shape)} has T={x.shape[1]} frames but the model was built with "
                    f"T={self.T}; set model.init_args.T to the DataModule's T"
                )
            seq = x.transpose(0, 1)
            return self.select_train_frames(seq) if self.training else seq
        raise ValueError(f"expected images [B, C, H, W] or event frames [B, T, C, H, W], got a batch of shape {tuple(x.shape)}")

    def select_train_frames(self, seq: torch.Tensor) -> torch.Tensor:
        """``t_train`` of the ``T`` steps of a time-major event batch ``[T, B, ...]``, in time order.

        SEW ResNet's training-time frame subset (Fang et al., NeurIPS 2021; ``train_one_epoch`` of
        ``dvsgesture/train.py``): ``T_train`` distinct indices drawn uniformly from ``range(T)`` without
        replacement, sorted, one draw per batch applied to every sample (``image[:, sec_list]``). The draw
        uses torch's global CPU generator, so ``seed_everything`` and exact resume cover it.
        """
        if self.t_train is None:
            return seq
        T = seq.shape[0]
        self._check_t_train(T)
        idx = torch.randperm(T)[: self.t_train].sort().values
        return seq.index_select(0, idx.to(seq.device))

    def _check_t_train(self, T: int | None = None) -> None:
        """``t_train`` may not exceed the frames there are (the model's ``T``, or those of the batch at hand).

        Checked when fitting starts and on every training batch, not when the model is built: a checkpoint trained
        with ``t_train`` may be evaluated at a smaller ``T`` (an evaluation setting), never fitted so."""
        T = self.T if T is None else T
        if self.t_train is not None and self.t_train > T:
            raise ValueError(
                f"t_train={self.t_train} (training frames per event batch) exceeds the T={T} frames there are; set "
                "model.init_args.t_train to at most model.init_args.T"
            )

    def on_fit_start(self) -> None:
        self._check_t_train()

    def _check_frame(self, frame: tuple[int, ...], shape: torch.Size) -> None:
        if frame != self.input_shape:
            raise ValueError(
                f"batch of shape {tuple(shape)} does not match the model's input_shape {self.input_shape} (C, H, W); "
                "set model.input_shape (the CLI links it from the DataModule)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step outputs ``[T, B, num_classes]`` for a batch (state is reset first)."""
        reset_states(self.backbone)
        with compress_saved_spikes(self.spike_storage):
            return self.backbone(self.encode(x))

    def readout(self, outputs: torch.Tensor) -> torch.Tensor:
        """The logits of ``[T, B, K]`` outputs: their mean over time (frequency decoding), or their sum or
        maximum over time, as ``time_readout`` says."""
        if self.time_readout == "sum":
            return outputs.sum(0)
        if self.time_readout == "max":
            return outputs.amax(0)
        return outputs.mean(0)

    def compute_loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on the readout (or TET) against ``[B]`` labels or ``[B, K]`` soft targets; the
        method's ``label_smoothing`` applies to hard labels (soft targets come smoothed by Mixup)."""
        smoothing = 0.0 if target.is_floating_point() else self.label_smoothing
        if self.loss_kind == "tet":
            return tet_loss(outputs, target, self.tet_lambda, label_smoothing=smoothing)
        return F.cross_entropy(self.readout(outputs), target, label_smoothing=smoothing)

    # --------------------------------------------------------------------------- Lightning steps
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.mixup is not None:
            x, y = self.mixup(x, y, self.current_epoch)
        outputs = self(x)
        loss = self.compute_loss(outputs, y)
        self.train_acc(self.readout(outputs).detach(), y.argmax(-1) if y.is_floating_point() else y)
        self.log("train/loss", loss, prog_bar=True, sync_dist=False)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        if self._trainer is not None and self.trainer.optimizers:
            self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, batch: Any, stage: str) -> None:
        x, y = batch
        outputs = self(x)
        logits = self.readout(outputs)
        loss = self.compute_loss(outputs, y)
        top1, top5 = (self.val_acc, self.val_acc_top5) if stage == "val" else (self.test_acc, self.test_acc_top5)
        top1(logits, y)
        top5(logits, y)
        self.log(f"{stage}/loss", loss, sync_dist=True)
        self.log(f"{stage}/acc", top1, prog_bar=True)
        self.log(f"{stage}/acc_top5", top5)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.readout(self(x)).softmax(-1)

    def configure_model(self) -> None:
        """With ``Trainer(sync_batchnorm=True)``, synchronise the time-folded BatchNorm layers (tdBN, BN
        through time) with :class:`~lightning_snn.callbacks.SpikingSyncBatchNorm` instead of Lightning's
        plain ``SyncBatchNorm`` swap, which would drop the folding of T and tdBN's α·V_th scale."""
        from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm

        from ..callbacks import SpikingSyncBatchNorm

        strategy = self._trainer.strategy if self._trainer is not None else None
        # the strategy applies its LayerSync plugin right after this hook (Trainer._run -> strategy.setup)
        if type(getattr(strategy, "_layer_sync", None)) is TorchSyncBatchNorm:
            strategy._layer_sync = SpikingSyncBatchNorm()

    def configure_callbacks(self) -> list[L.Callback]:
        """The callbacks every method runs with, unless the trainer already lists one of the type:
        :class:`~lightning_snn.callbacks.FiringRateMonitor`, :class:`~lightning_snn.callbacks.SpikingSummary`,
        :class:`~lightning_snn.callbacks.SpikingGuard` (switch the summary and the guard off with an instance
        ``enabled=False`` under ``trainer.callbacks``), :class:`~lightning_snn.callbacks.RandomStateCheckpoint`
        (exact resume) and :class:`~lightning_snn.callbacks.SlurmRequeue` (SLURM preemption)."""
        from ..callbacks import FiringRateMonitor, RandomStateCheckpoint, SlurmRequeue, SpikingGuard, SpikingSummary

        # a callback returned here replaces trainer callbacks of the same type: add only the missing ones
        present = self._trainer.callbacks if self._trainer is not None else []
        defaults = (FiringRateMonitor, SpikingSummary, SpikingGuard, RandomStateCheckpoint, SlurmRequeue)
        return [cb() for cb in defaults if not any(isinstance(c, cb) for c in present)]

    def configure_optimizers(self) -> Any:
        """Fallback for use outside the CLI (Adam, lr 1e-3, as the STBP repository).

        ``lightning-snn`` replaces this with the config's ``optimizer:`` and ``lr_scheduler:`` sections.
        """
        return torch.optim.Adam(self.optimizer_param_groups() or self.parameters(), lr=1e-3)

    def optimizer_param_groups(self) -> list[dict[str, Any]] | None:
        """The parameter groups the optimiser is built over: with ``no_weight_decay`` a decayed and an
        exempt group (:func:`lightning_snn.optim.weight_decay_groups`); None: all parameters alike."""
        if not self.no_weight_decay:
            return None
        return weight_decay_groups(self, self.no_weight_decay)
