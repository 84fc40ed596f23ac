"""Accuracy runs of the benchmarks: train a method or a config on the shared real data for some epochs (or
steps) with several seeds, evaluate test accuracy, and summarise the seeds as mean ± sample std.

Two ways to train, one per kind of question:

* :func:`train_and_test`: a plain loop over a DataModule's training loader (forward, the method's
  ``compute_loss``, backward, optimiser step, an optional hook after each step, e.g. an in-place
  requantisation), then top-1 accuracy of ``readout(model(x))`` over its validation loader (the test split
  when ``val_split`` is 0). ``benchmarks/stbp_qat_update.py`` trains with it; ``max_steps`` bounds a run by
  steps, as ``lightning-snn bench --accuracy-steps`` does.
* :func:`fit_config`: a config trained exactly as ``lightning-snn fit --config`` trains it
  (:func:`lightning_snn.cli.build_cli`), with the overrides of :func:`config_overrides` that point it at the
  shared data, seed it and keep it quiet; :class:`EpochRecorder` collects the test and training accuracy
  per epoch and the training-step times. ``benchmarks/real_data.py`` trains with it.

:func:`add_accuracy_args` is the argument parser these scripts share (the counterpart of
:func:`lightning_snn.bench.harness.add_common_args`, whose timing options an accuracy run has no use for),
:func:`result_path` where they write (quick runs never overwrite the full result), and
:func:`shared_data_dir` / :func:`require_shared_data` where the real data is.

Mean ± std over seeds uses the sample standard deviation (n - 1), as ``shared/reference/official_runs.md``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from lightning_snn.bench.harness import default_result_path, measure_step_memory, median, positive_int

__all__ = [
    "SHARED_DATA_ENV", "EpochRecorder", "TrainResult", "add_accuracy_args", "config_overrides", "fit_config",
    "first_batch", "mean_std", "measure_fit_memory", "per_epoch_summary", "require_shared_data",
    "result_path", "rounded", "shared_data_dir", "evaluate_accuracy", "train_and_test",
]

SHARED_DATA_ENV = "LIGHTNING_SNN_SHARED_DATA"


# ------------------------------------------------------------------------------------------ shared data
def shared_data_dir() -> Path:
    """``$LIGHTNING_SNN_SHARED_DATA``, else ``shared/data`` beside the source checkout this package runs from."""
    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def require_shared_data(benchmark: str, root: str | os.PathLike[str], *folders: str) -> Path:
    """``root`` as a Path when every one of ``folders`` is a directory under it; otherwise exit with a
    message naming the benchmark, the missing folders and how to point at the data."""
    root = Path(root)
    missing = [f for f in folders if not (root / f).is_dir()]
    if missing:
        raise SystemExit(
            f"{benchmark}: no {', '.join(missing)} under {root} (the shared real-data folder; pass --data or set "
            f"{SHARED_DATA_ENV} to the folder holding {', '.join(f + '/' for f in folders)})"
        )
    return root


def first_batch(datamodule: L.LightningDataModule, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first training batch of ``datamodule`` (set up for ``fit``), inputs cast to ``dtype`` if given."""
    datamodule.setup("fit")
    x, y = next(iter(datamodule.train_dataloader()))
    return (x if dtype is None else x.to(dtype)), y


