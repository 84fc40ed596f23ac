"""Training-loader throughput of the event DataModules with and without the frame cache, against the
BPTT training step it has to keep up with.

The benchmark writes a CIFAR10-DVS-like dataset of realistic size into a temporary directory: original
AEDAT 2.0 recordings (``tests/fakes.py``'s writer, the format ``CIFAR10DVSDataModule`` reads) of
``--events`` events each (default 100k over 1.3 s on the 128x128 DVS128, the order of a real
CIFAR10-DVS recording), 10 classes. It then measures, with the recipe's training pipeline (T = 10
frames with equal event counts, resized to 48x48, flip + roll augmentation, ``num_workers`` 0, i.e.
everything in the training process):

* ``uncached``: ``CIFAR10DVSDataModule(cache=False)``: every sample read, binned (tonic ``ToFrame``)
  and resized on every access, as an epoch without the cache;
* cache build: the first pass that bins every recording into the cache (samples/s);
* ``cached``: the default ``CIFAR10DVSDataModule``: later epochs read only the verified cache entries;
* one BPTT training step of VGGSNN (backbone ``vggsnn``, input 2x48x48, T = 10, CE on the mean output,
  SGD) at the same batch size: forward, backward, optimiser step.

Loader batches and training steps are interleaved by the harness's timing loop
(:func:`lightning_snn.bench.harness.interleaved_timing`: one training step, then a few loader batches of each
loader, the order rotated every round) so that all see the same machine load; ``loader_samples_per_s`` is
the batch size over the median time per batch. One epoch of each loader is also timed alone before the
first step (``loader_samples_per_s_alone``: the epoch's samples over its time). The figure of merit is

    loader_to_step_ratio = (batch_size / loader samples per s) / step_time_s

with the target, from the issue, that with the cache the loader is never the bottleneck of a CPU
training step: ratio < 0.1 (reported, not asserted).

Run::

    uv run python benchmarks/data_loading.py --quick            # CPU, about a minute (batch 4, 2 steps, 3 recordings a class)
    uv run python benchmarks/data_loading.py                    # CPU, batch 16, 5 steps
    uv run python benchmarks/data_loading.py --device cuda      # -> results/data_loading-<gpu>.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks`, `tests` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_snn.bench.harness import (  # noqa: E402
    add_common_args, default_result_path, describe_device, format_table, interleaved_timing, measure_step_memory,
    median, positive_int, resolve_device, setup_torch, time_call, write_results,
)
from lightning_snn.data import CIFAR10DVSDataModule  # noqa: E402
from lightning_snn.methods import BPTT  # noqa: E402
from lightning_snn.neurons import reset_states  # noqa: E402
from tests.fakes import CIFAR10DVS_CLASSES, make_events, write_aedat2_dvs128  # noqa: E402

BENCHMARK = "data_loading"
T = 10
SIZE = 48
TARGET_RATIO = 0.1
#: the neuron of configs/bptt/cifar10dvs_vggsnn.yaml (Rate-BP's LIF)
NEURON = {"type": "lif", "decay": 0.2, "v_threshold": 1.0, "v_reset": None, "detach_reset": True,
          "surrogate": {"name": "sigmoid", "alpha": 4.0}}


def generate_recordings(root: Path, per_class: int, events: int, seed: int = 0) -> int:
    """``per_class`` AEDAT 2.0 recordings per CIFAR10-DVS class under ``root/CIFAR10DVS``; returns bytes written."""
    rng = np.random.default_rng(seed)
    total = 0
    for name in CIFAR10DVS_CLASSES:
        for i in range(per_class):
            path = write_aedat2_dvs128(root / "CIFAR10DVS" / name / f"cifar10_{name}_{i}.aedat",
                                       make_events(events, 128, 128, 1_300_000, rng))
            total += path.stat().st_size
    return total


def make_datamodule(root: Path, batch_size: int, cache: bool, num_workers: int) -> CIFAR10DVSDataModule:
    """The recipe's pipeline (configs/bptt/cifar10dvs_vggsnn.yaml) on the generated recordings."""
    return CIFAR10DVSDataModule(
        root=str(root), T=T, split_by="number", size=SIZE, flip=0.5, roll=5, batch_size=batch_size,
        num_workers=num_workers, cache=cache, cache_dir=str(root / "cache"), pin_memory=False,
    )


class EndlessLoader:
    """The training loader of a DataModule, restarted at the end of every epoch; ``take(n)`` loads n batches."""

    def __init__(self, dm: CIFAR10DVSDataModule) -> None:
        self.dm = dm
        self.it = iter(dm.train_dataloader())

    def take(self, n: int) -> None:
        for _ in range(n):
            try:
                next(self.it)
            except StopIteration:
                self.it = iter(self.dm.train_dataloader())
                next(self.it)


