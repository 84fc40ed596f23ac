"""IDE vs BPTT on the same feedback SNN: training-step time and peak memory at T = 5, 30, 100.

Both train CIFARNet-F (``ide_cifarnet_f``: 128C3s-256C3-512C3s-1024C3-512C3 with the F128C3u feedback; IF
neurons, V_th 2, reset by subtraction) on 32x32 inputs with cross-entropy on the readout of the last layer's
average firing rate:

* ``ide``: :class:`lightning_snn.methods.IDE`: the simulation runs without an autograd graph, one evaluation
  of the equilibrium map is kept, and the backward pass solves the implicit-differentiation system with
  Broyden (at most 30 iterations). Its memory should not depend on T (the paper's claim: the target here is
  mem(T=100) / mem(T=5) <= 1.1).
* ``bptt``: the same network unrolled over T with surrogate gradients (rectangular window of width 1),
  i.e. the backbone's own ``forward``; every step's activations are kept for backward.

One training step = state reset, forward, CE, backward, SGD step; the two methods' steps are interleaved.
Peak memory comes from one untimed step (``lightning_snn/bench/harness.py``: CUDA max allocated, or on CPU the
profiler's allocation events + tensors alive at the step start), with the bytes autograd saved for backward.
``--quick`` shrinks the channel widths to 1/4 (same depth, same T) so a CPU run takes a couple of minutes.

Run::

    uv run python benchmarks/ide.py --quick          # CPU -> results/ide.json
    uv run python benchmarks/ide.py --device cuda    # full width -> results/ide-<gpu>.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_snn.bench.harness import (  # noqa: E402
    add_common_args,
    default_result_path,
    describe_device,
    format_bytes,
    format_table,
    interleaved_timing,
    load_average,
    make_batch,
    measure_step_memory,
    median,
    positive_int,
    resolve_device,
    setup_torch,
    write_results,
)
from lightning_snn.methods import IDE  # noqa: E402
from lightning_snn.neurons import reset_states  # noqa: E402

BENCHMARK = "ide"
BACKBONE = "ide_cifarnet_f"
FULL_WIDTHS = (128, 256, 512, 1024, 512)
NUM_CLASSES = 10
IF_NEURON = {"type": "if", "v_threshold": 2.0, "v_reset": None, "surrogate": {"name": "rectangular", "width": 1.0}}
METHODS = ("ide", "bptt")


def build(widths: tuple[int, ...], T: int, device: torch.device, seed: int = 0) -> tuple[IDE, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = IDE(backbone=BACKBONE, num_classes=NUM_CLASSES, input_shape=(3, 32, 32), T=T, neuron=IF_NEURON,
                backbone_kwargs={"channels": list(widths)})
    model = model.to(device).train()
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def make_step(method: str, model: IDE, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
              stats: list[int]) -> Callable[[], None]:
    T = model.T

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        if method == "ide":
            logits = model(x)[-1]
        else:
            reset_states(model.backbone)
            logits = model.backbone(x.unsqueeze(0).expand(T, *x.shape))[-1]
        F.cross_entropy(logits, y).backward()
        if model.solver_results:
            stats.extend(r.steps for r in model.solver_results)
            model.solver_results.clear()
        optimizer.step()

    return step


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, BENCHMARK, quick_help="CPU run of a few minutes: widths / 4, batch 4, one timed step")
    p.add_argument("--T", type=positive_int, nargs="+", default=[5, 30, 100], help="time steps (default: 5 30 100)")
    p.add_argument("--width", type=float, default=None, help="channel width multiplier (default: 1, 0.25 with --quick)")
    args = p.parse_args(argv)
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    threads = setup_torch(device, args.threads)
    gpu = device.type == "cuda"
    width = args.width if args.width is not None else (0.25 if args.quick else 1.0)
    widths = tuple(max(1, int(round(c * width))) for c in FULL_WIDTHS)
    batch = args.batch_size or (64 if gpu else 4 if args.quick else 8)
    steps = args.steps or (5 if gpu else 1 if args.quick else 3)
    warmup = max(args.warmup if args.warmup is not None else (2 if gpu else 1), 1)
    Ts = sorted(set(args.T))
    print(f"ide: {BACKBONE} widths {list(widths)}, IDE vs BPTT on {describe_device(device)} (torch {torch.__version__}, "
          f"{threads} threads), batch {batch}, T {Ts}", flush=True)
    x, y = make_batch(batch, (3, 32, 32), NUM_CLASSES, device)
    load_start = load_average()
    t0 = time.perf_counter()
    records: list[dict[str, Any]] = []
    timing_info: dict[str, Any] = {}
    for T in Ts:
        models = {m: build(widths, T, device) for m in METHODS}
        solver_steps: dict[str, list[int]] = {m: [] for m in METHODS}
        stepper = {m: make_step(m, *models[m], x, y, solver_steps[m]) for m in METHODS}
        for _ in range(warmup):
            for fn in stepper.values():
                fn()
        mem = {}
        for m, (model, opt) in models.items():
            reset_states(model)
            mem[m] = measure_step_memory(stepper[m], model, opt, [x, y], device)
        times, info = interleaved_timing(stepper, steps, device, wait_idle_s=args.wait_idle, retries=args.retries,
                                         max_foreign_share=args.max_foreign)
        timing_info[str(T)] = info
        n_params = sum(p.numel() for p in models["ide"][0].parameters())
        for m in METHODS:
            records.append({
                "method": m, "backbone": BACKBONE, "channels": list(widths), "T": T, "batch_size": batch,
                "step_time_s": median(times[m]), "step_times_s": times[m],
                "peak_mem_bytes": mem[m]["peak_mem_bytes"], "step_peak_mem_bytes": mem[m]["step_peak_mem_bytes"],
                "saved_tensor_bytes": mem[m]["saved_tensor_bytes"], "mem_source": mem[m]["mem_source"],
                "solver_steps_mean": (sum(solver_steps[m]) / len(solver_steps[m])) if solver_steps[m] else None,
                "params": n_params, "neuron": "IF, V_th 2, reset by subtraction", "quick": bool(args.quick),
            })
        ide, bptt = records[-2], records[-1]
        ide["ratio_vs_bptt"] = ide["step_time_s"] / bptt["step_time_s"]
        ide["mem_ratio_vs_bptt"] = ide["peak_mem_bytes"] / bptt["peak_mem_bytes"]
        bptt["ratio_vs_bptt"] = bptt["mem_ratio_vs_bptt"] = 1.0
        print(f"  T={T}: ide {ide['step_time_s']:.3f}s {format_bytes(ide['peak_mem_bytes'])} "
              f"(Broyden {ide['solver_steps_mean']} it)  |  bptt {bptt['step_time_s']:.3f}s "
              f"{format_bytes(bptt['peak_mem_bytes'])}  ({time.perf_counter() - t0:.0f}s elapsed)", flush=True)
    summary = summarize(records, Ts)
    result: dict[str, Any] = {"device": describe_device(device), "records": records, "summary": summary}
    if not args.no_write:
        path = args.out or default_result_path(BENCHMARK, device)
        result["path"] = str(write_results(records, device, path, benchmark=BENCHMARK, quick=bool(args.quick),
                                           summary=summary, timing=timing_info, loadavg_start=load_start,
                                           loadavg_end=load_average()))
    print()
    print(format_table(records, [
        ("method", "method", str), ("T", "T", str), ("batch_size", "B", str),
        ("step_time_s", "step s", lambda v: f"{v:.3f}"), ("ratio_vs_bptt", "time/bptt", lambda v: f"{v:.2f}"),
        ("peak_mem_bytes", "peak", format_bytes), ("saved_tensor_bytes", "saved for bwd", format_bytes),
        ("mem_ratio_vs_bptt", "peak/bptt", lambda v: f"{v:.2f}"),
    ]))
    lo, hi = Ts[0], Ts[-1]
    for m in METHODS:
        s = summary[m]
        print(f"  {m:4s} mem(T={hi})/mem(T={lo}) = {s['mem_ratio']:.2f}   saved x{s['saved_ratio']:.2f}   time x{s['time_ratio']:.2f}")
    if "path" in result:
        print(f"\nwrote {result['path']}")
    return result


def summarize(records: list[dict[str, Any]], Ts: list[int]) -> dict[str, Any]:
    """``mem(T_max) / mem(T_min)`` (peak and saved for backward) and the time growth, per method."""
    lo, hi = Ts[0], Ts[-1]
    by = {(r["method"], r["T"]): r for r in records}
    out: dict[str, Any] = {"T_low": lo, "T_high": hi, "target_ide_mem_ratio": 1.1}
    for m in METHODS:
        a, b = by[(m, lo)], by[(m, hi)]
        out[m] = {
            "mem_ratio": b["peak_mem_bytes"] / a["peak_mem_bytes"],
            "saved_ratio": b["saved_tensor_bytes"] / a["saved_tensor_bytes"],
            "time_ratio": b["step_time_s"] / a["step_time_s"],
        }
    out["ide_meets_target"] = out["ide"]["mem_ratio"] <= 1.1
    return out


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
