"""A callback for the subprocess runs of tests/test_cluster.py (`--trainer.callbacks+ tests.cluster_probe.Probe`).

It writes into ``$PROBE_DIR``: ``step`` (the last finished global step, for the test to time a signal),
``rank<global rank>.json`` (the rank layout and, per epoch, the training indices this process was given), and at
the end of training ``weights_rank<global rank>.pt`` (the model's state dict). ``PROBE_SAVE_AT=k`` saves ``step<k>.ckpt`` after
global step k. ``PROBE_STEP_DELAY`` (seconds)
slows every step down so that a signal sent by the test lands in the middle of an epoch.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import lightning as L
import torch


class Probe(L.Callback):
    def __init__(self) -> None:
        self.dir = Path(os.environ["PROBE_DIR"])
        self.delay = float(os.environ.get("PROBE_STEP_DELAY", "0"))
        self.record: dict = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record = {"global_rank": trainer.global_rank, "local_rank": trainer.local_rank, "node_rank": trainer.node_rank,
                       "world_size": trainer.world_size, "env_node_rank": os.environ.get("NODE_RANK"), "epochs": {}}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sampler = trainer.train_dataloader.sampler
        self.record["epochs"][str(trainer.current_epoch)] = sampler.permutation()
        self.record["sampler"] = type(sampler).__name__

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.is_global_zero:
            (self.dir / "step").write_text(str(trainer.global_step))
        if str(trainer.global_step) == os.environ.get("PROBE_SAVE_AT"):  # every process joins the save
            trainer.save_checkpoint(self.dir / f"step{trainer.global_step}.ckpt")
        time.sleep(self.delay)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rank = trainer.global_rank
        (self.dir / f"rank{rank}.json").write_text(json.dumps(self.record))
        torch.save({k: v.detach().cpu() for k, v in pl_module.state_dict().items()}, self.dir / f"weights_rank{rank}.pt")
