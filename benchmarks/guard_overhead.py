"""What :class:`~lightning_snn.callbacks.SpikingGuard` adds to a training step of the quickstart model.

The step is the quickstart's (``configs/quickstart.yaml``): BPTT on ``mnistnet`` with channels [16, 32],
hidden 128, T = 4, the STBP LIF neuron, a batch of 32 real 8x8 digits, Adam. The guarded step calls the
guard's training hooks where Lightning calls them (``on_train_batch_start`` before the forward pass,
``on_before_backward`` with the loss, ``on_before_optimizer_step`` after backward, ``on_train_batch_end``
after the optimizer step), so it runs exactly the guard's per-step work: finiteness of the input batch, the
loss, all gradients (one fused reduction) and all parameters (one more), the divergence bookkeeping, and the
one read of all flags. Guarded and plain steps are interleaved (``benchmarks.common.interleaved_timing``)
so both see the same machine load; the figure is

    ratio = median step time with the guard / median step time without it.

Run::

    uv run python benchmarks/guard_overhead.py --quick            # CPU, well under a minute
    uv run python benchmarks/guard_overhead.py --device cuda      # -> results/guard_overhead-<gpu>.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    add_common_args,
    default_result_path,
    format_table,
    interleaved_timing,
    median,
    resolve_device,
    setup_torch,
    write_results,
)
from lightning_snn.callbacks import SpikingGuard  # noqa: E402
from lightning_snn.data import DigitsDataModule  # noqa: E402
from lightning_snn.methods import BPTT  # noqa: E402

QUICKSTART = dict(
    backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=4,
    backbone_kwargs={"channels": [16, 32], "hidden": 128, "spiking_output": False},
    neuron={"type": "lif", "decay": 0.25, "v_threshold": 0.2, "v_reset": 0.0, "surrogate": {"name": "rectangular", "width": 1.0}},
)


def make_steps(device: torch.device, batch_size: int) -> tuple[dict[str, Any], int]:
    """The plain and the guarded quickstart training step (two models with the same initial weights)."""
    dm = DigitsDataModule(batch_size=batch_size)
    dm.setup()
    x, y = (t[:batch_size].to(device) for t in dm.train_set.tensors)
    batch = (x, y)
    torch.manual_seed(0)
    plain = BPTT(**QUICKSTART).to(device)
    guarded = BPTT(**QUICKSTART).to(device)
    guarded.load_state_dict(plain.state_dict())
    optimizers = {id(m): torch.optim.Adam(m.parameters(), lr=1e-3) for m in (plain, guarded)}
    guard = SpikingGuard()
    trainer = SimpleNamespace(global_step=0, current_epoch=0, precision="32-true", sanity_checking=False,
                              precision_plugin=SimpleNamespace(scaler=None), callbacks=[])
    guard.on_fit_start(trainer, guarded)  # type: ignore[arg-type]

    def step(model: BPTT, with_guard: bool) -> None:
        opt = optimizers[id(model)]
        opt.zero_grad(set_to_none=True)
        if with_guard:
            guard.on_train_batch_start(trainer, model, batch, trainer.global_step)  # type: ignore[arg-type]
        loss = model.compute_loss(model(x), y)
        if with_guard:
            guard.on_before_backward(trainer, model, loss)  # type: ignore[arg-type]
        loss.backward()
        if with_guard:
            guard.on_before_optimizer_step(trainer, model, opt)  # type: ignore[arg-type]
        opt.step()
        if with_guard:
            trainer.global_step += 1
            guard.on_train_batch_end(trainer, model, loss, batch, trainer.global_step - 1)  # type: ignore[arg-type]

    params = sum(p.numel() for p in plain.parameters())
    return {"plain": lambda: step(plain, False), "guarded": lambda: step(guarded, True)}, params


def main(argv: list[str] | None = None) -> None:
    p = add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), "guard_overhead")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    setup_torch(device, args.threads)
    batch_size = args.batch_size or 32
    steps = args.steps or (60 if args.quick else 300)
    warmup = args.warmup if args.warmup is not None else (3 if device.type == "cuda" else 2)
    fns, params = make_steps(device, batch_size)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times, info = interleaved_timing(fns, steps, device, wait_idle_s=args.wait_idle, retries=args.retries,
                                     max_foreign_share=args.max_foreign)
    plain, guarded = median(times["plain"]), median(times["guarded"])
    record = {
        "method": "BPTT", "backbone": "mnistnet (quickstart: channels [16, 32], hidden 128)", "T": 4,
        "batch_size": batch_size, "parameters": params, "timed_steps": steps,
        "step_time_s": guarded, "step_time_plain_s": plain, "ratio_guard_vs_plain": guarded / plain,
        "overhead_s": guarded - plain, "peak_mem_bytes": None, "mem_source": "not measured (time benchmark)", **info,
    }
    print(format_table([record], [
        ("step_time_plain_s", "plain step", lambda v: f"{v * 1e3:.3f} ms"),
        ("step_time_s", "guarded step", lambda v: f"{v * 1e3:.3f} ms"),
        ("ratio_guard_vs_plain", "ratio", lambda v: f"{v:.3f}"),
        ("foreign_cpu_share", "foreign CPU", lambda v: "-" if v is None else f"{v:.0%}"),
    ]))
    if not args.no_write:
        path = write_results([record], device, args.out or default_result_path("guard_overhead", device))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
