"""SLURM preemption: save at a step boundary, requeue, and leave.

With ``SLURMEnvironment(auto_requeue=True)`` (the default when Lightning detects SLURM) and
``#SBATCH --signal=USR1@<seconds>``, SLURM sends ``SIGUSR1`` before the time limit and Lightning's
handler saves ``<default_root_dir>/hpc_ckpt_<n>.ckpt`` and runs ``scontrol requeue <job id>``; the
requeued job finds that checkpoint and resumes from it (``fit`` without ``ckpt_path`` on SLURM).

Lightning saves *inside the signal handler*, wherever the main thread happens to be: in the middle of a
forward pass or between the parameter updates of an optimiser step, so the checkpoint can hold weights of
step ``k + 1`` with the counters of step ``k``; under DDP the processes receive the signal at different
points and enter the checkpoint's collectives out of step. This callback only records the signal, and at
the end of the next training step (all processes agree on it with one boolean all-reduce) runs Lightning's
requeue handler, whose checkpoint is then as consistent as a ``ModelCheckpoint(every_n_train_steps)`` one,
and stops the process (``SystemExit(0)``) instead of training on until SLURM kills the job.
"""
from __future__ import annotations

import signal
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["SlurmRequeue"]


class SlurmRequeue(L.Callback):
    """Defer Lightning's SLURM auto-requeue to the next training-step boundary, then exit.

    Inactive (a no-op) unless the trainer's cluster environment is a ``SLURMEnvironment`` with
    ``auto_requeue=True``.
    """

    def __init__(self) -> None:
        self._signum: int | None = None
        self._requeue_handler: Any = None
        self._requested = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the environment Lightning's own signal connector reads (the strategy holds it only when parallel)
        env = getattr(getattr(trainer, "_accelerator_connector", None), "cluster_environment", None)
        if not (isinstance(env, SLURMEnvironment) and env.auto_requeue and hasattr(signal, "SIGUSR1")):
            return
        self._signum = int(env.requeue_signal or signal.SIGUSR1)
        # Lightning installed its handler (save + requeue) when the fit started; keep it to run later
        self._requeue_handler = signal.getsignal(self._signum)
        signal.signal(self._signum, self._record)

    def _record(self, signum: int, frame: Any) -> None:
        self._requested = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._signum is None:
            return
        if not trainer.strategy.reduce_boolean_decision(self._requested, all=False):
            return
        rank_zero_info(f"SLURM requeue signal {self._signum}: saving at step {trainer.global_step} and requeueing")
        if callable(self._requeue_handler):
            self._requeue_handler(self._signum, None)
        raise SystemExit(0)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._signum is not None:
            signal.signal(self._signum, self._requeue_handler or signal.SIG_DFL)
            self._signum = None
