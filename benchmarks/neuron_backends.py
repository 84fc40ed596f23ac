"""Eager neuron step time: ``neurons/backends/eager.py`` (in-place forward sweep, the BPTT sweep it shares
with the inductor backend) against the eager multi-step neuron of ``neurons/nodes.py`` at a baseline
commit (before the split into ``neurons/backends/``), interleaved in one run.

One "step" is forward + backward of a multi-step neuron on ``[T, B, C, H, W]`` (default
``[8, 64, 128, 8, 8]``) with a random upstream gradient, or a forward under ``torch.no_grad`` (``eval``).
The baseline module is read with ``git show <rev>:lightning_snn/neurons/nodes.py`` and executed inside the
``lightning_snn.neurons`` package, so both run with the same surrogates. PLIF (new only) is timed
against the new LIF of the same configuration. Writes ``benchmarks/results/neuron_backends.json``.

    OMP_NUM_THREADS=1 uv run python benchmarks/neuron_backends.py            # ~2 min on one core
    OMP_NUM_THREADS=1 uv run python benchmarks/neuron_backends.py --quick    # smaller, fewer repetitions
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightning_snn.neurons import ATan, LIFNode, PLIFNode, Rectangular, Sigmoid, reset_states  # noqa: E402

BASELINE_REV = "2781fb5"  # the last commit with backends inside nodes.py


def load_baseline(rev: str) -> ModuleType:
    """``lightning_snn/neurons/nodes.py`` at ``rev`` as module ``lightning_snn.neurons._baseline_nodes``."""
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:lightning_snn/neurons/nodes.py"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(f"neuron_backends: cannot read the baseline nodes.py at {rev!r} with git: {err}") from None
    name = "lightning_snn.neurons._baseline_nodes"
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "lightning_snn.neurons"
    exec(compile(source, f"<{rev}:lightning_snn/neurons/nodes.py>", "exec"), module.__dict__)
    return module


def step_fn(node: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, train: bool) -> Callable[[], float]:
    def step() -> float:
        reset_states(node)
        xi = x.detach().requires_grad_(train)
        t0 = time.perf_counter()
        if train:
            node(xi).backward(grad)
        else:
            with torch.no_grad():
                node(xi)
        return time.perf_counter() - t0

    return step


def saved_bytes(node: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes the neuron saves for backward (saved-tensor hook tally)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    reset_states(node)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        node(x.detach().requires_grad_())
    return total


def interleaved(fns: dict[str, Callable[[], float]], reps: int, warmup: int) -> dict[str, list[float]]:
    """Run every function ``warmup + reps`` times, rotating the order each round; return the timed runs."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + reps):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            t = fns[n]()
            if r >= warmup:
                times[n].append(t)
    return times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="[8, 16, 128, 8, 8], 8 repetitions")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="B of [8, B, 128, 8, 8] (default 64, quick 16)")
    parser.add_argument("--inductor", action="store_true",
                        help="also time backend 'inductor' in train mode (its first, untimed runs compile)")
    parser.add_argument("--baseline", default=BASELINE_REV, help="git revision of the former nodes.py")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "neuron_backends.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    T, B = 8, args.batch_size or (16 if args.quick else 64)
    shape = (T, B, 128, 8, 8)
    reps = args.reps or (8 if args.quick else 20)
    old = load_baseline(args.baseline)
    x = torch.randn(shape) * 0.8 + 0.3
    grad = torch.randn(shape)
    configs = [
        ("LIF STBP (decay 0.25, V_th 0.2, hard reset 0, rectangular)",
         dict(decay=0.25, v_threshold=0.2, v_reset=0.0), lambda: Rectangular(1.0)),
        ("LIF tau 2, decay_input, reset by subtraction, atan",
         dict(tau=2.0, decay_input=True, v_reset=None), lambda: ATan(2.0)),
        ("LIF tau 2, decay_input, hard reset 0, sigmoid",
         dict(tau=2.0, decay_input=True, v_reset=0.0), lambda: Sigmoid(4.0)),
    ]
    records = []
    for mode in ("train", "eval"):
        train = mode == "train"
        for label, kw, sg in configs:
            nodes = {"old": old.LIFNode(surrogate=sg(), **kw), "new": LIFNode(surrogate=sg(), **kw)}
            if kw.get("tau") and kw.get("decay_input"):  # PLIF at the same τ0: the learnable-leak path
                nodes["plif"] = PLIFNode(init_tau=kw["tau"], v_reset=kw["v_reset"], surrogate=sg())
            if args.inductor and train:
                nodes["inductor"] = LIFNode(surrogate=sg(), backend="inductor", **kw)
            times = interleaved({k: step_fn(n, x, grad, train) for k, n in nodes.items()}, reps, warmup=2)
            med = {k: statistics.median(v) for k, v in times.items()}
            for k, node in nodes.items():
                rec = {
                    "method": f"neuron-{k}", "backbone": "none (one neuron layer)", "T": T, "batch_size": B,
                    "shape": list(shape), "mode": mode, "neuron": label if k != "plif" else f"PLIF init_tau {kw['tau']}",
                    "backend": "inductor" if k == "inductor" else "torch", "step_time_s": med[k], "step_times_s": times[k],
                    "peak_mem_bytes": saved_bytes(node, x) if train else 0,
                    "mem_source": "bytes saved for backward by the neuron (saved-tensor hook tally); 0 in eval",
                    "ratio_vs_old": med[k] / med["old"],
                }
                if k == "plif":
                    rec["ratio_vs_new_lif"] = med[k] / med["new"]
                records.append(rec)
                print(f"{mode:5s} {k:4s} {med[k] * 1e3:8.1f} ms  x{med[k] / med['old']:.3f} of old  {label}")
    result = {
        "benchmark": "neuron_backends",
        "device": f"cpu: {torch.get_num_threads()} thread(s)",
        "torch": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "baseline": args.baseline,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "loadavg": list(os.getloadavg()),
        "note": "old = nodes.py at the baseline revision; new = neurons/backends/eager.py (in-place forward sweep, "
                "the BPTT sweep shared with the inductor backend); plif = PLIFNode at the same initial tau; "
                "medians of interleaved runs (order rotated every round)",
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