# ---------------------------------------------------------------------------------------- arguments
def add_accuracy_args(
    p: argparse.ArgumentParser,
    benchmark: str,
    *,
    seeds: Sequence[int] | None,
    quick_help: str,
    seeds_help: str | None = None,
    data: bool = True,
) -> argparse.ArgumentParser:
    """The options every accuracy / fidelity benchmark shares: --quick, --seeds, --threads (default 1),
    --data (the shared real-data folder; not with ``data=False``), --out and --no-write."""
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--seeds", type=int, nargs="+", default=None if seeds is None else list(seeds),
                   help=seeds_help or f"seeds (default: {' '.join(map(str, seeds or []))})")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch intra-op threads (default 1: the figures are from one thread)")
    if data:
        p.add_argument("--data", type=Path, default=None,
                       help=f"shared real-data folder (default: ${SHARED_DATA_ENV} or ../shared/data)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"result JSON (default: benchmarks/results/{benchmark}.json, {benchmark}_quick.json with --quick)")
    p.add_argument("--no-write", action="store_true", help="print the results only")
    return p


def result_path(args: argparse.Namespace, benchmark: str, device: torch.device | None = None) -> Path:
    """``--out``, else ``results/<benchmark>.json`` (``<benchmark>_quick.json`` for a --quick run, so that a
    quick run never overwrites the full result)."""
    if args.out is not None:
        return Path(args.out)
    return default_result_path(benchmark + ("_quick" if args.quick else ""), device or torch.device("cpu"))


# ---------------------------------------------------------------------------------------- statistics
def mean_std(values: Iterable[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1; None for a single value, nan mean for none)."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def rounded(x: float | None, nd: int = 2) -> float | None:
    """``x`` rounded to ``nd`` digits; None for None or nan (JSON-friendly)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


def per_epoch_summary(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per epoch (as far as every run got), mean ± std over the runs' ``test_acc`` and, where every run has
    it, ``train_acc``: ``[{"epoch", "test_acc_mean", "test_acc_std"[, "train_acc_mean", "train_acc_std"]}]``."""
    epochs = min((len(r["test_acc"]) for r in runs), default=0)
    rows = []
    for e in range(epochs):
        m, s = mean_std(r["test_acc"][e] for r in runs)
        row: dict[str, Any] = {"epoch": e + 1, "test_acc_mean": rounded(m), "test_acc_std": rounded(s)}
        if all(len(r["train_acc"]) > e for r in runs):
            tm, ts = mean_std(r["train_acc"][e] for r in runs)
            row.update(train_acc_mean=rounded(tm), train_acc_std=rounded(ts))
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------- plain loop
@dataclasses.dataclass
class TrainResult:
    """What :func:`train_and_test` reached: ``accuracy`` is a fraction in [0, 1]."""

    steps: int
    final_loss: float
    accuracy: float
    test_samples: int
    train_s: float
    test_s: float


def evaluate_accuracy(model: torch.nn.Module, loader: Iterable[Any]) -> tuple[float, int]:
    """Top-1 accuracy (fraction) of ``model.readout(model(x))`` over ``loader`` in eval mode, and the sample count."""
    model.eval()
    correct = n = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model.readout(model(x)).argmax(-1) == y).sum())
            n += len(y)
    if n == 0:
        raise ValueError("evaluate_accuracy: the test loader yielded no samples")
    return correct / n, n


def train_and_test(
    model: torch.nn.Module,
    datamodule: L.LightningDataModule,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int = 1,
    max_batches: int | None = None,
    max_steps: int | None = None,
    after_step: Callable[[], None] | None = None,
) -> TrainResult:
    """Train ``model`` (a method: ``forward`` and ``compute_loss``) on ``datamodule``'s training loader for
    ``epochs`` epochs (at most ``max_batches`` batches per epoch, at most ``max_steps`` steps in all),
    calling ``after_step()`` after every optimiser step, then test it (:func:`evaluate_accuracy`)."""
    if epochs < 1:
        raise ValueError(f"train_and_test: epochs must be >= 1, got {epochs}")
    datamodule.setup("fit")
    start = time.perf_counter()
    model.train()
    steps, loss = 0, torch.tensor(math.nan)
    for _ in range(epochs):
        for i, (x, y) in enumerate(datamodule.train_dataloader()):
            if (max_batches is not None and i >= max_batches) or (max_steps is not None and steps >= max_steps):
                break
            loss = model.compute_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            steps += 1
        if max_steps is not None and steps >= max_steps:
            break
    train_s = time.perf_counter() - start
    accuracy, n = evaluate_accuracy(model, datamodule.val_dataloader())
    return TrainResult(steps=steps, final_loss=float(loss.detach()), accuracy=accuracy, test_samples=n,
                       train_s=train_s, test_s=time.perf_counter() - start - train_s)


# ------------------------------------------------------------------------------- a config, via the CLI
class EpochRecorder(L.Callback):
    """Test accuracy (%) and loss after every validation epoch, training accuracy (%) and loss per epoch,
    and the time of every training step."""

    def __init__(self) -> None:
        self.test_acc: list[float] = []
        self.test_loss: list[float] = []
        self.train_acc: list[float] = []
        self.train_loss: list[float] = []
        self.step_times: list[float] = []
        self._t0 = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.step_times.append(time.perf_counter() - self._t0)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        self.test_acc.append(100.0 * float(m["val/acc"]))
        self.test_loss.append(float(m["val/loss"]))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = trainer.callback_metrics
        self.train_acc.append(100.0 * float(m["train/acc"]))
        if "train/loss" in m:
            self.train_loss.append(float(m["train/loss"]))


