"""What :class:`~lightning_snn.callbacks.SpikingGuard` adds to a training step of the quickstart model.

The step is the quickstart's (``configs/quickstart.yaml``): BPTT on ``mnistnet`` with channels [16, 32],
hidden 128, T = 4, the STBP LIF neuron, a batch of 32 real 8x8 digits, Adam. The guarded step calls the
guard's training hooks where Lightning calls them (``on_train_batch_start`` before the forward pass,
``on_before_backward`` with the loss, ``on_before_optimizer_step`` after backward, ``on_train_batch_end``
after the optimizer step), so it runs exactly the guard's per-step work: finiteness of the input batch, the
loss, all gradients (one fused reduction) and all parameters (one more), the divergence bookkeeping, and the
one read of all flags. Guarded and plain steps are interleaved (``lightning_snn.bench.harness.interleaved_timing``)
so both see the same machine load; the figures are

    ratio = median step time with the guard / median step time without it,
    hooks / plain = median time spent inside the guard's hooks per step / median plain step time.

The second is measured inside the guarded steps themselves and stays readable on a loaded machine, where the
noise of the first (two medians of ~50-100 ms steps) can exceed the few percent it is meant to resolve.

Run::

    uv run python benchmarks/guard_overhead.py --quick            # CPU, well under a minute
    uv run python benchmarks/guard_overhead.py --threads 1 --steps 100   # results/guard_overhead.json (README, docs)
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

from lightning_snn.bench.harness import (  # noqa: E402
    add_common_args, default_result_path, format_table, interleaved_timing, median, resolve_device, setup_torch,
    time_call, write_results,
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

    hook_times: list[float] = []

    def hook(fn: Any, *args: Any) -> None:
        hook_times[-1] += time_call(lambda: fn(trainer, *args), device)

    def step(model: BPTT, with_guard: bool) -> None:
        opt = optimizers[id(model)]
        opt.zero_grad(set_to_none=True)
        if with_guard:
            hook_times.append(0.0)
            hook(guard.on_train_batch_start, model, batch, trainer.global_step)
        loss = model.compute_loss(model(x), y)
        if with_guard:
            hook(guard.on_before_backward, model, loss)
        loss.backward()
        if with_guard:
            hook(guard.on_before_optimizer_step, model, opt)
        opt.step()
        if with_guard:
            trainer.global_step += 1
            hook(guard.on_train_batch_end, model, loss, batch, trainer.global_step - 1)

    params = sum(p.numel() for p in plain.parameters())
    return {"plain": lambda: step(plain, False), "guarded": lambda: step(guarded, True), "hook_times": hook_times}, params


def main(argv: list[str] | None = None) -> None:
    p = add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), "guard_overhead")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    setup_torch(device, args.threads)
    batch_size = args.batch_size or 32
    steps = args.steps or (60 if args.quick else 300)
    warmup = args.warmup if args.warmup is not None else (3 if device.type == "cuda" else 2)
    fns, params = make_steps(device, batch_size)
    hook_times = fns.pop("hook_times")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    hook_times.clear()
    times, info = interleaved_timing(fns, steps, device, wait_idle_s=args.wait_idle, retries=args.retries,
                                     max_foreign_share=args.max_foreign)
    plain, guarded = median(times["plain"]), median(times["guarded"])
    in_guard = median(hook_times[-steps:])
    record = {
        "method": "BPTT", "backbone": "mnistnet (quickstart: channels [16, 32], hidden 128)", "T": 4,
        "batch_size": batch_size, "parameters": params, "timed_steps": steps,
        "step_time_s": guarded, "step_time_plain_s": plain, "ratio_guard_vs_plain": guarded / plain,
        "guard_hooks_s": in_guard, "guard_share_of_plain_step": in_guard / plain,
        "peak_mem_bytes": None, "mem_source": "not measured (time benchmark)", **info,
    }
    print(format_table([record], [
        ("step_time_plain_s", "plain step", lambda v: f"{v * 1e3:.3f} ms"),
        ("step_time_s", "guarded step", lambda v: f"{v * 1e3:.3f} ms"),
        ("ratio_guard_vs_plain", "ratio", lambda v: f"{v:.3f}"),
        ("guard_hooks_s", "in guard hooks", lambda v: f"{v * 1e3:.3f} ms"),
        ("guard_share_of_plain_step", "hooks / plain", lambda v: f"{v:.3f}"),
        ("foreign_cpu_share", "foreign CPU", lambda v: "-" if v is None else f"{v:.0%}"),
    ]))
    if not args.no_write:
        path = write_results([record], device, args.out or default_result_path("guard_overhead", device))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