def build_step(batch_size: int, device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    model = BPTT(backbone="vggsnn", num_classes=10, input_shape=(2, SIZE, SIZE), T=T, neuron=NEURON).to(device)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(batch_size, T, 2, SIZE, SIZE, device=device).mul_(3).floor_()  # event-count-like frames
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = model.compute_loss(model(x), y)  # forward resets the neuron states first
        loss.backward()
        optimizer.step()

    return model, optimizer, x, y, step


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, BENCHMARK, quick_help="CPU run of about a minute: batch 4, 2 timed steps, 3 recordings a class")
    p.add_argument("--per-class", type=positive_int, default=None, help="recordings per class (default: 8, 3 with --quick)")
    p.add_argument("--events", type=positive_int, default=100_000, help="events per recording (default: 100000)")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default: 0, the worst case)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    threads = setup_torch(device, args.threads)
    batch_size = args.batch_size or (4 if args.quick else 16)
    steps = args.steps or (2 if args.quick else 5)
    per_class = args.per_class or (3 if args.quick else 8)
    n = 10 * per_class
    print(f"{describe_device(device)}, {threads} threads; {n} recordings x {args.events} events, "
          f"T={T}, {SIZE}x{SIZE}, batch {batch_size}, {steps} timed steps", flush=True)

    with tempfile.TemporaryDirectory(prefix="lsnn_data_loading_") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        nbytes = generate_recordings(root, per_class, args.events)
        print(f"generated {nbytes / 2**20:.1f} MiB of AEDAT in {time.perf_counter() - start:.1f} s", flush=True)

        uncached = make_datamodule(root, batch_size, cache=False, num_workers=args.num_workers)
        uncached.setup("fit")
        cached = make_datamodule(root, batch_size, cache=True, num_workers=args.num_workers)
        start = time.perf_counter()
        cached.setup("fit")  # bins both splits into the cache (progress bars)
        build_s = time.perf_counter() - start
        n_train = len(cached.train_set)
        n_built = n_train + len(cached.test_set)
        cache_bytes = sum(p.stat().st_size for p in (root / "cache").rglob("*.pt"))

        loaders = {"uncached": EndlessLoader(uncached), "cached": EndlessLoader(cached)}
        for loader in loaders.values():  # warm-up: first batch of each loader
            loader.take(1)
        # one epoch of each loader alone, before any training step
        epoch_batches = max(1, n_train // batch_size)
        isolated = {mode: time_call(lambda: loader.take(epoch_batches), device) / epoch_batches
                    for mode, loader in loaders.items()}

        model, optimizer, x, y, step = build_step(batch_size, device)
        warmup = args.warmup if args.warmup is not None else (3 if device.type == "cuda" else 1)
        for _ in range(warmup):
            step()
        reset_states(model.backbone)
        memory = measure_step_memory(step, model, optimizer, [x, y], device)

        per_call = {"uncached": 2, "cached": max(2, n_train // batch_size)}  # loader batches per training step
        times, contention = interleaved_timing(
            {"step": step, **{mode: (lambda m=mode: loaders[m].take(per_call[m])) for mode in loaders}}, steps, device,
            wait_idle_s=args.wait_idle, retries=args.retries, max_foreign_share=args.max_foreign,
        )

    step_s = median(times["step"])
    records = []
    for mode in ("uncached", "cached"):
        per_batch = median(times[mode]) / per_call[mode]
        sps = batch_size / per_batch
        records.append({
            "method": "bptt",
            "backbone": "vggsnn",
            "dataset": "CIFAR10-DVS (generated AEDAT 2.0)",
            "loader": mode,
            "T": T,
            "input_shape": [2, SIZE, SIZE],
            "batch_size": batch_size,
            "num_workers": args.num_workers,
            "step_time_s": step_s,
            **memory,
            "loader_samples_per_s": sps,
            "loader_time_per_batch_s": per_batch,
            "loader_batches_timed": len(times[mode]) * per_call[mode],
            "loader_samples_per_s_alone": batch_size / isolated[mode],
            "loader_to_step_ratio": per_batch / step_s,
            "target_ratio": TARGET_RATIO,
            "meets_target": per_batch / step_s < TARGET_RATIO,
            **contention,
        })
    extra = {
        "benchmark": BENCHMARK,
        "quick": bool(args.quick),
        "recordings": n,
        "events_per_recording": args.events,
        "aedat_bytes": nbytes,
        "cache_build_s": build_s,
        "cache_build_samples_per_s": n_built / build_s,
        "cache_bytes": cache_bytes,
        "cached_over_uncached_speedup": records[1]["loader_samples_per_s"] / records[0]["loader_samples_per_s"],
        "pipeline": "CIFAR10DVSDataModule: T=10 split_by=number, resize 48x48 (bilinear, antialias), "
                    "flip 0.5 + roll 5, num_workers as recorded",
        "step": "BPTT VGGSNN 2x48x48 T=10, LIF decay 0.2 / V_th 1 / soft reset, CE on mean output, SGD m 0.9",
    }
    return {"records": records, "device": device, "extra": extra}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    records, device, extra = result["records"], result["device"], result["extra"]
    print()
    print(format_table(records, [
        ("loader", "loader", str),
        ("batch_size", "batch", str),
        ("loader_samples_per_s", "samples/s", lambda v: f"{v:.1f}"),
        ("loader_time_per_batch_s", "load/batch s", lambda v: f"{v:.4f}"),
        ("step_time_s", "step s", lambda v: f"{v:.3f}"),
        ("loader_to_step_ratio", "load/step", lambda v: f"{v:.4f}"),
        ("meets_target", f"< {TARGET_RATIO}", str),
    ]))
    print(f"cache build: {extra['cache_build_samples_per_s']:.1f} samples/s; cached loader "
          f"{extra['cached_over_uncached_speedup']:.1f}x the uncached one")
    if not args.no_write:
        path = write_results(records, device, args.out or default_result_path(BENCHMARK, device), **extra)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
