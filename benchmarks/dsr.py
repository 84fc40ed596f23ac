"""DSR vs BPTT: training-step time and peak memory of the same pre-activation ResNet-18 at several T.

Both methods train DSR's CIFAR PreAct-ResNet-18 (``preact_resnet18``, 32x32 inputs, 10 classes) with IF
neurons and reset by subtraction, direct encoding and CE on the firing rate of the output spikes:

* ``dsr``: :class:`~lightning_snn.neurons.DSRIFNode` (V_th 6, alpha 0.5, bound 0.01, trainable V_th): the
  backward differentiates the representation mapping, not through time; each neuron saves only the
  representation of its input (one step's worth).
* ``bptt``: :class:`~lightning_snn.neurons.IFNode` (V_th 1, soft reset, rectangular surrogate): surrogate
  gradients through time; each neuron saves its membrane over all T steps.

One training step = neuron reset, forward on ``x.unsqueeze(0).expand(T, ...)``, CE on the mean output over
T, backward, SGD step. The two methods' steps are interleaved (alternating which goes first) so both see the
same machine load. Peak memory comes from one untimed step (``lightning_snn/bench/harness.py``: CUDA max allocated, or
on CPU the profiler's allocation events + tensors alive at the step start), together with the bytes autograd
saved for backward. The figures of interest are ``mem(T=20) / mem(T=5)`` per method and the time ratio
DSR/BPTT.

Run::

    uv run python benchmarks/dsr.py --quick          # CPU, 1-2 minutes -> results/dsr.json
    uv run python benchmarks/dsr.py --device cuda    # -> results/dsr-<gpu>.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_snn.bench.harness import (  # noqa: E402
    backbone_train_step,
    default_result_path,
    describe_device,
    format_bytes,
    format_table,
    load_average,
    measure_step_memory,
    median,
    positive_int,
    resolve_device,
    setup_torch,
    time_call,
    write_results,
)
from lightning_snn.backbones import create_backbone  # noqa: E402
from lightning_snn.neurons import DSRIFNode, IFNode, reset_states  # noqa: E402

BENCHMARK = "dsr"
BACKBONE = "preact_resnet18"
NUM_CLASSES = 10
METHODS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "dsr": (
        lambda: DSRIFNode(v_threshold=6.0, alpha=0.5, v_threshold_bound=0.01),
        "DSRIFNode(V_th 6, alpha 0.5, bound 0.01, trainable V_th), official backward",
    ),
    "bptt": (
        lambda: IFNode(v_threshold=1.0, v_reset=None),
        "IFNode(V_th 1, reset by subtraction, rectangular surrogate width 1), fused multi-step BPTT",
    ),
}


def build_model(method: str, device: torch.device, seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = create_backbone(BACKBONE, num_classes=NUM_CLASSES, in_channels=3, input_size=32, neuron=METHODS[method][0])
    model = model.to(device).train()
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, T: int):
    return backbone_train_step(model, optimizer, x, y, T)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default: cpu)")
    p.add_argument("--quick", action="store_true", help="CPU run of 1-2 minutes: batch 8, one timed step")
    p.add_argument("--batch-size", type=int, default=None, help="default: 64 on GPU, 16 on CPU, 8 with --quick")
    p.add_argument("--steps", type=int, default=None, help="timed steps per T and method (default: 10 GPU, 3 CPU, 1 quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (default: 3 GPU, 1 CPU)")
    p.add_argument("--T", type=positive_int, nargs="+", default=[5, 10, 20], help="time steps (default: 5 10 20)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: number of cores)")
    p.add_argument("--out", type=Path, default=None, help="result JSON (default: benchmarks/results/dsr[-<gpu>].json)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    threads = setup_torch(device, args.threads)
    gpu = device.type == "cuda"
    batch = args.batch_size or (64 if gpu else 8 if args.quick else 16)
    steps = args.steps or (10 if gpu else 1 if args.quick else 3)
    warmup = max(args.warmup if args.warmup is not None else (3 if gpu else 1), 1)
    Ts = sorted(set(args.T))
    print(
        f"dsr: {BACKBONE} DSR vs BPTT on {describe_device(device)} (torch {torch.__version__}, {threads} threads), "
        f"batch {batch}, T {Ts}, {warmup} warm-up + 1 memory + {steps} timed steps each",
        flush=True,
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=g).to(device)
    models = {m: build_model(m, device) for m in METHODS}
    n_params = sum(p.numel() for p in models["bptt"][0].parameters())
    load_start = load_average()
    t_start = time.perf_counter()
    records: list[dict[str, Any]] = []
    for T in Ts:
        stepper = {m: make_step(model, opt, x, y, T) for m, (model, opt) in models.items()}
        for _ in range(warmup):
            for fn in stepper.values():
                fn()
        mem = {}
        for m, (model, opt) in models.items():
            reset_states(model)
            mem[m] = measure_step_memory(stepper[m], model, opt, [x, y], device)
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        order = list(METHODS)
        for i in range(steps):
            for m in order if i % 2 == 0 else order[::-1]:
                times[m].append(time_call(stepper[m], device))
        for m in METHODS:
            records.append({
                "method": m,
                "backbone": BACKBONE,
                "T": T,
                "batch_size": batch,
                "step_time_s": median(times[m]),
                "peak_mem_bytes": mem[m]["peak_mem_bytes"],
                "step_peak_mem_bytes": mem[m]["step_peak_mem_bytes"],
                "saved_tensor_bytes": mem[m]["saved_tensor_bytes"],
                "mem_source": mem[m]["mem_source"],
                "step_times_s": times[m],
                "neuron": METHODS[m][1],
                "params": n_params,
                "optimizer": "SGD(lr=0.01, momentum=0.9)",
                "warmup_steps": warmup,
                "timed_steps": steps,
                "quick": bool(args.quick),
            })
        dsr, bptt = records[-2], records[-1]
        for key, src in (("ratio_vs_bptt", "step_time_s"), ("mem_ratio_vs_bptt", "peak_mem_bytes"),
                         ("step_mem_ratio_vs_bptt", "step_peak_mem_bytes"), ("saved_ratio_vs_bptt", "saved_tensor_bytes")):
            dsr[key] = dsr[src] / bptt[src]
            bptt[key] = 1.0
        print(
            f"  T={T}: dsr {dsr['step_time_s']:.3f}s {format_bytes(dsr['peak_mem_bytes'])}  |  "
            f"bptt {bptt['step_time_s']:.3f}s {format_bytes(bptt['peak_mem_bytes'])}  "
            f"({time.perf_counter() - t_start:.0f}s elapsed)",
            flush=True,
        )
    summary = summarize(records, Ts)
    result: dict[str, Any] = {"device": describe_device(device), "records": records, "summary": summary}
    if not args.no_write:
        path = args.out or default_result_path(BENCHMARK, device)
        result["path"] = str(write_results(
            records, device, path, benchmark=BENCHMARK, quick=bool(args.quick), summary=summary,
            loadavg_start=load_start, loadavg_end=load_average(),
        ))
    print()
    print(render_table(records))
    print(render_summary(summary))
    print(f"load average (1/5/15 min) at start {load_start}, at end {load_average()}")
    if "path" in result:
        print(f"\nwrote {result['path']}")
    return result


def summarize(records: list[dict[str, Any]], Ts: list[int]) -> dict[str, Any]:
    """``mem(T_max) / mem(T_min)`` per method (peak, step peak, saved for backward) and the time ratios."""
    lo, hi = Ts[0], Ts[-1]
    by = {(r["method"], r["T"]): r for r in records}
    out: dict[str, Any] = {"T_low": lo, "T_high": hi}
    for m in METHODS:
        a, b = by[(m, lo)], by[(m, hi)]
        out[m] = {
            f"mem_ratio_T{hi}_T{lo}": b["peak_mem_bytes"] / a["peak_mem_bytes"],
            f"step_mem_ratio_T{hi}_T{lo}": b["step_peak_mem_bytes"] / a["step_peak_mem_bytes"],
            f"saved_ratio_T{hi}_T{lo}": b["saved_tensor_bytes"] / a["saved_tensor_bytes"],
            f"time_ratio_T{hi}_T{lo}": b["step_time_s"] / a["step_time_s"],
        }
    out["time_ratio_dsr_vs_bptt"] = {str(T): by[("dsr", T)]["step_time_s"] / by[("bptt", T)]["step_time_s"] for T in Ts}
    return out


def render_table(records: list[dict[str, Any]]) -> str:
    f3 = lambda v: f"{v:.3f}"  # noqa: E731
    f2 = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    cols = [
        ("method", "method", str),
        ("T", "T", str),
        ("batch_size", "B", str),
        ("step_time_s", "step s", f3),
        ("ratio_vs_bptt", "time/bptt", f2),
        ("peak_mem_bytes", "peak", format_bytes),
        ("step_peak_mem_bytes", "step peak", format_bytes),
        ("saved_tensor_bytes", "saved for bwd", format_bytes),
        ("mem_ratio_vs_bptt", "peak/bptt", f2),
    ]
    return format_table(records, cols) + "\npeak = everything alive at the peak, step peak = increase during the step"


def render_summary(summary: dict[str, Any]) -> str:
    lo, hi = summary["T_low"], summary["T_high"]
    lines = [f"memory growth from T={lo} to T={hi} (1.0 = flat, {hi / lo:.1f} = proportional to T):"]
    for m in METHODS:
        s = summary[m]
        lines.append(
            f"  {m:5s} peak x{s[f'mem_ratio_T{hi}_T{lo}']:.2f}   step peak x{s[f'step_mem_ratio_T{hi}_T{lo}']:.2f}   "
            f"saved for backward x{s[f'saved_ratio_T{hi}_T{lo}']:.2f}   step time x{s[f'time_ratio_T{hi}_T{lo}']:.2f}"
        )
    lines.append("  time dsr/bptt: " + ", ".join(f"T={T}: {v:.2f}" for T, v in summary["time_ratio_dsr_vs_bptt"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