def config_overrides(
    config: str | os.PathLike[str],
    *,
    seed: int,
    epochs: int,
    data_root: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    limits: dict[str, int] | None = None,
) -> list[str]:
    """``lightning-snn fit`` arguments that train ``config`` for ``epochs`` epochs on ``data_root`` with
    ``seed``, on one CPU, quietly: global seed and the DataModule's own sampler seed (it shuffles with its
    own generator), no DataLoader workers, no logger, no checkpointing (the config's ``ModelCheckpoint`` is
    dropped, its other callbacks kept), no sanity check, progress bar or summary, no test after fit.
    ``limits`` adds ``--trainer.<key> <value>`` (e.g. ``limit_train_batches``, ``max_steps``)."""
    cfg = yaml.safe_load(Path(config).read_text())
    callbacks = [cb for cb in (cfg.get("trainer", {}).get("callbacks") or [])
                 if not str(cb.get("class_path", "")).endswith("ModelCheckpoint")]
    args = [
        "--config", str(config),
        "--seed_everything", str(seed),
        "--data.init_args.root", str(data_root),
        "--data.init_args.seed", str(seed),
        "--data.init_args.num_workers", "0",
        "--trainer.max_epochs", str(epochs),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.logger", "false",
        "--trainer.enable_checkpointing", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.callbacks", json.dumps(callbacks),
        "--trainer.default_root_dir", str(Path(work_dir) / "run"),
        "--test_after_fit", "false",
    ]
    for key, value in (limits or {}).items():
        args += [f"--trainer.{key}", str(value)]
    return args


def fit_config(
    args: Sequence[str],
    *,
    callbacks: Callable[[Any], Sequence[L.Callback]] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Build the CLI from ``args`` (see :func:`config_overrides`), fit it with an :class:`EpochRecorder`
    (and ``callbacks(cli)``, which may need the built model or DataModule), and return the CLI and the
    run's figures: ``test_acc`` / ``test_loss`` / ``train_acc`` per epoch, the median ``step_time_s``,
    ``steps``, ``wall_s``, ``lr_final`` and ``meta`` (method, backbone, T, batch size, parameters,
    optimiser, schedulers, train / test samples). Warnings are silenced (they are the config's, not news)."""
    from lightning_snn.cli import build_cli

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = build_cli(list(args), run=False)
        recorder = EpochRecorder()
        cli.trainer.callbacks.append(recorder)
        cli.trainer.callbacks.extend(callbacks(cli) if callbacks is not None else ())
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    wall = time.perf_counter() - start
    hp, optimizer = cli.model.hparams, cli.trainer.optimizers[0]
    return cli, {
        "test_acc": [round(a, 2) for a in recorder.test_acc],
        "test_loss": [round(v, 4) for v in recorder.test_loss],
        "train_acc": [round(a, 2) for a in recorder.train_acc],
        "step_time_s": median(recorder.step_times),
        "steps": len(recorder.step_times),
        "wall_s": round(wall, 1),
        "lr_final": float(optimizer.param_groups[0]["lr"]),
        "meta": {
            "method": type(cli.model).__name__,
            "backbone": hp.get("backbone"),
            "T": int(hp.get("T")),
            "batch_size": int(cli.datamodule.batch_size),
            "parameters": sum(p.numel() for p in cli.model.parameters()),
            "optimizer": type(optimizer).__name__,
            "lr_schedulers": [type(c.scheduler).__name__ for c in cli.trainer.lr_scheduler_configs],
            "train_samples": len(cli.datamodule.train_set),
            "test_samples": len(cli.datamodule.val_set),
        },
    }


def measure_fit_memory(cli: Any) -> dict[str, Any]:
    """Peak memory (:func:`lightning_snn.bench.harness.measure_step_memory`, CPU) of one more training step
    of a fitted CLI's model on its first training batch."""
    model, optimizer = cli.model, cli.trainer.optimizers[0]
    x, y = next(iter(cli.datamodule.train_dataloader()))
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.compute_loss(model(x), y).backward()  # training_step without its logging (no loop is running)
        optimizer.step()

    memory = dict(measure_step_memory(step, model, optimizer, [x, y], torch.device("cpu")))
    if isinstance(getattr(model, "solver_results", None), list):  # IDE: drop the solver report of that step
        model.solver_results.clear()
    return memory
