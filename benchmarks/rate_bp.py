"""Rate-BP vs BPTT: training-step time and peak memory of the CIFAR ResNet-18 for T in {2, 4, 6, 8}.

Both methods train the *same* backbone (``resnet18``, plain BN through time, the Rate-BP repository's LIF:
decay 0.2, θ 1, soft reset, detached reset, sigmoid α 4) on CIFAR-shaped inputs ``[B, 3, 32, 32]`` with
direct encoding and cross-entropy on the mean output over T, one SGD step each:

* ``bptt``: forward over T with autograd, backward through time (``RateBP(rate=False)`` is exactly this);
* ``rate_bp``: :func:`lightning_snn.methods._rate_graph.rate_bp_forward`, i.e. a spike pass over T under
  ``no_grad`` recording rates/eligibilities, then one rate pass and one backward on ``[B, ...]`` tensors.

Targets of the issue (reported, not asserted): Rate-BP peak memory flat in T, ``mem(T=8)/mem(T=2) <= 1.15``,
and at T = 6 a Rate-BP step time ``<= 0.7x`` BPTT's. The two methods' steps are interleaved (alternating
which goes first) so that both see the same machine load; memory is measured on a separate untimed step
(``lightning_snn/bench/harness.py``: CUDA max allocated on GPU; on CPU the profiler's allocation events plus the
bytes alive at step start, and in every case the bytes autograd saved for backward).

What to expect. Rate-BP saves the same bytes for backward at every T (the rate graph is T-free) and skips
the T-fold backward, so its step time is about T spike-pass forwards + one forward/backward at batch B.
Its peak memory is flat in T as long as the rate-graph/backward phase sets the peak. In multi-step mode the
spike pass still holds a few transient ``[T, B, C, H, W]`` tensors per layer (the layers fold T into the
batch, as in the paper's ``m`` mode), so at larger batches the spike pass takes over the peak and it grows
with T; single-step mode keeps only ``[B, ...]`` tensors and stays flat at any batch size.

On a shared CPU, ``--threads 1`` gives much steadier timings than one OpenMP thread per core.

Run::

    uv run python benchmarks/rate_bp.py --quick              # CPU, batch 4, 3 timed steps: one to two minutes
    uv run python benchmarks/rate_bp.py --device cuda        # -> results/rate_bp-<gpu>.json
    uv run python benchmarks/rate_bp.py --step-mode m        # multi-step mode only (default: both modes)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_snn.bench.harness import (  # noqa: E402
    CpuContention,
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
    wait_for_idle_cpu,
    write_results,
)
from lightning_snn.backbones import create_backbone  # noqa: E402
from lightning_snn.methods._rate_graph import RATE_BP_LIF, rate_bp_forward  # noqa: E402
from lightning_snn.neurons import build_neuron_factory, reset_states  # noqa: E402

BENCHMARK = "rate_bp"
BACKBONE = "resnet18"
NUM_CLASSES = 10
TARGET_MEM_RATIO = 1.15  # Rate-BP mem(T=8) / mem(T=2)
TARGET_TIME_RATIO = 0.7  # Rate-BP / BPTT step time at T = 6
# Efficiency claims of the paper (README Fig. 1, methods/rev_rate.md B5): backward memory O(L·T) -> O(L),
# backward time O(L·T) -> O(L); Fig. 4 (ResNet-18, GPU, numbers unverified) shows rate_M time and memory
# roughly constant in T. The forward (spike pass) stays O(T) in time.
PAPER_CLAIM = (
    "README Fig. 1: BPTT backward memory and time O(L*T), Rate-BP O(L); paper Fig. 4 (ResNet-18): Rate-BP (rate_M) "
    "training time and memory roughly constant in T while BPTT grows linearly (exact values unverified)"
)


def build(device: torch.device, step_mode: str, seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = create_backbone(
        BACKBONE, num_classes=NUM_CLASSES, neuron=build_neuron_factory(RATE_BP_LIF), step_mode=step_mode, norm="bn"
    ).to(device)
    model.train()
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def make_step(method: str, model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, T: int):
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        x_seq = x.unsqueeze(0).expand(T, *x.shape)  # direct encoding
        if method == "bptt":
            reset_states(model)
            logits = model(x_seq).mean(0)
        else:
            logits = rate_bp_forward(model, x_seq, grad_scale=1.0 / T).mean(0)
        F.cross_entropy(logits, y).backward()
        opt.step()
        reset_states(model)

    return step


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default: cpu)")
    p.add_argument("--quick", action="store_true", help="CPU run of one to two minutes (idle machine): batch 4, 3 timed steps")
    p.add_argument("--batch-size", type=int, default=None, help="default: 128 on GPU, 8 on CPU, 4 with --quick")
    p.add_argument("--steps", type=int, default=None, help="timed steps per T and method (default: 20 GPU, 5 CPU, 3 quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps per T and method (default: 3 GPU, 1 CPU)")
    p.add_argument("--T", type=positive_int, nargs="+", default=[2, 4, 6, 8], help="time steps (default: 2 4 6 8)")
    p.add_argument(
        "--step-mode", choices=["m", "s"], nargs="+", default=["m", "s"],
        help="multi-step (T loop inside the layers) and/or single-step (T loop outside); default: both",
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: number of cores)")
    p.add_argument("--out", type=Path, default=None, help="result JSON (default: benchmarks/results/rate_bp[-<gpu>].json)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument(
        "--wait-idle", type=float, default=0.0, metavar="SECONDS",
        help="before each T, wait up to SECONDS for the machine to be >= 85%% idle (shared machines; default 0)",
    )
    args = p.parse_args(argv)
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    threads = setup_torch(device, args.threads)
    gpu = device.type == "cuda"
    batch = args.batch_size or (128 if gpu else 4 if args.quick else 8)
    steps = args.steps or (20 if gpu else 3 if args.quick else 5)
    warmup = max(args.warmup if args.warmup is not None else (3 if gpu else 1), 1)
    if steps < 1 or batch < 1:
        raise SystemExit("--steps and --batch-size must be >= 1")
    Ts = sorted(set(args.T))
    modes = list(dict.fromkeys(args.step_mode))
    print(
        f"rate_bp: {BACKBONE} Rate-BP vs BPTT, step modes {modes}, on {describe_device(device)} "
        f"(torch {torch.__version__}, {threads} threads), batch {batch}, T {Ts}, "
        f"{warmup} warm-up + 1 memory + {steps} timed steps each",
        flush=True,
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=g).to(device)

    records: list[dict[str, Any]] = []
    load_start = load_average()
    t_start = time.perf_counter()
    for mode in modes:
        models = {m: build(device, mode) for m in ("bptt", "rate_bp")}
        n_params = sum(p.numel() for p in models["bptt"][0].parameters())
        for T in Ts:
            fns = {m: make_step(m, *models[m], x, y, T) for m in models}
            mems = {}
            for m, fn in fns.items():
                for _ in range(warmup):
                    fn()
                mems[m] = measure_step_memory(fn, models[m][0], models[m][1], [x, y], device)
            if args.wait_idle > 0 and not wait_for_idle_cpu(args.wait_idle):
                print(f"  (machine still busy after waiting {args.wait_idle:.0f}s; timing anyway)", flush=True)
            times: dict[str, list[float]] = {m: [] for m in fns}
            with CpuContention() as contention:
                for i in range(steps):  # interleaved, alternating which method goes first
                    order = list(fns) if i % 2 == 0 else list(fns)[::-1]
                    for m in order:
                        times[m].append(time_call(fns[m], device))
            bptt_t = median(times["bptt"])
            for m in fns:
                t_m = median(times[m])
                records.append({
                    "method": m,
                    "backbone": BACKBONE,
                    "T": T,
                    "batch_size": batch,
                    "step_mode": mode,
                    "step_time_s": t_m,
                    "step_time_min_s": min(times[m]),
                    "ratio_vs_bptt": t_m / bptt_t,
                    "ratio_vs_bptt_min": min(times[m]) / min(times["bptt"]),
                    "peak_mem_bytes": mems[m]["peak_mem_bytes"],
                    "step_peak_mem_bytes": mems[m]["step_peak_mem_bytes"],
                    "saved_tensor_bytes": mems[m]["saved_tensor_bytes"],
                    "mem_ratio_vs_bptt": mems[m]["peak_mem_bytes"] / mems["bptt"]["peak_mem_bytes"],
                    "saved_ratio_vs_bptt": mems[m]["saved_tensor_bytes"] / max(mems["bptt"]["saved_tensor_bytes"], 1),
                    "mem_source": mems[m]["mem_source"],
                    **contention.as_dict(),
                    "step_times_s": times[m],
                    "warmup_steps": warmup,
                    "timed_steps": steps,
                    "neuron": "LIF (Rate-BP: decay 0.2, v_th 1, soft reset, detach_reset, sigmoid alpha 4), torch backend",
                    "norm": "bn (BN through time; per step in single-step mode)",
                    "input": "CIFAR shapes [B, 3, 32, 32], direct encoding",
                    "optimizer": "SGD(lr=0.01, momentum=0.9)",
                    "params": n_params,
                    "quick": bool(args.quick),
                })
            r = records[-1]
            print(
                f"  {mode} T={T}: bptt {bptt_t:.2f}s {format_bytes(mems['bptt']['peak_mem_bytes'])}   "
                f"rate_bp {r['step_time_s']:.2f}s {format_bytes(r['peak_mem_bytes'])}   time ratio "
                f"{r['ratio_vs_bptt']:.2f}  ({time.perf_counter() - t_start:.0f}s elapsed)",
                flush=True,
            )

    summary = summarize(records)
    result: dict[str, Any] = {"device": describe_device(device), "records": records, "summary": summary}
    if not args.no_write:
        path = args.out or default_result_path(BENCHMARK, device)
        result["path"] = str(
            write_results(
                records, device, path, benchmark=BENCHMARK, quick=bool(args.quick), summary=summary,
                paper_claim=PAPER_CLAIM, loadavg_start=load_start, loadavg_end=load_average(),
            )
        )
    print()
    print(render_table(records))
    for k, v in summary.items():
        print(f"{k}: {v}")
    print(f"load average (1/5/15 min) at start {load_start}, at end {load_average()}")
    if "path" in result:
        print(f"\nwrote {result['path']}")
    return result


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per step mode: the two target figures (where the run has the T values) and how T scales both methods."""
    out: dict[str, Any] = {}
    for mode in dict.fromkeys(r["step_mode"] for r in records):
        by = {(r["method"], r["T"]): r for r in records if r["step_mode"] == mode}
        Ts = sorted({T for _, T in by})
        lo, hi = Ts[0], Ts[-1]
        for m in ("rate_bp", "bptt"):
            for key in ("peak_mem_bytes", "saved_tensor_bytes", "step_time_s"):
                a, b = by[(m, lo)][key], by[(m, hi)][key]
                out[f"{mode}/{m}_{key}_T{hi}_over_T{lo}"] = round(b / a, 4) if a else None
        if ("rate_bp", 2) in by and ("rate_bp", 8) in by:
            ratio = by[("rate_bp", 8)]["peak_mem_bytes"] / by[("rate_bp", 2)]["peak_mem_bytes"]
            out[f"{mode}/rate_bp_mem_T8_over_T2"] = round(ratio, 4)
            out[f"{mode}/rate_bp_mem_T8_over_T2_met"] = ratio <= TARGET_MEM_RATIO
        if ("rate_bp", 6) in by:
            ratio = by[("rate_bp", 6)]["ratio_vs_bptt"]
            out[f"{mode}/rate_bp_time_ratio_vs_bptt_T6"] = round(ratio, 4)
            out[f"{mode}/rate_bp_time_ratio_vs_bptt_T6_of_min_times"] = round(by[("rate_bp", 6)]["ratio_vs_bptt_min"], 4)
            out[f"{mode}/rate_bp_time_ratio_vs_bptt_T6_met"] = ratio <= TARGET_TIME_RATIO
    out["target_mem_T8_over_T2"] = TARGET_MEM_RATIO
    out["target_time_ratio_T6"] = TARGET_TIME_RATIO
    return out


def render_table(records: list[dict[str, Any]]) -> str:
    return format_table(
        records,
        [
            ("step_mode", "mode", str),
            ("method", "method", str),
            ("T", "T", str),
            ("step_time_s", "step s", lambda v: f"{v:.3f}"),
            ("ratio_vs_bptt", "t/bptt", lambda v: f"{v:.2f}"),
            ("ratio_vs_bptt_min", "(of mins)", lambda v: f"{v:.2f}"),
            ("peak_mem_bytes", "peak mem", format_bytes),
            ("step_peak_mem_bytes", "step peak", format_bytes),
            ("saved_tensor_bytes", "saved", format_bytes),
            ("mem_ratio_vs_bptt", "mem/bptt", lambda v: f"{v:.2f}"),
            ("foreign_cpu_share", "foreign cpu", lambda v: "-" if v is None else f"{100 * v:.0f}%"),
        ],
    )


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
