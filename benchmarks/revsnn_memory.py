"""RevSNN: peak training memory and step time of reversible spiking backbones vs their non-reversible twins.

For each family (RevSResNet, RevSFormer), depth (number of reversible blocks) and T, the benchmark builds
the reversible backbone and its twin (``reversible=False``: the same modules and weights, trained with
ordinary autograd through every block) and runs identical BPTT training steps on both: neuron reset,
direct encoding of a random batch over T steps, cross-entropy on the mean output over T, backward, SGD
step (momentum 0.9, as RevSResNet's recipe).

Sizes: ``--width`` scales every channel count (1 = published widths; ``--quick``: 1/4 for RevSResNet, 1/8
for RevSFormer, so that a ResNet step is not dominated by per-operation overhead) and the batch defaults
to the official training batch (32 for RevSResNet, 64 for RevSFormer) times the width, because
activations grow with width x batch and parameters with width^2: the activation / model-state balance,
and with it the memory ratios, then stay those of the official setting at full width (a check at width
1/2 gave the same ratios within 0.03). Inputs are 3x32x32 (CIFAR), 10 classes. ``--quick`` also runs
on one thread, which on a shared 2-core machine gives far steadier timings than two.

Depths:
* RevSFormer-L-D: L = 2, 4, 8 blocks (published: RevSFormer-2-384 and -4-384, CIFAR-10 heads and classes).
* RevSResNet: 4 blocks ``[1,1,1,1]`` (RevSResNet21), 8 ``[1,2,3,2]`` (RevSResNet37) and 16 ``[2,4,6,4]``
  (extra, to see a second doubling). Fewer than 4 blocks would drop stages, which changes the network
  rather than its depth, so the ResNet sweep starts at 4.

Figures per record (see ARCHITECTURE.md "Benchmark results" and ``lightning_snn/bench/harness.py``):
* ``peak_mem_bytes``: peak of the whole step, everything alive (parameters, gradients, optimizer state,
  input, activations). On CPU from torch.profiler memory events (``mem_source``).
* ``activation_peak_bytes``: ``step_peak_mem_bytes`` (peak increase over the step start) minus the gradient
  bytes, i.e. activations and temporaries on top of the model state: the quantity the reversible blocks
  act on, which does not include the parameters that grow with depth in both variants.
* ``retained_after_forward_bytes``: bytes still allocated when the forward pass (with the loss) returns,
  i.e. what the graph keeps for backward (profiler running sum over the forward only).
* ``step_time_s``: median of the timed steps (reversible and twin steps interleaved, alternating order).

Summary per (family, T, depth): ``mem_ratio`` (reversible / twin ``peak_mem_bytes``),
``activation_ratio``, ``time_ratio``, and per (family, T, variant) the growth per depth doubling
``(m(d2)/m(d1))^(1/log2(d2/d1)) - 1``. Targets of the issue, reported (not asserted): at the published
depths the reversible peak memory <= 1/2 of the twin's, its growth <= 10% per doubling, step time <= 1.6x.
The paper (abstract) reports 3.79x (RevSResNet37) and 3.00x (RevSFormer-4-384) lower GPU memory per image
than MS-ResNet34 / Spikingformer-4-384, i.e. against *different* non-reversible networks, measured with
``torch.cuda.max_memory_allocated`` at the training batch size.

Run::

    uv run python benchmarks/revsnn_memory.py --quick          # CPU, 1-2 minutes: reduced widths and batch
    uv run python benchmarks/revsnn_memory.py                  # CPU, published widths (slow)
    uv run python benchmarks/revsnn_memory.py --device cuda    # -> results/revsnn_memory-<gpu>.json
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
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
    quiet_profile,
    resolve_device,
    setup_torch,
    synchronize,
    tensor_bytes,
    time_call,
    write_results,
)
from lightning_snn.backbones import RevSFormer, RevSResNet  # noqa: E402
from lightning_snn.neurons import reset_states  # noqa: E402

BENCHMARK = "revsnn_memory"
NUM_CLASSES = 10
RESNET_LAYOUTS: dict[int, tuple[int, ...]] = {4: (1, 1, 1, 1), 8: (1, 2, 3, 2), 16: (2, 4, 6, 4)}
PUBLISHED = {("resnet", 4): "RevSResNet21", ("resnet", 8): "RevSResNet37",
             ("former", 2): "RevSFormer-2-384", ("former", 4): "RevSFormer-4-384"}
PAPER_SAVINGS = {
    "RevSResNet37": {"x_lower_memory_per_image": 3.79, "vs": "MS-ResNet34 (different network, about the same size)"},
    "RevSFormer-4-384": {"x_lower_memory_per_image": 3.00, "vs": "Spikingformer-4-384 (non-reversible, same size)"},
    "source": "RevSNN abstract (arXiv 2312.07922); CIFAR, GPU max_memory_allocated per image at the training batch",
}
OFFICIAL_BATCH = {"resnet": 32, "former": 64}
QUICK_WIDTH = {"resnet": 0.25, "former": 0.125}  # ResNet steps at 1/8 would be dominated by per-op overhead
TARGETS = {"mem_ratio_max": 0.5, "growth_per_doubling_max": 0.10, "time_ratio_max": 1.6}


# ------------------------------------------------------------------------------------------ models
def build(family: str, depth: int, reversible: bool, width: float, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    if family == "resnet":
        planes = [max(2, int(round(p * width))) for p in (64, 128, 256, 448)]
        model: nn.Module = RevSResNet(planes=planes, layers=RESNET_LAYOUTS[depth], num_classes=NUM_CLASSES,
                                      reversible=reversible)
    else:
        dim = max(16, int(round(384 * width / 16)) * 16)
        model = RevSFormer(embed_dim=dim, depth=depth, num_heads=12 if dim % 12 == 0 else 8,
                           num_classes=NUM_CLASSES, reversible=reversible)
    return model.to(device).train()


def make_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, T: int) -> Callable[[], None]:
    return backbone_train_step(model, opt, x, y, T)


def retained_after_forward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, T: int, device: torch.device) -> int:
    """Bytes the forward pass (with the loss) leaves allocated, i.e. kept for backward."""
    reset_states(model)
    if device.type == "cuda":
        synchronize(device)
        start = torch.cuda.memory_allocated(device)
        loss = F.cross_entropy(model(x.unsqueeze(0).expand(T, *x.shape)).mean(0), y)
        synchronize(device)
        kept = torch.cuda.memory_allocated(device) - start
    else:
        from torch.profiler import ProfilerActivity

        with quiet_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            loss = F.cross_entropy(model(x.unsqueeze(0).expand(T, *x.shape)).mean(0), y)
        kept = sum(
            e.nbytes()
            for e in prof.profiler.kineto_results.events()
            if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
        )
    del loss  # drop the graph without a backward pass
    reset_states(model)
    return int(kept)


# ------------------------------------------------------------------------------------------ run
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default: cpu)")
    p.add_argument("--quick", action="store_true",
                   help="CPU run of 1-2 minutes: widths x1/4 (ResNet) and x1/8 (transformer), batch scaled alike, "
                        "ResNet depths 4 8, one thread")
    p.add_argument("--families", nargs="+", choices=["resnet", "former"], default=["resnet", "former"])
    p.add_argument("--T", type=positive_int, nargs="+", default=[4, 10], help="time steps (default: 4 10)")
    p.add_argument("--depths", type=positive_int, nargs="+", default=None,
                   help="blocks; default former 2 4 8, resnet 4 8 16 (quick: 4 8)")
    p.add_argument("--width", type=float, default=None, help="width multiplier (default 1; quick 1/4 ResNet, 1/8 former)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: the official training batch (32 RevSResNet, 64 RevSFormer) times the width multiplier")
    p.add_argument("--steps", type=int, default=None, help="timed steps per model (default: 10 GPU, 5 CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: cores; quick: 1)")
    p.add_argument("--out", type=Path, default=None, help="result JSON (default: benchmarks/results/revsnn_memory[-<gpu>].json)")
    p.add_argument("--no-write", action="store_true", help="print the tables only")
    args = p.parse_args(argv)
    return args


def _growth(m1: float, m2: float, d1: int, d2: int) -> float:
    return (m2 / m1) ** (1.0 / math.log2(d2 / d1)) - 1.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    threads = setup_torch(device, args.threads or (1 if args.quick and device.type == "cpu" else None))
    gpu = device.type == "cuda"
    steps = args.steps or (10 if gpu else 5)
    print(f"{BENCHMARK}: reversible vs twin on {describe_device(device)} (torch {torch.__version__}, {threads} threads), "
          f"T {args.T}, 1 warm-up + 1 memory + {steps} timed steps each", flush=True)
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    load_start = load_average()
    for family in args.families:
        depths = args.depths or ([2, 4, 8] if family == "former" else [4, 8] if args.quick else [4, 8, 16])
        if family == "resnet":
            bad = [d for d in depths if d not in RESNET_LAYOUTS]
            if bad:
                raise SystemExit(f"--depths for resnet must be among {sorted(RESNET_LAYOUTS)}, got {bad}")
        size = 32
        width = args.width or (QUICK_WIDTH[family] if args.quick else 1.0)
        # activations grow with width x batch, parameters with width^2: scaling the batch with the width keeps
        # the activation / model-state balance of the official training batch at full width
        batch = args.batch_size or max(2, round(OFFICIAL_BATCH[family] * width))
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, size, size, generator=g).to(device)
        y = torch.randint(0, NUM_CLASSES, (batch,), generator=g).to(device)
        for depth in depths:
            models = {v: build(family, depth, v == "reversible", width, device) for v in ("reversible", "twin")}
            models["twin"].load_state_dict(models["reversible"].state_dict())
            for T in args.T:
                opts = {v: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for v, m in models.items()}
                step_fns = {v: make_step(models[v], opts[v], x, y, T) for v in models}
                mem: dict[str, Any] = {}
                for v, m in models.items():
                    step_fns[v]()  # warm-up: optimizer state exists before the memory step
                    reset_states(m)
                    grad_bytes = sum(p.numel() * p.element_size() for p in m.parameters() if p.requires_grad)
                    mem[v] = dict(measure_step_memory(step_fns[v], m, opts[v], [x, y], device))
                    mem[v]["activation_peak_bytes"] = mem[v]["step_peak_mem_bytes"] - grad_bytes
                    mem[v]["retained_after_forward_bytes"] = retained_after_forward(m, x, y, T, device)
                    mem[v]["static_bytes"] = tensor_bytes(
                        [*m.parameters(), *m.buffers(), *[s for st in opts[v].state.values() for s in st.values()]]
                    )
                times: dict[str, list[float]] = {"reversible": [], "twin": []}
                for i in range(steps):
                    order = ["reversible", "twin"] if i % 2 == 0 else ["twin", "reversible"]
                    for v in order:
                        times[v].append(time_call(step_fns[v], device))
                for v, m in models.items():
                    rec = {
                        "method": "bptt",
                        "backbone": "revs_resnet" if family == "resnet" else "revsformer",
                        "family": family,
                        "variant": v,
                        "reversible": v == "reversible",
                        "depth": depth,
                        "layers": list(RESNET_LAYOUTS[depth]) if family == "resnet" else [depth],
                        "published": PUBLISHED.get((family, depth)),
                        "T": T,
                        "batch_size": batch,
                        "input_size": size,
                        "width": width,
                        "params": sum(p.numel() for p in m.parameters()),
                        "step_time_s": median(times[v]),
                        "step_times_s": times[v],
                        **mem[v],
                    }
                    records.append(rec)
                r, t = mem["reversible"], mem["twin"]
                print(f"  {family:6s} depth {depth:2d} T {T:2d}: peak rev {format_bytes(r['peak_mem_bytes'])} / twin "
                      f"{format_bytes(t['peak_mem_bytes'])} = {r['peak_mem_bytes'] / t['peak_mem_bytes']:.2f}, "
                      f"activations {r['activation_peak_bytes'] / t['activation_peak_bytes']:.2f}, time "
                      f"{median(times['reversible']):.2f}s / {median(times['twin']):.2f}s = "
                      f"{median(times['reversible']) / median(times['twin']):.2f} (steps rev "
                      f"{', '.join(f'{v:.2f}' for v in times['reversible'])}; twin "
                      f"{', '.join(f'{v:.2f}' for v in times['twin'])})  ({time.perf_counter() - t0:.0f}s)",
                      flush=True)
            del models
    summary = summarize(records)
    return {"records": records, "summary": summary, "load_average_start": load_start, "load_average_end": load_average(),
            "elapsed_s": round(time.perf_counter() - t0, 1), "quick": bool(args.quick), "device_obj": device}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["family"], r["T"], r["depth"], r["variant"]): r for r in records}
    pairs = []
    for (family, T, depth, variant), rev in sorted(by.items()):
        if variant != "reversible" or (family, T, depth, "twin") not in by:
            continue
        twin = by[(family, T, depth, "twin")]
        rev["mem_ratio_vs_twin"] = rev["peak_mem_bytes"] / twin["peak_mem_bytes"]
        rev["activation_ratio_vs_twin"] = rev["activation_peak_bytes"] / twin["activation_peak_bytes"]
        rev["time_ratio_vs_twin"] = rev["step_time_s"] / twin["step_time_s"]
        pairs.append({
            "family": family, "T": T, "depth": depth, "published": rev["published"],
            "mem_ratio": rev["peak_mem_bytes"] / twin["peak_mem_bytes"],
            "activation_ratio": rev["activation_peak_bytes"] / twin["activation_peak_bytes"],
            "retained_ratio": rev["retained_after_forward_bytes"] / max(twin["retained_after_forward_bytes"], 1),
            "time_ratio": rev["step_time_s"] / twin["step_time_s"],
        })
    growth = []
    for family, T, variant in sorted({(k[0], k[1], k[3]) for k in by}):
        ds = sorted(d for (f, t, d, v) in by if (f, t, v) == (family, T, variant))
        for d1, d2 in zip(ds, ds[1:]):
            a, b = by[(family, T, d1, variant)], by[(family, T, d2, variant)]
            growth.append({
                "family": family, "T": T, "variant": variant, "from_depth": d1, "to_depth": d2,
                "peak_growth_per_doubling": _growth(a["peak_mem_bytes"], b["peak_mem_bytes"], d1, d2),
                "activation_growth_per_doubling": _growth(a["activation_peak_bytes"], b["activation_peak_bytes"], d1, d2),
            })
    published = [p for p in pairs if p["published"]]
    rev_growth = [g for g in growth if g["variant"] == "reversible"]
    checks = {
        "mem_ratio_at_published_depths_max": max((p["mem_ratio"] for p in published), default=None),
        "activation_ratio_at_published_depths_max": max((p["activation_ratio"] for p in published), default=None),
        "reversible_peak_growth_per_doubling_max": max((g["peak_growth_per_doubling"] for g in rev_growth), default=None),
        "reversible_activation_growth_per_doubling_max": max(
            (g["activation_growth_per_doubling"] for g in rev_growth), default=None),
        "time_ratio_max": max((p["time_ratio"] for p in pairs), default=None),
        "time_ratio_median": median([p["time_ratio"] for p in pairs]) if pairs else None,
    }
    return {"pairs": pairs, "growth": growth, "checks": checks, "targets": TARGETS, "paper": PAPER_SAVINGS}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    device = result.pop("device_obj")
    summary = result["summary"]
    fmt = lambda v: f"{v:.2f}"  # noqa: E731
    pct = lambda v: f"{100 * v:+.1f}%"  # noqa: E731
    print("\nreversible / twin")
    print(format_table(summary["pairs"], [("family", "family", str), ("T", "T", str), ("depth", "blocks", str),
                                          ("published", "model", lambda v: v or "-"), ("mem_ratio", "peak", fmt),
                                          ("activation_ratio", "activations", fmt), ("retained_ratio", "kept", fmt),
                                          ("time_ratio", "time", fmt)]))
    print("\ngrowth per depth doubling")
    print(format_table(summary["growth"], [("family", "family", str), ("T", "T", str), ("variant", "variant", str),
                                           ("from_depth", "from", str), ("to_depth", "to", str),
                                           ("peak_growth_per_doubling", "peak", pct),
                                           ("activation_growth_per_doubling", "activations", pct)]))
    print("\nchecks:", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary["checks"].items()})
    print(f"targets: {TARGETS}; elapsed {result['elapsed_s']}s")
    if not args.no_write:
        path = args.out or default_result_path(BENCHMARK, device)
        extra = {k: v for k, v in result.items() if k != "records"}
        path = write_results(result["records"], device, path, **extra)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
