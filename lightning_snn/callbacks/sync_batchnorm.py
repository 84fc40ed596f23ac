"""``sync_batchnorm: true`` for spiking networks: a Lightning ``LayerSync`` plugin that knows the time-folded
BatchNorm layers of this library (tdBN and BN through time).

Lightning's default plugin swaps every BatchNorm for ``torch.nn.SyncBatchNorm``, which would drop the folding of
``T`` into the batch and tdBN's ``α·V_th`` scale. :class:`SpikingSyncBatchNorm` converts those layers into
:class:`~lightning_snn.neurons.norm.SyncBatchNormThroughTime` instead (same parameters, same state-dict names)
and every other BatchNorm as Lightning does. Every :class:`~lightning_snn.methods.SpikingClassifier` installs it
by itself when the Trainer has ``sync_batchnorm=True``; pass it in ``trainer.plugins`` to use it elsewhere.
"""
from __future__ import annotations

import torch
from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm
from torch import nn

from ..neurons.norm import BatchNormThroughTime, SyncBatchNormThroughTime

__all__ = ["SpikingSyncBatchNorm"]


class SpikingSyncBatchNorm(TorchSyncBatchNorm):
    """Synchronise BatchNorm statistics across processes, time-folded layers included."""

    def apply(self, model: nn.Module) -> nn.Module:
        if isinstance(model, nn.SyncBatchNorm):  # already synchronised (ours is a subclass)
            return model
        if isinstance(model, BatchNormThroughTime):
            return SyncBatchNormThroughTime.from_local(model)
        if isinstance(model, nn.modules.batchnorm._BatchNorm):
            return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        for name, child in model.named_children():
            converted = self.apply(child)
            if converted is not child:
                model.add_module(name, converted)
        return model

    def revert(self, model: nn.Module) -> nn.Module:
        if isinstance(model, SyncBatchNormThroughTime):
            return model.to_local()
        for name, child in model.named_children():
            converted = self.revert(child)
            if converted is not child:
                model.add_module(name, converted)
        return super().revert(model)
