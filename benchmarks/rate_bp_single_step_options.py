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

Run::

    OMP_NUM_THREADS=1 uv run python benchmarks/rate_bp_single_step_options.py   # ResNet ~10 min, VGGSNN ~10 min per seed (one core)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_snn.methods import RateBP  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "rate_bp_single_step_options.json"

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


def step(model: RateBP, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(x)
    loss = F.cross_entropy(out.mean(0), y)
    loss.backward()
    return loss.detach(), out.detach().mean(0), [p.grad.detach().clone() for p in model.parameters()]


def compare(names: list[str], ga: list[torch.Tensor], gb: list[torch.Tensor]) -> dict[str, Any]:
    rel = {n: float((a - b).norm() / b.norm()) for n, a, b in zip(names, ga, gb) if b.norm() > 0}
    worst = max(rel, key=rel.get)
    first_conv = next(n for n in names if n.endswith("weight") and ga[names.index(n)].dim() == 4)
    whole = float(torch.cat([(a - b).flatten() for a, b in zip(ga, gb)]).norm() / torch.cat([b.flatten() for b in gb]).norm())
    return {"max_rel_l2": rel[worst], "max_tensor": worst, "first_conv": first_conv,
            "first_conv_rel_l2": rel[first_conv], "whole_rel_l2": whole}


# (label, variant a, variant b): the row reports |g_a - g_b| / |g_b| per tensor
LIBRARY: dict[str, Any] = {}
COMPARISONS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (v, kw, LIBRARY) for v, kw in VARIANTS.items()
]
DVS_BPTT = [  # the repository's DVS command without --rate_flag (Rate-BP, plain CE) against the configs' BPTT
    ("dvs_bptt_s_vs_official_rate_s", VARIANTS["official"], dict(rate=False)),
    ("dvs_bptt_m_vs_official_rate_m", dict(step_mode="m"), dict(step_mode="m", rate=False)),
]


def run(seeds: list[int], nets: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in nets:
        spec = NETS[name]
        comparisons = COMPARISONS + (DVS_BPTT if name.startswith("cifar10dvs") else [])
        torch.manual_seed(0)
        state = make(spec).state_dict()
        variants = {json.dumps(kw, sort_keys=True): kw for _, *kws in comparisons for kw in kws}
        names: list[str] = []
        rows: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in comparisons}
        for seed in seeds:
            x, y = batch(name, spec, seed)
            done = {}
            for key, kw in variants.items():  # one model alive at a time (the BPTT graphs are large in float64)
                model = make(spec, **kw)
                model.load_state_dict(state)
                names = [n for n, _ in model.named_parameters()]
                done[key] = step(model, x, y)
                del model
            for label, kw_a, kw_b in comparisons:
                loss_a, out_a, g_a = done[json.dumps(kw_a, sort_keys=True)]
                loss_b, out_b, g_b = done[json.dumps(kw_b, sort_keys=True)]
                row = compare(names, g_a, g_b)
                row.update(seed=seed, same_loss=bool(torch.equal(loss_a, loss_b)), same_logits=bool(torch.equal(out_a, out_b)))
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--nets", nargs="+", choices=sorted(NETS), default=sorted(NETS))
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    nets = run(args.seeds, args.nets)
    if args.out.is_file():  # keep the other nets' rows of an earlier run
        nets = {**json.loads(args.out.read_text()).get("nets", {}), **nets}
    results = {
        "what": "relative L2 gradient difference |g_a - g_b| / |g_b| per parameter tensor, one float64 training step, "
                "same weights and batch; b is RateBP(step_mode='s') with rate_bn_stats='time_average', "
                "rate_input='mean_frame' unless stated",
        "dtype": "float64",
        "nets": dict(sorted(nets.items())),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
