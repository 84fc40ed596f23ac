"""Method comparison: step time and peak memory of every training method on the same network and data.

Each method of the library trains the same spiking ResNet (``compare_resnet``: a 3x3 stem and three stages
of ``depth`` basic blocks, BN through time, the same LIF neuron everywhere: leak factor λ = 0.5,
V_th = 1, hard reset to 0, sigmoid surrogate α = 4) on the same CIFAR-shaped batch ``[B, 3, 32, 32]`` with
direct encoding, for a few SGD steps; the step is the method's own (``module.compute_loss(module(x), y)``,
backward, ``optimizer.step()``), so neuron swaps (DSR), hooks (Rate-BP) and structural backbones (RevSNN)
are all in it. Every measurement runs through :mod:`lightning_snn.bench` (``lightning-snn bench``'s method
table, timing loop, memory accounting and JSON writer); this preset adds the comparison network, its
SpikingJelly twin, the depth sweep and the target figures. Its method table (:data:`TABLE`) is the bench's
with these rows changed or added:

=================  =======================================================================================
``ann``            the same backbone with ReLU in place of every neuron, run once on ``[1, B, ...]``: the
                   reference of ``ratio_vs_ann_x_T = step_time / (T * ann step_time)``
``bptt``           :class:`~lightning_snn.methods.BPTT`, neuron backend ``torch`` (the reference)
``bptt_inductor``  the same with neuron backend ``inductor`` (compiled forward loop and backward sweep)
``bptt_triton``    the same with SpikingJelly's Triton kernels (CUDA only)
``bptt_bits``      the same with ``spike_storage: bits`` (spike trains saved for backward as 1 bit each)
``dsr``            :class:`~lightning_snn.methods.DSR` (its IF neuron: V_th 6, α 0.5, trainable V_th)
``dsr_bits``       the same with ``spike_storage: bits``
``rate_bp_m``      :class:`~lightning_snn.methods.RateBP`, multi-step mode
``rate_bp_s``      :class:`~lightning_snn.methods.RateBP`, single-step mode
``revsnn``         BPTT on a reversible RevSResNet with the same stages (``revs_resnet``)
``revsnn_twin``    the same RevSResNet with ``reversible: false`` (same weights layout, ordinary autograd)
``spikingjelly``   the ``compare_resnet`` network rebuilt from SpikingJelly's own layers
                   (``layer.Conv2d/BatchNorm2d/Linear``, ``neuron.LIFNode(tau=2, decay_input=False)``, i.e.
                   λ = 1 - 1/τ = 0.5, ``surrogate.Sigmoid(4)``, step mode ``m``, its default backend)
``sltt``           :class:`~lightning_snn.methods.SLTT` (the same LIF, temporally cut; a backward per step)
``ottt``           :class:`~lightning_snn.methods.OTTT`, variant A (SLTT's step + presynaptic traces)
``ide``            IDE on its feedback backbone ``ide_cifarnet_f`` (channels scaled like the shared network),
                   where ``lightning_snn.methods.IDE`` exists; opt-in: ``--methods ann bptt ide``
=================  =======================================================================================

The sweep runs every method at each T in ``--T`` (at the first depth) and at each depth in ``--depths``
(at the first T). At every setting all methods' steps are interleaved (``lightning_snn.bench.run.run_bench``)
so ratios are measured under the same machine load; memory comes from one untimed step
(``measure_step_memory``: CUDA max allocated, or on CPU the profiler's allocation events plus the bytes
alive at the step start; also the bytes autograd saved for backward).

Targets of the issue, reported and not asserted: BPTT step <= 1.3x (T x ANN step) on CPU; BPTT >= 1.0x
SpikingJelly's throughput with equal or lower peak memory; Rate-BP / DSR memory flat in T; RevSNN peak
memory <= 1/2 of its twin's.

What each method's memory claim is, and where the table shows it:

* Rate-BP claims O(L) backward memory instead of O(L·T): ``saved_for_backward`` is flat in T in both modes.
  Multi-step mode still runs the T-step spike pass, which holds one layer's ``[T, B, ...]`` tensors at a
  time, so on a shallow network its peak grows with T (``checks.rate_bp_saved_growth_in_T_max`` vs
  ``rate_bp_m_mem_growth_...``).
* IDE: flat in T (the simulation keeps no graph).
* SLTT / OTTT: flat in T. Each time step's graph is backpropagated and freed before the next step runs, so
  the tensors saved for backward that are alive at once (``saved_tensor_peak_bytes``) are one step's, and
  the peak does not grow with T; ``saved_tensor_bytes`` (everything saved over the step) still adds up.
* DSR makes no memory claim: its neurons backpropagate through the spike representation (they save one
  step's worth), but its conv and time-folded BatchNorm layers are ordinary multi-step layers that save
  their per-step inputs, as in the official code. The exact DSR gradient through BN with statistics over
  T·B needs them: the BN backward has a term in the normalised per-step input that does not reduce to
  time averages. So DSR grows with T like BPTT minus the neurons' share.
* RevSNN: memory that does not grow with depth; the ratio to the twin falls below 1/2 from two blocks per
  stage (the non-reversible stem, downsampling layers and head are a fixed cost).
* ``spike_storage: bits`` (``bptt_bits``, ``dsr_bits``; ``spike_bits_vs_float``) stores the spike trains
  saved for backward as bits, losslessly (under autocast too: the spikes come out in the low-precision
  dtype, so the convolutions save them uncast).

Run::

    uv run python -m benchmarks.compare --quick                 # CPU, a few minutes -> results/compare.json/.png
    uv run python -m benchmarks.compare --device cuda --amp bf16  # -> results/compare-<gpu>.json/.png
    uv run python -m benchmarks.compare --device cuda --preset resnet19-cifar10   # ResNet-19, T=4, B=128, images/s
    uv run python -m benchmarks.compare --quick --wait-idle 120 --retries 2       # on a busy shared machine
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_snn import methods  # noqa: E402
from lightning_snn.backbones import SpikingResNet, list_backbones, register_backbone  # noqa: E402
from lightning_snn.bench.cli import PRECISIONS, build_parser, flat  # noqa: E402
from lightning_snn.bench.harness import (  # noqa: E402
    amp_context,
    default_result_path,
    describe_device,
    format_bytes,
    load_average,
    positive_int,
    resolve_device,
    setup_torch,
    write_results,
)
from lightning_snn.bench.methods import (  # noqa: E402
    BenchSetting,
    MethodEntry,
    Trainee,
    method_table,
    resolve_method_names,
    sgd,
)
from lightning_snn.bench.run import TimingOptions, derive, render_table as bench_table, run_bench  # noqa: E402
from lightning_snn.neurons import reset_states  # noqa: E402

BENCHMARK = "compare"
NUM_CLASSES = 10
INPUT_SHAPE = (3, 32, 32)
#: the LIF neuron of every BPTT-family method (and, translated, of the SpikingJelly twin)
DECAY, V_TH, ALPHA = 0.5, 1.0, 4.0
NEURON: dict[str, Any] = {
    "type": "lif", "decay": DECAY, "v_threshold": V_TH, "v_reset": 0.0, "surrogate": {"name": "sigmoid", "alpha": ALPHA},
}
BASE_CHANNELS = (64, 128, 256)
TARGETS = {
    "bptt_ratio_vs_ann_x_T_max": 1.3,
    "bptt_throughput_vs_spikingjelly_min": 1.0,
    "bptt_mem_vs_spikingjelly_max": 1.0,
    "rate_bp_dsr_mem_growth_in_T_max": 1.15,
    "revsnn_mem_ratio_vs_twin_max": 0.5,
    "sltt_ottt_mem_growth_in_T_max": 1.05,
}
PRESETS: dict[str, dict[str, Any]] = {
    # the STBP-tdBN ResNet-19 shape (128C3, [3, 3, 2] blocks of 128/256/512, FC256, FC) on CIFAR-10
    "resnet19-cifar10": {
        "arch": {"stages": [(128, 3, 1), (256, 3, 2), (512, 2, 2)], "stem_channels": 128, "hidden": 256},
        "T": [4], "batch": 128, "label": "resnet19",
    },
}


# ============================================================================================ network
def arch_for(width: float, depth: int) -> dict[str, Any]:
    """``compare_resnet`` layout: stem ``64·width``, stages of ``depth`` blocks of 64/128/256 x width."""
    ch = [max(4, int(round(c * width))) for c in BASE_CHANNELS]
    return {"stages": [(ch[0], depth, 1), (ch[1], depth, 2), (ch[2], depth, 2)], "stem_channels": ch[0], "hidden": None}


def compare_resnet(
    stages: Sequence[Sequence[int]] = ((64, 1, 1), (128, 1, 2), (256, 1, 2)),
    stem_channels: int = 64,
    hidden: int | None = None,
    norm: str = "bn",
    **kwargs: Any,
) -> SpikingResNet:
    """The benchmark's spiking ResNet: :class:`SpikingResNet` with BN through time and any stage layout."""
    return SpikingResNet(stages=[tuple(s) for s in stages], stem_channels=stem_channels, hidden=hidden, norm=norm, **kwargs)


