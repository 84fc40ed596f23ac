"""Rate-BP single-step options: how far the repository's computation is from the library's, per tensor.

The Rate-BP repository's single-step mode (``step_mode s``) normalises the rate pass with the last step's
BN statistics and eps added twice, and feeds it the last input frame (``RateBP(rate_bn_stats=
"official_last_step", rate_input="last_frame")``); the library's alternative uses the time-averaged
statistics and the mean frame (``"time_average"``, ``"mean_frame"``). This script builds the two mirroring
networks with the configs' settings, copies the same weights into every variant, runs one training forward
and backward on the same batch in float64, and reports for each variant against the library's default:

* whether the loss and the logits are identical (they should be: the forward value is the spike pass);
* the relative L2 difference ``|g_a − g_b| / |g_b|`` of every parameter's gradient, its maximum (and which
  tensor), the first conv's, and the whole gradient's.

It also measures, for the CIFAR10-DVS VGGSNN, what the repository's ``experiment/dvs/main.py`` trains when
``--rate_flag`` is omitted: it calls ``rate_model_setting`` unconditionally and uses plain cross-entropy,
so its "BPTT" command trains Rate-BP with an unscaled loss gradient. The rows ``dvs_bptt_*`` give the
difference between that (the official single-step options in ``s`` mode) and BPTT, in both step modes.

Inputs are synthetic (no CIFAR or CIFAR10-DVS files are needed): normalised-image statistics for CIFAR
(standard normal pixels) and sparse event counts that change from frame to frame for CIFAR10-DVS, which is
what makes the last frame differ from the mean frame. Batch 8 (the configs use 128: BN statistics are
then less noisy, so the per-step statistics spread less; the numbers here are for one CPU core and are
indicative of the size of the effect, not of its exact value at batch 128). The stored results come from
``--nets cifar10_resnet18`` (seeds 0-2) and ``--nets cifar10dvs_vggsnn_dvs --seeds 0 1`` (each run merges
its nets into the existing JSON).

Gradients are compared with :func:`lightning_snn.bench.fidelity.gradient_difference`. Run::

    uv run python benchmarks/rate_bp_single_step_options.py   # ResNet ~10 min, VGGSNN ~10 min per seed (one thread)
    uv run python benchmarks/rate_bp_single_step_options.py --quick   # ResNet-18, batch 2, seed 0 -> ..._quick.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_snn.bench.accuracy import add_accuracy_args, result_path  # noqa: E402
from lightning_snn.bench.fidelity import StepGradients, gradient_difference, step_gradients  # noqa: E402
from lightning_snn.bench.harness import positive_int, resolve_device, setup_torch, write_results  # noqa: E402
from lightning_snn.methods import RateBP  # noqa: E402

BENCHMARK = "rate_bp_single_step_options"
WHAT = ("relative L2 gradient difference |g_a - g_b| / |g_b| per parameter tensor, one float64 training step, "
        "same weights and batch; b is RateBP(step_mode='s') with rate_bn_stats='time_average', "
        "rate_input='mean_frame' unless stated")

NETS: dict[str, dict[str, Any]] = {
    # configs/rate_bp/cifar10_resnet18_rate_s.yaml
    "cifar10_resnet18": dict(backbone="resnet18", backbone_kwargs={"norm": "bn"}, T=4, num_classes=10,
                             input_shape=(3, 32, 32), grad_scale="1/T", batch=8),
    # configs/rate_bp/cifar10dvs_vggsnn_dvs_rate_s.yaml
    "cifar10dvs_vggsnn_dvs": dict(backbone="vggsnn_dvs", T=10, num_classes=10, input_shape=(2, 48, 48),
                                  grad_scale="none", batch=8),
}
VARIANTS = {
    "official": dict(rate_bn_stats="official_last_step", rate_input="last_frame"),
    "bn_only": dict(rate_bn_stats="official_last_step", rate_input="mean_frame"),
    "frame_only": dict(rate_bn_stats="time_average", rate_input="last_frame"),
}


def make(spec: dict[str, Any], **kwargs: Any) -> RateBP:
    args = {k: v for k, v in spec.items() if k != "batch"}
    args.update(kwargs)
    return RateBP(step_mode=args.pop("step_mode", "s"), **args).double()


def batch(name: str, spec: dict[str, Any], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, (c, h, w), T = spec["batch"], spec["input_shape"], spec["T"]
    y = torch.randint(0, spec["num_classes"], (b,), generator=g)
    if name.startswith("cifar10dvs"):  # event counts per pixel and polarity, sparse, different every frame
        active = torch.rand(b, T, c, h, w, generator=g) < 0.15
        counts = torch.poisson(torch.full((b, T, c, h, w), 1.5, dtype=torch.float64), generator=g)
        return (active * counts).clamp_max(4.0) / 4.0, y
    return torch.randn(b, c, h, w, generator=g, dtype=torch.float64), y


def compare(a: StepGradients, b: StepGradients) -> dict[str, Any]:
    """The row of one comparison: the largest per-tensor difference, the first conv's and the whole gradient's."""
    diff = gradient_difference(a.grads, b.grads)
    first_conv = next(n for n, g in a.grads.items() if n.endswith("weight") and g.dim() == 4)
    return {"max_rel_l2": diff["max_tensor_rel"], "max_tensor": diff["max_tensor"], "first_conv": first_conv,
            "first_conv_rel_l2": diff["per_tensor"][first_conv], "whole_rel_l2": diff["rel_l2"],
            "same_loss": bool(torch.equal(a.loss, b.loss)), "same_logits": bool(torch.equal(a.logits, b.logits))}


# (label, variant a, variant b): the row reports |g_a - g_b| / |g_b| per tensor
LIBRARY: dict[str, Any] = {}
COMPARISONS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (v, kw, LIBRARY) for v, kw in VARIANTS.items()
]
DVS_BPTT = [  # the repository's DVS command without --rate_flag (Rate-BP, plain CE) against the configs' BPTT
    ("dvs_bptt_s_vs_official_rate_s", VARIANTS["official"], dict(rate=False)),
    ("dvs_bptt_m_vs_official_rate_m", dict(step_mode="m"), dict(step_mode="m", rate=False)),
]


def run(seeds: list[int], nets: list[str], batch_size: int | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in nets:
        spec = NETS[name] if batch_size is None else {**NETS[name], "batch": batch_size}
        comparisons = COMPARISONS + (DVS_BPTT if name.startswith("cifar10dvs") else [])
        torch.manual_seed(0)
        state = make(spec).state_dict()
        variants = {json.dumps(kw, sort_keys=True): kw for _, *kws in comparisons for kw in kws}
        rows: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in comparisons}
        for seed in seeds:
            x, y = batch(name, spec, seed)
            done = {}
            for key, kw in variants.items():  # one model alive at a time (the BPTT graphs are large in float64)
                model = make(spec, **kw)
                model.load_state_dict(state)
                done[key] = step_gradients(model, x, y)
                del model
            for label, kw_a, kw_b in comparisons:
                row = {**compare(done[json.dumps(kw_a, sort_keys=True)], done[json.dumps(kw_b, sort_keys=True)]), "seed": seed}
                rows[label].append(row)
                print(f"{name:22s} {label:30s} seed {seed}: max {row['max_rel_l2']:.3f} ({row['max_tensor']}), "
                      f"first conv {row['first_conv_rel_l2']:.3f}, whole {row['whole_rel_l2']:.3f}, "
                      f"same loss {row['same_loss']}, same logits {row['same_logits']}", flush=True)
        results[name] = {
            "settings": dict(spec),
            "comparisons": {
                label: {"a": kw_a, "b": kw_b or "library default (time_average, mean_frame)", "per_seed": rows[label],
                        "max_rel_l2_over_seeds": max(r["max_rel_l2"] for r in rows[label]),
                        "first_conv_rel_l2_per_seed": [r["first_conv_rel_l2"] for r in rows[label]],
                        "whole_rel_l2_per_seed": [r["whole_rel_l2"] for r in rows[label]]}
                for label, kw_a, kw_b in comparisons
            },
        }
    return results


def records_from(nets: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per net, comparison and seed (ARCHITECTURE.md's schema; a fidelity benchmark: no timing)."""
    return [{"method": "RateBP", "backbone": net["settings"]["backbone"], "T": net["settings"]["T"],
             "batch_size": net["settings"]["batch"], "step_time_s": None, "peak_mem_bytes": None,
             "mem_source": "not measured (gradient fidelity)", "net": name, "comparison": label, **row}
            for name, net in nets.items() for label, comp in net["comparisons"].items() for row in comp["per_seed"]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_accuracy_args(parser, BENCHMARK, seeds=[0, 1, 2], quick_help="seed 0, batch 2, cifar10_resnet18 only (unless --nets)",
                      data=False)
    parser.add_argument("--nets", nargs="+", choices=sorted(NETS), default=None, help="default: all")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: 8 (2 with --quick)")
    args = parser.parse_args(argv)
    device = resolve_device("cpu")
    setup_torch(device, args.threads)
    seeds = args.seeds[:1] if args.quick else args.seeds
    nets = run(seeds, args.nets or (["cifar10_resnet18"] if args.quick else sorted(NETS)),
               args.batch_size or (2 if args.quick else None))
    out = result_path(args, BENCHMARK)
    if out.is_file():  # keep the other nets' rows of an earlier run
        nets = {**json.loads(out.read_text()).get("nets", {}), **nets}
    nets = dict(sorted(nets.items()))
    if not args.no_write:
        print(f"wrote {write_results(records_from(nets), device, out, what=WHAT, dtype='float64', nets=nets)}")


if __name__ == "__main__":
    main()
