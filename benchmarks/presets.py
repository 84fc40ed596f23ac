"""Named benchmark presets: fixed ``lightning-snn bench`` arguments whose results README figures come from.

A preset is one or more bench runs (each a backbone and its arguments); their records are merged into
``benchmarks/results/<name>.json`` (``<name>-<gpu>.json`` on a GPU) with the PNG next to it. Every
measurement goes through :mod:`lightning_snn.bench` (one parser, one timing loop, one memory accounting,
one JSON writer); any bench option given after the name overrides the preset's (e.g. ``--T 5,30``)::

    uv run python -m benchmarks.presets --list
    uv run python -m benchmarks.presets step_time --quick          # BPTT vs T x ANN, ResNet-19
    uv run python -m benchmarks.presets dsr --quick                # DSR vs BPTT, PreAct-ResNet-18
    uv run python -m benchmarks.presets rate_bp --quick            # Rate-BP (both modes) vs BPTT, ResNet-18
    uv run python -m benchmarks.presets ide --batch-size 2         # IDE vs BPTT, CIFARNet-F, full width
    uv run python -m benchmarks.presets revsnn_memory --quick      # reversible vs twin over depth
    uv run python -m benchmarks.presets ide --device cuda          # -> results/ide-<gpu>.json

What each preset reproduces (targets reported, not asserted; read ``mem_growth_in_T``, ``ratio_vs_bptt``,
``mem_ratio_vs_bptt`` and ``ratio_vs_ann_x_T`` in the records):

* ``step_time``: tdBN ResNet-19 with the library's STBP LIF, BPTT step vs T x the same network with ReLU,
  T in {1, 2, 4, 8}.
* ``dsr``: DSR (its IF neuron, V_th 6) vs BPTT (IF, V_th 1, reset by subtraction) on DSR's PreAct-ResNet-18,
  T in {5, 10, 20}: DSR's memory grows with T like BPTT's minus the neurons' share.
* ``rate_bp``: Rate-BP in both step modes vs BPTT on the CIFAR ResNet-18 with Rate-BP's LIF (decay 0.2,
  soft reset, detached reset, sigmoid 4), T in {2, 4, 6, 8}: saved-for-backward flat in T.
* ``ide``: IDE vs the BPTT-trained twin on CIFARNet-F (IF, V_th 2, reset by subtraction, rectangular
  surrogate), T in {5, 30, 100}: IDE's memory independent of T (README: 1.00x from T = 5 to 100).
* ``revsnn_memory``: BPTT on reversible RevSResNet (4, 8, 16 blocks) and RevSFormer (2, 4, 8 blocks) vs
  their ``reversible: false`` twins at T = 4; ``--quick`` at 1/4 (ResNet) and 1/8 (Former) width with the
  official batch scaled alike (activation / model-state balance of the official setting).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_snn.bench.cli import bench_main, build_parser  # noqa: E402
from lightning_snn.bench.harness import default_result_path, resolve_device, write_results  # noqa: E402
from lightning_snn.bench.run import plot_bench, render_table, validate_results  # noqa: E402

IF_IDE = {"type": "if", "v_threshold": 2.0, "v_reset": None, "surrogate": {"name": "rectangular", "width": 1.0}}
IF_DSR_TWIN = {"type": "if", "v_threshold": 1.0, "v_reset": None, "surrogate": {"name": "rectangular", "width": 1.0}}
LIF_RATE_BP = {"type": "lif", "decay": 0.2, "v_threshold": 1.0, "v_reset": None, "detach_reset": True,
               "surrogate": {"name": "sigmoid", "alpha": 4.0}}


def _j(value: Any) -> str:
    return json.dumps(value)


def _revs(family: str, blocks: Any, width: float, batch: int) -> list[str]:
    """One reversible-vs-twin run: RevSResNet with ``blocks`` per stage, or RevSFormer with ``blocks`` blocks."""
    if family == "resnet":
        planes = [max(2, round(p * width)) for p in (64, 128, 256, 448)]
        kwargs: dict[str, Any] = {"planes": planes, "layers": list(blocks)}
        name, label = "revs_resnet", f"revs_resnet_{sum(blocks)}blocks"
    else:
        dim = max(16, round(384 * width / 16) * 16)
        kwargs = {"embed_dim": dim, "depth": blocks, "num_heads": 12 if dim % 12 == 0 else 8}
        name, label = "revsformer", f"revsformer_{blocks}x{dim}"
    return ["--backbone", name, "--backbone-kwargs", _j(kwargs), "--label", label, "--methods", "revsnn,revsnn_twin",
            "--T", "4", "--batch-size", str(batch)]


@dataclass(frozen=True)
class Preset:
    """``runs``: the bench arguments of each run; ``quick_runs`` replaces them under ``--quick``."""

    description: str
    runs: list[list[str]]
    quick_runs: list[list[str]] | None = None
    quick_args: list[str] = field(default_factory=list)


PRESETS: dict[str, Preset] = {
    "step_time": Preset(
        "BPTT step vs T x ANN step, tdBN ResNet-19 (STBP LIF)",
        [["--backbone", "resnet19", "--methods", "bptt", "--T", "1,2,4,8"]], quick_args=["--batch-size", "8"]),
    "dsr": Preset(
        "DSR vs BPTT, PreAct-ResNet-18 (IF neurons)",
        [["--backbone", "preact_resnet18", "--neuron", _j(IF_DSR_TWIN), "--methods", "dsr,bptt", "--T", "5,10,20"]],
        quick_args=["--batch-size", "8", "--steps", "1"]),
    "rate_bp": Preset(
        "Rate-BP (multi- and single-step) vs BPTT, ResNet-18 (Rate-BP's LIF)",
        [["--backbone", "resnet18", "--backbone-kwargs", _j({"norm": "bn"}), "--neuron", _j(LIF_RATE_BP),
          "--methods", "bptt,rate_bp", "--T", "2,4,6,8"]], quick_args=["--batch-size", "4", "--steps", "3"]),
    "ide": Preset(
        "IDE vs BPTT, CIFARNet-F (IF, V_th 2)",
        [["--backbone", "ide_cifarnet_f", "--neuron", _j(IF_IDE), "--methods", "ide,bptt", "--T", "5,30,100"]],
        quick_runs=[["--backbone", "ide_cifarnet_f", "--neuron", _j(IF_IDE), "--methods", "ide,bptt", "--T", "5,30,100",
                     "--backbone-kwargs", _j({"channels": [32, 64, 128, 256, 128]}), "--label", "ide_cifarnet_f/4"]],
        quick_args=["--batch-size", "4", "--steps", "1"]),
    "revsnn_memory": Preset(
        "reversible backbones vs their reversible: false twins over depth, T = 4",
        [*(_revs("resnet", b, 1.0, 32) for b in ((1, 1, 1, 1), (1, 2, 3, 2), (2, 4, 6, 4))),
         *(_revs("former", d, 1.0, 64) for d in (2, 4, 8))],
        quick_runs=[*(_revs("resnet", b, 0.25, 8) for b in ((1, 1, 1, 1), (1, 2, 3, 2))),
                    *(_revs("former", d, 0.125, 8) for d in (2, 4, 8))],
        quick_args=["--threads", "1"]),
}


def runs_of(name: str, quick: bool, extra: list[str]) -> list[list[str]]:
    """The full bench argument lists of preset ``name`` (the preset's, then ``--quick``'s, then ``extra``)."""
    preset = PRESETS[name]
    runs = preset.quick_runs if quick and preset.quick_runs else preset.runs
    return [[*run, *(preset.quick_args if quick else []), *(["--quick"] if quick else []), *extra] for run in runs]


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[list[str]]]:
    """``NAME [--quick] [bench options]``; every run's arguments are checked by the bench parser."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", choices=sorted(PRESETS))
    p.add_argument("--list", action="store_true", help="list the presets")
    p.add_argument("--quick", action="store_true", help="the preset's CPU run of a few minutes")
    args, extra = p.parse_known_args(argv)
    if args.list or args.name is None:
        return args, []
    runs = runs_of(args.name, args.quick, extra)
    bench = build_parser()
    for run in runs:
        bench.parse_args(run)
    return args, runs


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args, runs = parse_args(argv)
    if args.list or args.name is None:
        for name, preset in PRESETS.items():
            print(f"{name:15s} {preset.description}")
        return None
    records: list[dict[str, Any]] = []
    device = None
    out: Path | None = None
    for run in runs:
        ns = build_parser().parse_args(run)
        device, out = resolve_device(ns.device), ns.out
        payload = bench_main([*run, "--no-write"])
        records += payload["records"]
    assert device is not None
    path = write_results(records, device, out or default_result_path(args.name, device), benchmark=args.name,
                         preset=args.name, quick=args.quick, runs=runs)
    validate_results(json.loads(path.read_text()))
    png = plot_bench(records, path.with_suffix(".png"), title=f"{args.name}: {PRESETS[args.name].description}")
    if len(runs) > 1:
        print("\n" + render_table(records, extra=[("backbone", "backbone", str)]))
    print(f"\nwrote {path} and {png}")
    return json.loads(path.read_text())


if __name__ == "__main__":
    main()