if "compare_resnet" not in list_backbones():  # (the module may be imported twice: as __main__ and by name)
    register_backbone("compare_resnet")(compare_resnet)


def build_spikingjelly_twin(arch: dict[str, Any], num_classes: int = NUM_CLASSES, in_channels: int = 3) -> nn.Module:
    """``compare_resnet`` rebuilt from SpikingJelly's layers and LIF neuron (multi-step mode).

    Our charge ``H = c + λ·(V - c) + X`` equals SpikingJelly's ``H = V - (V - c)/τ + X`` with τ = 1/(1 - λ)
    and ``decay_input=False``; reset, threshold and the sigmoid surrogate are the same.
    """
    from spikingjelly.activation_based import layer, neuron, surrogate

    def lif() -> nn.Module:
        return neuron.LIFNode(tau=1.0 / (1.0 - DECAY), decay_input=False, v_threshold=V_TH, v_reset=0.0,
                              surrogate_function=surrogate.Sigmoid(alpha=ALPHA), detach_reset=False, step_mode="m")

    def conv_bn(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
        return nn.Sequential(layer.Conv2d(cin, cout, k, stride, k // 2, bias=False, step_mode="m"),
                             layer.BatchNorm2d(cout, step_mode="m"))

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1, self.sn1 = conv_bn(cin, cout, 3, stride), lif()
            self.conv2 = conv_bn(cout, cout, 3, 1)
            self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
            self.sn2 = lif()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.sn2(self.conv2(self.sn1(self.conv1(x))) + self.shortcut(x))

    cin = arch["stem_channels"]
    layers: list[nn.Module] = [conv_bn(in_channels, cin, 3, 1), lif()]
    for channels, blocks, stride in arch["stages"]:
        for i in range(blocks):
            layers.append(Block(cin, channels, stride if i == 0 else 1))
            cin = channels
    layers += [layer.AdaptiveAvgPool2d((1, 1), step_mode="m"), layer.Flatten(step_mode="m")]
    if arch.get("hidden"):
        layers += [layer.Linear(cin, arch["hidden"], step_mode="m"), lif()]
        cin = arch["hidden"]
    layers.append(layer.Linear(cin, num_classes, step_mode="m"))
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


# ============================================================================================ registry
def _build_spikingjelly(s: BenchSetting) -> Trainee:
    from spikingjelly.activation_based import functional as sj_functional

    torch.manual_seed(0)
    net = build_spikingjelly_twin(s.backbone_kwargs).to(s.device).train()
    opt = sgd(net)
    T = s.T

    def train(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        sj_functional.reset_net(net)
        with amp_context(x.device, s.amp):
            out = net(x.unsqueeze(0).expand(T, *x.shape))
            loss = F.cross_entropy(out.float().mean(0), y)
        loss.backward()
        opt.step()
        sj_functional.reset_net(net)
        return loss.detach()

    return Trainee(net, opt, train, f"{s.backbone_label} (spikingjelly layers)", T)


_BENCH = method_table()


def _on_revs_resnet(name: str) -> Callable[[BenchSetting], Trainee]:
    """RevSNN rows: the bench's, on a RevSResNet with the comparison network's stage widths and depths."""
    def build(s: BenchSetting) -> Trainee:
        stages = s.backbone_kwargs["stages"]
        kwargs = {"planes": [c for c, _, _ in stages], "layers": [n for _, n, _ in stages]}
        return _BENCH[name].build(replace(s, backbone="revs_resnet", backbone_kwargs=kwargs, label="revs_resnet"))

    return build


def _build_ide(s: BenchSetting) -> Trainee:
    """IDE on CIFARNet-F (its own feedback backbone and IF neuron), channels scaled like the shared network."""
    width = s.backbone_kwargs["stem_channels"] / BASE_CHANNELS[0]
    channels = [max(4, int(round(c * width))) for c in (128, 256, 512, 1024, 512)]
    return _BENCH["ide"].build(replace(s, backbone="ide_cifarnet_f", backbone_kwargs={"channels": channels},
                                       neuron=None, label="ide_cifarnet_f"))


#: the bench's method table with the comparison's rows: both neuron backends by default, RevSNN on the
#: network's reversible counterpart, the SpikingJelly twin, IDE on its feedback network (opt-in)
TABLE: dict[str, MethodEntry] = method_table(
    replace(_BENCH["bptt_inductor"], default=True),
    replace(_BENCH["bptt_triton"], default=True),
    MethodEntry("revsnn", _on_revs_resnet("revsnn"), "BPTT on RevSResNet (reversible blocks), same stage widths/depths, same LIF"),
    MethodEntry("revsnn_twin", _on_revs_resnet("revsnn_twin"), "BPTT on the same RevSResNet with reversible: false"),
    MethodEntry("spikingjelly", _build_spikingjelly,
                "the compare_resnet network from SpikingJelly layers + neuron.LIFNode(tau 2, decay_input False), BPTT"),
    MethodEntry("ide", _build_ide, "IDE on ide_cifarnet_f (feedback backbone)", default=False,
                available=lambda: hasattr(methods, "IDE")),
)


def select_methods(names: Sequence[str] | None, device: torch.device) -> list[str]:
    """The rows to run: ``names`` (aliases expanded; unknown names are a ``SystemExit``) or every default row
    this device can run; ``ann`` (the T x ANN reference) always first."""
    try:
        chosen = resolve_method_names(names, TABLE)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if names:
        return chosen
    return [n for n in chosen if TABLE[n].available() and (device.type == "cuda" or not TABLE[n].needs_cuda)]


# =============================================================================================== run
@dataclass
class CompareConfig:
    """Everything :func:`run_compare` needs (the CLI fills it from the arguments)."""

    device: torch.device
    Ts: list[int]
    depths: list[int]
    width: float
    batch: int
    steps: int
    warmup: int
    methods: list[str] | None = None
    amp: str | None = None
    arch: dict[str, Any] | None = None  # fixed layout (a preset): depth sweep off
    backbone_label: str = "compare_resnet"
    wait_idle: float = 0.0
    retries: int = 0
    max_foreign: float = 0.15
    quick: bool = False
    verbose: bool = True


def settings_of(cfg: CompareConfig) -> list[tuple[int, BenchSetting]]:
    """(depth, setting): the T sweep at the first depth, then the depth sweep at the first T (no duplicates)."""
    pairs: list[tuple[int, int]] = [(T, cfg.depths[0]) for T in cfg.Ts]
    if cfg.arch is None:
        pairs += [(cfg.Ts[0], d) for d in cfg.depths[1:]]
    out = []
    for T, d in dict.fromkeys(pairs):
        arch = cfg.arch if cfg.arch is not None else arch_for(cfg.width, d)
        out.append((d, BenchSetting(backbone="compare_resnet", num_classes=NUM_CLASSES, input_shape=INPUT_SHAPE, T=T,
                                    batch=cfg.batch, device=cfg.device, backbone_kwargs=arch, neuron=NEURON,
                                    amp=cfg.amp, label=cfg.backbone_label)))
    return out


def run_compare(cfg: CompareConfig) -> dict[str, Any]:
    """Measure every selected method at every setting (``lightning_snn.bench.run.run_bench``). Returns the
    records (``ok``), the failed / skipped ones (``errors``), the summary and the elapsed time."""
    names = select_methods(cfg.methods, cfg.device)
    timing = TimingOptions(steps=cfg.steps, warmup=cfg.warmup, wait_idle_s=cfg.wait_idle, retries=cfg.retries,
                           max_foreign_share=cfg.max_foreign)
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for depth, s in settings_of(cfg):
        done = run_bench([s], names, timing, table=TABLE)
        arch = {k: (list(map(list, v)) if k == "stages" else v) for k, v in s.backbone_kwargs.items()}
        for r in done:
            r.update(depth=depth, arch=arch, quick=cfg.quick)
        records += done
        if cfg.verbose:
            line = "  ".join(f"{r['method']} {r['step_time_s'] * 1e3:.0f}ms/{format_bytes(r['peak_mem_bytes'])}"
                             if r["status"] == "ok" else f"{r['method']} {r['status']}" for r in done)
            print(f"  T={s.T} depth={depth}: {line}  ({time.perf_counter() - t0:.0f}s)", flush=True)
    derive(records, group=("depth",))
    ok = [r for r in records if r["status"] == "ok"]
    errors = [r for r in records if r["status"] != "ok"]
    return {"records": ok, "errors": errors, "summary": summarize(ok, cfg), "elapsed_s": round(time.perf_counter() - t0, 1)}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or (isinstance(b, float) and math.isnan(b)):
        return None
    return round(a / b, 4)


def summarize(records: list[dict[str, Any]], cfg: CompareConfig) -> dict[str, Any]:
    """The target figures: ratios to T x ANN, to SpikingJelly, inductor speed-up, memory growth in T and depth."""
    by = {(r["method"], r["T"], r["depth"]): r for r in records}
    d0, T0 = cfg.depths[0], cfg.Ts[0]
    Ts = [T for T in cfg.Ts if any(k[1] == T and k[2] == d0 for k in by)]
    depths = sorted({k[2] for k in by if k[1] == T0})
    names = list(dict.fromkeys(r["method"] for r in records))
    get = lambda m, T, d, key: by[(m, T, d)][key] if (m, T, d) in by else None  # noqa: E731
    out: dict[str, Any] = {"depth_for_T_sweep": d0, "T_for_depth_sweep": T0}
    out["ratio_vs_ann_x_T"] = {m: {str(T): get(m, T, d0, "ratio_vs_ann_x_T") for T in Ts} for m in names if m != "ann"}
    out["inductor_speedup_vs_torch"] = {str(T): _ratio(get("bptt", T, d0, "step_time_s"), get("bptt_inductor", T, d0, "step_time_s")) for T in Ts}
    out["bptt_throughput_vs_spikingjelly"] = {
        str(T): _ratio(get("spikingjelly", T, d0, "step_time_s"), get("bptt", T, d0, "step_time_s")) for T in Ts}
    out["bptt_inductor_throughput_vs_spikingjelly"] = {
        str(T): _ratio(get("spikingjelly", T, d0, "step_time_s"), get("bptt_inductor", T, d0, "step_time_s")) for T in Ts}
    out["bptt_mem_vs_spikingjelly"] = {
        str(T): _ratio(get("bptt", T, d0, "peak_mem_bytes"), get("spikingjelly", T, d0, "peak_mem_bytes")) for T in Ts}
    out["revsnn_mem_ratio_vs_twin"] = {
        f"T{T}_depth{d}": _ratio(get("revsnn", T, d, "peak_mem_bytes"), get("revsnn_twin", T, d, "peak_mem_bytes"))
        for (m, T, d) in by if m == "revsnn"}
    out["revsnn_time_ratio_vs_twin"] = {
        f"T{T}_depth{d}": _ratio(get("revsnn", T, d, "step_time_s"), get("revsnn_twin", T, d, "step_time_s"))
        for (m, T, d) in by if m == "revsnn"}
    out["spike_bits_vs_float"] = {
        m: {str(T): {key: _ratio(get(f"{m}_bits", T, d0, key), get(m, T, d0, key))
                     for key in ("peak_mem_bytes", "saved_tensor_bytes", "step_time_s")} for T in Ts}
        for m in ("bptt", "dsr") if f"{m}_bits" in names and m in names}
    if len(Ts) > 1:
        lo, hi = Ts[0], Ts[-1]
        out[f"mem_growth_T{hi}_over_T{lo}"] = {
            m: {"peak": _ratio(get(m, hi, d0, "peak_mem_bytes"), get(m, lo, d0, "peak_mem_bytes")),
                "step_peak": _ratio(get(m, hi, d0, "step_peak_mem_bytes"), get(m, lo, d0, "step_peak_mem_bytes")),
                "saved_for_backward": _ratio(get(m, hi, d0, "saved_tensor_bytes"), get(m, lo, d0, "saved_tensor_bytes")),
                "saved_alive_at_once": _ratio(get(m, hi, d0, "saved_tensor_peak_bytes"), get(m, lo, d0, "saved_tensor_peak_bytes"))}
            for m in names}
        out["online_vs_bptt"] = {
            m: {str(T): {key: _ratio(get(m, T, d0, key), get("bptt", T, d0, key)) for key in ("peak_mem_bytes", "step_time_s")}
                for T in Ts}
            for m in ("sltt", "ottt") if m in names and "bptt" in names}
    if len(depths) > 1:
        lo, hi = depths[0], depths[-1]
        out[f"mem_growth_depth{hi}_over_depth{lo}"] = {
            m: {"peak": _ratio(get(m, T0, hi, "peak_mem_bytes"), get(m, T0, lo, "peak_mem_bytes")),
                "saved_for_backward": _ratio(get(m, T0, hi, "saved_tensor_bytes"), get(m, T0, lo, "saved_tensor_bytes"))}
            for m in names}
    out["targets"] = TARGETS
    out["checks"] = _checks(out, Ts)
    return out


def _checks(out: dict[str, Any], Ts: list[int]) -> dict[str, Any]:
    """The measured figure for each target (worst case over the sweep); compare with ``targets``."""
    def worst(values: Any, fn: Callable[..., Any]) -> float | None:
        vals = [v for v in (values.values() if isinstance(values, dict) else values) if v is not None]
        return fn(vals) if vals else None

    checks: dict[str, Any] = {
        "bptt_ratio_vs_ann_x_T_max": worst(out["ratio_vs_ann_x_T"].get("bptt", {}), max),
        "bptt_inductor_ratio_vs_ann_x_T_max": worst(out["ratio_vs_ann_x_T"].get("bptt_inductor", {}), max),
        "bptt_throughput_vs_spikingjelly_min": worst(out["bptt_throughput_vs_spikingjelly"], min),
        "bptt_inductor_throughput_vs_spikingjelly_min": worst(out["bptt_inductor_throughput_vs_spikingjelly"], min),
        "bptt_mem_vs_spikingjelly_max": worst(out["bptt_mem_vs_spikingjelly"], max),
        "revsnn_mem_ratio_vs_twin_max": worst(out["revsnn_mem_ratio_vs_twin"], max),
    }
    growth = out.get(f"mem_growth_T{Ts[-1]}_over_T{Ts[0]}", {}) if len(Ts) > 1 else {}
    for m in ("rate_bp_m", "rate_bp_s", "dsr", "bptt"):
        if m in growth:
            checks[f"{m}_mem_growth_T{Ts[-1]}_over_T{Ts[0]}"] = growth[m]["peak"]
    checks["rate_bp_dsr_mem_growth_in_T_max"] = worst(
        [growth[m]["peak"] for m in ("rate_bp_m", "rate_bp_s", "dsr") if m in growth], max)
    # Rate-BP's claim is about backward memory (O(L), not O(L·T)): the tensors saved for backward
    checks["rate_bp_saved_growth_in_T_max"] = worst(
        [growth[m]["saved_for_backward"] for m in ("rate_bp_m", "rate_bp_s") if m in growth], max)
    checks["sltt_ottt_mem_growth_in_T_max"] = worst([growth[m]["peak"] for m in ("sltt", "ottt") if m in growth], max)
    for m in ("sltt", "ottt"):
        if m in growth:
            checks[f"{m}_mem_growth_T{Ts[-1]}_over_T{Ts[0]}"] = growth[m]["peak"]
            checks[f"{m}_saved_alive_growth_T{Ts[-1]}_over_T{Ts[0]}"] = growth[m]["saved_alive_at_once"]
    return checks


# ============================================================================================= output
def plot_results(records: list[dict[str, Any]], summary: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """2x2 figure: step time per method, ratio to T x ANN vs T, peak memory vs T, peak memory vs depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    d0, T0 = summary["depth_for_T_sweep"], summary["T_for_depth_sweep"]
    names = list(dict.fromkeys(r["method"] for r in records))
    by = {(r["method"], r["T"], r["depth"]): r for r in records}
    Ts = sorted({r["T"] for r in records if r["depth"] == d0})
    depths = sorted({r["depth"] for r in records if r["T"] == T0})
    palette = plt.get_cmap("tab10").colors
    color = {m: palette[i % len(palette)] for i, m in enumerate(names)}  # one colour per method in every panel
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    base = [by[(m, T0, d0)] for m in names if (m, T0, d0) in by]
    ax.bar(range(len(base)), [r["step_time_s"] * 1e3 for r in base], color=[color[r["method"]] for r in base])
    if (("ann", T0, d0)) in by:
        ax.axhline(T0 * by[("ann", T0, d0)]["step_time_s"] * 1e3, color="k", ls="--", label=f"T x ANN step (T={T0})")
        ax.legend()
    ax.set_xticks(range(len(base)), [r["method"] for r in base], rotation=35, ha="right")
    ax.set_ylabel("step time (ms)")
    ax.set_title(f"training step, T={T0}, depth {d0}")
    for ax, key, xs, sweep, ylabel, scale in (
        (axes[0][1], "ratio_vs_ann_x_T", Ts, "T", "step time / (T x ANN step)", 1.0),
        (axes[1][0], "peak_mem_bytes", Ts, "T", "peak memory (MiB)", 2.0 ** -20),
        (axes[1][1], "peak_mem_bytes", depths, "depth", "peak memory (MiB)", 2.0 ** -20),
    ):
        for m in names:
            if key == "ratio_vs_ann_x_T" and m == "ann":
                continue
            pts = [(v, by[(m, v, d0) if sweep == "T" else (m, T0, v)].get(key)) for v in xs
                   if ((m, v, d0) if sweep == "T" else (m, T0, v)) in by]
            pts = [(a, b * scale) for a, b in pts if b is not None]
            if pts:
                ax.plot([a for a, _ in pts], [b for _, b in pts], marker="o", label=m, color=color[m])
        if key == "ratio_vs_ann_x_T":
            ax.axhline(TARGETS["bptt_ratio_vs_ann_x_T_max"], color="k", ls=":", label="target (BPTT)")
        ax.set_xticks(xs)
        ax.set_xlabel("T (time steps)" if sweep == "T" else "blocks per stage")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel} vs {sweep}" + (f" (depth {d0})" if sweep == "T" else f" (T={T0})"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_table(records: list[dict[str, Any]]) -> str:
    return bench_table(records, extra=[("depth", "depth", str)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``lightning-snn bench``'s parser (``source=False``) plus the comparison's network options."""
    p = build_parser(TABLE, source=False, prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0])
    p.set_defaults(out=None, device="auto")
    p.add_argument("--depths", type=positive_int, nargs="+", default=None, help="blocks per stage (default: 1 2; GPU 1 2 3)")
    p.add_argument("--width", type=float, default=None, help="channel multiplier of 64/128/256 (default 1; quick 1/4)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="resnet19-cifar10: the ResNet-19 layout at T=4, batch 128 (images/s on a GPU)")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    preset = PRESETS[args.preset] if args.preset else None
    Ts = flat(args.T) or (preset["T"] if preset else [2, 4, 8, 16] if gpu else [2, 4, 8])
    depths = args.depths or ([1] if preset else [1, 2, 3] if gpu else [1, 2])
    width = args.width or (0.25 if args.quick and not gpu else 1.0 if gpu else 0.5)
    batch = args.batch_size or (preset["batch"] if preset else 128 if gpu else 8 if args.quick else 16)
    steps = args.steps or (20 if gpu else 3 if args.quick else 5)
    warmup = max(args.warmup if args.warmup is not None else (3 if gpu else 1), 1)
    return CompareConfig(
        device=device, Ts=list(dict.fromkeys(Ts)), depths=list(dict.fromkeys(depths)), width=width, batch=batch,
        steps=steps, warmup=warmup, methods=flat(args.methods), amp=PRECISIONS[args.precision],
        arch=preset["arch"] if preset else None, backbone_label=preset["label"] if preset else "compare_resnet",
        wait_idle=args.wait_idle, retries=args.retries, max_foreign=args.max_foreign, quick=bool(args.quick),
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cfg = config_from_args(args)
    threads = setup_torch(cfg.device, args.threads or (1 if args.quick and cfg.device.type == "cpu" else None))
    name = BENCHMARK if not args.preset else f"{BENCHMARK}_{args.preset}"
    print(f"{name}: methods on {describe_device(cfg.device)} (torch {torch.__version__}, {threads} threads), "
          f"batch {cfg.batch}, T {cfg.Ts}, depths {cfg.depths}, width {cfg.width}, amp {cfg.amp}, "
          f"{cfg.warmup} warm-up + 1 memory + {cfg.steps} timed steps each", flush=True)
    load_start = load_average()
    result = run_compare(cfg)
    print()
    print(render_table(result["records"]))
    print()
    for k, v in result["summary"].items():
        print(f"{k}: {v}")
    if result["errors"]:
        print(f"\n{len(result['errors'])} method runs failed or were skipped:")
        print(bench_table(result["errors"], extra=[("depth", "depth", str)]))
    if not args.no_write:
        path = args.out or default_result_path(name, cfg.device)
        write_results(
            result["records"], cfg.device, path, benchmark=BENCHMARK, preset=args.preset, quick=cfg.quick,
            summary=result["summary"], errors=result["errors"], elapsed_s=result["elapsed_s"],
            loadavg_start=load_start, loadavg_end=load_average(),
            neuron=NEURON, input_shape=list(INPUT_SHAPE), width=cfg.width, amp=cfg.amp,
        )
        png = plot_results(result["records"], result["summary"], args.plot or Path(path).with_suffix(".png"),
                           title=f"{name} on {describe_device(cfg.device)}, batch {cfg.batch}")
        print(f"\nwrote {path} and {png}")
    return result


if __name__ == "__main__":
    main()
