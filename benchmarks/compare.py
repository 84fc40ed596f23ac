"""Method comparison: step time and peak memory of every training method on the same network and data.

Each method of the library trains the same spiking ResNet (``compare_resnet``: a 3x3 stem and three stages
of ``depth`` basic blocks, BN through time, the same LIF neuron everywhere: leak factor λ = 0.5,
V_th = 1, hard reset to 0, sigmoid surrogate α = 4) on the same CIFAR-shaped batch ``[B, 3, 32, 32]`` with
direct encoding, for a few SGD steps; the step is the method's own (``module.compute_loss(module(x), y)``,
backward, ``optimizer.step()``), so neuron swaps (DSR), hooks (Rate-BP) and structural backbones (RevSNN)
are all in it. The method table is a registry (:data:`METHODS`, :func:`register_method`):

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
(at the first T). At every setting all methods' steps are interleaved (``lightning_snn.bench.harness.interleaved_timing``)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_snn.bench.harness import (  # noqa: E402
    add_common_args,
    amp_context,
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
from lightning_snn import methods  # noqa: E402
from lightning_snn.backbones import SpikingResNet, list_backbones, register_backbone  # noqa: E402
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
@dataclass(frozen=True)
class Setting:
    """One point of the sweep (shared by all methods)."""

    T: int
    depth: int
    arch: dict[str, Any]
    batch: int
    device: torch.device
    amp: str | None = None
    backbone_label: str = "compare_resnet"


@dataclass
class Trainee:
    """A built method: the module (for parameter / optimiser memory), its optimiser and one training step."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    step: Callable[[], None]
    backbone: str
    T: int


@dataclass(frozen=True)
class MethodEntry:
    """A row of the method table: ``build(setting, x, y) -> Trainee``."""

    name: str
    build: Callable[[Setting, torch.Tensor, torch.Tensor], Trainee]
    description: str
    needs_cuda: bool = False
    default: bool = True
    available: Callable[[], bool] = field(default=lambda: True)


METHODS: list[MethodEntry] = []


def register_method(entry: MethodEntry) -> MethodEntry:
    """Add (or replace, by name) a method of the comparison."""
    METHODS[:] = [m for m in METHODS if m.name != entry.name] + [entry]
    return entry


def _sgd(module: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)


def method_step(module: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                amp: str | None, reset: Callable[[nn.Module], None] = reset_states) -> Callable[[], None]:
    """One training step of a method module: its own forward (encoding, state reset) and loss."""

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with amp_context(x.device, amp):
            loss = module.compute_loss(module(x), y)
        loss.backward()
        optimizer.step()
        reset(module)  # free the neurons' state inside the step (its release is not a later step's cost)

    return step


def _lightning(cls: type, s: Setting, x: torch.Tensor, y: torch.Tensor, T: int | None = None,
               backbone: str = "compare_resnet", backbone_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> Trainee:
    torch.manual_seed(0)
    module = cls(backbone=backbone, num_classes=NUM_CLASSES, input_shape=INPUT_SHAPE, T=T or s.T,
                 backbone_kwargs=dict(s.arch if backbone_kwargs is None else backbone_kwargs), **kwargs)
    module = module.to(s.device).train()
    opt = _sgd(module)
    return Trainee(module, opt, method_step(module, opt, x, y, s.amp), backbone if backbone != "compare_resnet" else s.backbone_label, T or s.T)


def _build_online(cls: type, s: Setting, x: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> Trainee:
    """SLTT / OTTT: their own step, one backward pass per time step (``run_sequence``), then the update."""
    torch.manual_seed(0)
    module = cls(backbone="compare_resnet", num_classes=NUM_CLASSES, input_shape=INPUT_SHAPE, T=s.T,
                 backbone_kwargs=dict(s.arch), neuron=_neuron(), **kwargs).to(s.device).train()
    opt = _sgd(module)

    def update() -> None:
        opt.step()
        opt.zero_grad(set_to_none=True)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with amp_context(x.device, s.amp):
            module.run_sequence(x, y, backward=lambda loss: loss.backward(), update=update)
        if not module.updates_every_step:
            opt.step()
        reset_states(module)

    return Trainee(module, opt, step, s.backbone_label, s.T)


def _neuron(**override: Any) -> dict[str, Any]:
    return {**NEURON, **override}


def _build_ann(s: Setting, x: torch.Tensor, y: torch.Tensor) -> Trainee:
    return _lightning(methods.SpikingClassifier, s, x, y, T=1, neuron=lambda: nn.ReLU())


def _build_spikingjelly(s: Setting, x: torch.Tensor, y: torch.Tensor) -> Trainee:
    from spikingjelly.activation_based import functional as sj_functional

    torch.manual_seed(0)
    net = build_spikingjelly_twin(s.arch).to(s.device).train()
    opt = _sgd(net)
    T = s.T

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        sj_functional.reset_net(net)
        with amp_context(x.device, s.amp):
            out = net(x.unsqueeze(0).expand(T, *x.shape))
            loss = F.cross_entropy(out.float().mean(0), y)
        loss.backward()
        opt.step()
        sj_functional.reset_net(net)

    return Trainee(net, opt, step, f"{s.backbone_label} (spikingjelly layers)", T)


def _revs_kwargs(s: Setting, reversible: bool) -> dict[str, Any]:
    stages = s.arch["stages"]
    return {"planes": [c for c, _, _ in stages], "layers": [n for _, n, _ in stages], "reversible": reversible}


def _build_ide(s: Setting, x: torch.Tensor, y: torch.Tensor) -> Trainee:
    """IDE on CIFARNet-F (its own feedback backbone and IF neuron), channels scaled like the shared network."""
    width = s.arch["stem_channels"] / BASE_CHANNELS[0]
    channels = [max(4, int(round(c * width))) for c in (128, 256, 512, 1024, 512)]
    return _lightning(methods.IDE, s, x, y, backbone="ide_cifarnet_f", backbone_kwargs={"channels": channels})


for _entry in (
    MethodEntry("ann", _build_ann, "same backbone, ReLU for every neuron, input [1, B, ...] (T x ANN reference)"),
    MethodEntry("bptt", lambda s, x, y: _lightning(methods.BPTT, s, x, y, neuron=_neuron()),
                "BPTT, LIF (decay 0.5, V_th 1, reset to 0, sigmoid 4), neuron backend torch"),
    MethodEntry("bptt_inductor", lambda s, x, y: _lightning(methods.BPTT, s, x, y, neuron=_neuron(backend="inductor")),
                "BPTT, same LIF, neuron backend inductor (torch.compile'd forward loop and backward sweep)"),
    MethodEntry("bptt_triton", lambda s, x, y: _lightning(methods.BPTT, s, x, y, neuron=_neuron(backend="triton")),
                "BPTT, same LIF, neuron backend triton (SpikingJelly's Triton kernels)", needs_cuda=True),
    MethodEntry("bptt_bits", lambda s, x, y: _lightning(methods.BPTT, s, x, y, neuron=_neuron(), spike_storage="bits"),
                "BPTT, same LIF, backend torch, saved spike trains stored as bits (spike_storage: bits)"),
    MethodEntry("dsr", lambda s, x, y: _lightning(methods.DSR, s, x, y), "DSR, its IF neuron (V_th 6, alpha 0.5, trainable)"),
    MethodEntry("dsr_bits", lambda s, x, y: _lightning(methods.DSR, s, x, y, spike_storage="bits"),
                "DSR, same IF neuron, saved spike trains stored as bits"),
    MethodEntry("rate_bp_m", lambda s, x, y: _lightning(methods.RateBP, s, x, y, neuron=_neuron(), step_mode="m"),
                "Rate-BP, multi-step mode, same LIF"),
    MethodEntry("rate_bp_s", lambda s, x, y: _lightning(methods.RateBP, s, x, y, neuron=_neuron(), step_mode="s"),
                "Rate-BP, single-step mode, same LIF"),
    MethodEntry("revsnn", lambda s, x, y: _lightning(methods.BPTT, s, x, y, backbone="revs_resnet",
                                                      backbone_kwargs=_revs_kwargs(s, True), neuron=_neuron()),
                "BPTT on RevSResNet (reversible blocks), same stage widths/depths, same LIF"),
    MethodEntry("revsnn_twin", lambda s, x, y: _lightning(methods.BPTT, s, x, y, backbone="revs_resnet",
                                                           backbone_kwargs=_revs_kwargs(s, False), neuron=_neuron()),
                "BPTT on the same RevSResNet with reversible: false"),
    MethodEntry("spikingjelly", _build_spikingjelly,
                "the compare_resnet network from SpikingJelly layers + neuron.LIFNode(tau 2, decay_input False), BPTT"),
    MethodEntry("sltt", lambda s, x, y: _build_online(methods.SLTT, s, x, y),
                "SLTT: the same LIF with the temporal gradient path cut, one backward pass per time step",
                available=lambda: hasattr(methods, "SLTT")),
    MethodEntry("ottt", lambda s, x, y: _build_online(methods.OTTT, s, x, y),
                "OTTT_A: SLTT's step plus presynaptic-trace weight gradients (hooks), one update per batch",
                available=lambda: hasattr(methods, "OTTT")),
    MethodEntry("ide", _build_ide, "IDE on ide_cifarnet_f (feedback backbone)", default=False,
                available=lambda: hasattr(methods, "IDE")),
):
    register_method(_entry)


def select_methods(names: Sequence[str] | None, device: torch.device) -> list[MethodEntry]:
    """The registry entries to run: ``names`` (all must exist) or every default entry this device can run."""
    by_name = {m.name: m for m in METHODS}
    if names:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise SystemExit(f"--methods: unknown {unknown}; available: {sorted(by_name)}")
        chosen = [by_name[n] for n in names]
        for m in chosen:
            if not m.available():
                raise SystemExit(f"--methods {m.name}: not available in this installation")
            if m.needs_cuda and device.type != "cuda":
                raise SystemExit(f"--methods {m.name}: needs a CUDA device")
    else:
        chosen = [m for m in METHODS if m.default and m.available() and (device.type == "cuda" or not m.needs_cuda)]
    if "ann" not in {m.name for m in chosen}:
        chosen.insert(0, by_name["ann"])  # the T x ANN reference is always measured
    return chosen


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


def settings_of(cfg: CompareConfig) -> list[Setting]:
    """T sweep at the first depth, then the depth sweep at the first T (no duplicates)."""
    pairs: list[tuple[int, int]] = [(T, cfg.depths[0]) for T in cfg.Ts]
    if cfg.arch is None:
        pairs += [(cfg.Ts[0], d) for d in cfg.depths[1:]]
    out = []
    for T, d in dict.fromkeys(pairs):
        arch = cfg.arch if cfg.arch is not None else arch_for(cfg.width, d)
        out.append(Setting(T=T, depth=d, arch=arch, batch=cfg.batch, device=cfg.device, amp=cfg.amp,
                           backbone_label=cfg.backbone_label))
    return out


def run_compare(cfg: CompareConfig) -> dict[str, Any]:
    """Build, warm up, measure and time every selected method at every setting. Returns records + summary."""
    device = cfg.device
    entries = select_methods(cfg.methods, device)
    x, y = make_batch(cfg.batch, INPUT_SHAPE, NUM_CLASSES, device)
    records: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for s in settings_of(cfg):
        trainees: dict[str, Trainee] = {}
        mems: dict[str, dict[str, Any]] = {}
        for entry in entries:
            try:
                tr = entry.build(s, x, y)
                for _ in range(max(cfg.warmup, 1)):  # optimiser state exists, compilation done
                    tr.step()
                reset_states(tr.module)
                mems[entry.name] = dict(measure_step_memory(tr.step, tr.module, tr.optimizer, [x, y], device))
                trainees[entry.name] = tr
            except Exception as err:  # keep going: one broken method must not hide the others' figures
                errors.append({"method": entry.name, "T": s.T, "depth": s.depth, "error": f"{type(err).__name__}: {err}"})
                if cfg.verbose:
                    print(f"  ! {entry.name} T={s.T} depth={s.depth}: {type(err).__name__}: {err}", flush=True)
        times, contention = interleaved_timing(
            {n: tr.step for n, tr in trainees.items()}, cfg.steps, device,
            wait_idle_s=cfg.wait_idle, retries=cfg.retries, max_foreign_share=cfg.max_foreign,
        )
        ann_t = median(times["ann"]) if "ann" in times else math.nan
        ann_min = min(times["ann"]) if "ann" in times else math.nan
        for name, tr in trainees.items():
            t_med, t_min = median(times[name]), min(times[name])
            rec = {
                "method": name,
                "backbone": tr.backbone,
                "T": s.T,
                "run_T": tr.T,
                "depth": s.depth,
                "batch_size": s.batch,
                "step_time_s": t_med,
                "step_time_min_s": t_min,
                "images_per_s": s.batch / t_med,
                "ratio_vs_ann_x_T": t_med / (s.T * ann_t) if name != "ann" else None,
                "ratio_vs_ann_x_T_min": t_min / (s.T * ann_min) if name != "ann" else None,
                **mems[name],
                "params": sum(p.numel() for p in tr.module.parameters()),
                "amp": s.amp,
                "arch": {k: (list(map(list, v)) if k == "stages" else v) for k, v in s.arch.items()},
                "description": next(e.description for e in entries if e.name == name),
                **contention,
                "step_times_s": times[name],
                "quick": cfg.quick,
            }
            records.append(rec)
        by = {r["method"]: r for r in records if r["T"] == s.T and r["depth"] == s.depth}
        if "bptt" in by:
            for r in by.values():
                r["ratio_vs_bptt"] = r["step_time_s"] / by["bptt"]["step_time_s"]
                r["mem_ratio_vs_bptt"] = r["peak_mem_bytes"] / by["bptt"]["peak_mem_bytes"]
        if cfg.verbose:
            line = "  ".join(f"{n} {median(times[n]) * 1e3:.0f}ms/{format_bytes(mems[n]['peak_mem_bytes'])}" for n in trainees)
            print(f"  T={s.T} depth={s.depth}: {line}  (others' cpu {contention['foreign_cpu_share']}, "
                  f"{time.perf_counter() - t0:.0f}s)", flush=True)
        del trainees
    return {"records": records, "errors": errors, "summary": summarize(records, cfg),
            "elapsed_s": round(time.perf_counter() - t0, 1)}


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
    f2 = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    cols = [
        ("T", "T", str), ("depth", "depth", str), ("method", "method", str),
        ("step_time_s", "step ms", lambda v: f"{v * 1e3:.1f}"),
        ("images_per_s", "img/s", lambda v: f"{v:.1f}"),
        ("ratio_vs_ann_x_T", "t/(T*ann)", f2), ("ratio_vs_bptt", "t/bptt", f2),
        ("peak_mem_bytes", "peak mem", format_bytes), ("mem_ratio_vs_bptt", "mem/bptt", f2),
        ("saved_tensor_bytes", "saved for bwd", format_bytes),
        ("saved_tensor_peak_bytes", "saved alive", format_bytes),
        ("foreign_cpu_share", "others' cpu", lambda v: "-" if v is None else f"{100 * v:.0f}%"),
    ]
    return format_table(records, cols)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, BENCHMARK, default_device="auto", amp=True,
                    quick_help="CPU run of a few minutes: width x1/4, batch 8, T 2 4 8, depths 1 2, 3 timed steps, 1 thread")
    p.add_argument("--methods", nargs="+", default=None, help=f"subset of the registry (default: all that run here)")
    p.add_argument("--T", type=positive_int, nargs="+", default=None, help="time steps (default: 2 4 8; GPU 2 4 8 16)")
    p.add_argument("--depths", type=positive_int, nargs="+", default=None, help="blocks per stage (default: 1 2; GPU 1 2 3)")
    p.add_argument("--width", type=float, default=None, help="channel multiplier of 64/128/256 (default 1; quick 1/4)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="resnet19-cifar10: the ResNet-19 layout at T=4, batch 128 (images/s on a GPU)")
    p.add_argument("--plot", type=Path, default=None, help="PNG path (default: next to the JSON)")
    args = p.parse_args(argv)
    return args


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    preset = PRESETS[args.preset] if args.preset else None
    Ts = args.T or (preset["T"] if preset else [2, 4, 8, 16] if gpu else [2, 4, 8])
    depths = args.depths or ([1] if preset else [1, 2, 3] if gpu else [1, 2])
    width = args.width or (0.25 if args.quick and not gpu else 1.0 if gpu else 0.5)
    batch = args.batch_size or (preset["batch"] if preset else 128 if gpu else 8 if args.quick else 16)
    steps = args.steps or (20 if gpu else 3 if args.quick else 5)
    warmup = max(args.warmup if args.warmup is not None else (3 if gpu else 1), 1)
    return CompareConfig(
        device=device, Ts=list(dict.fromkeys(Ts)), depths=list(dict.fromkeys(depths)), width=width, batch=batch,
        steps=steps, warmup=warmup, methods=args.methods, amp=args.amp, arch=preset["arch"] if preset else None,
        backbone_label=preset["label"] if preset else "compare_resnet", wait_idle=args.wait_idle,
        retries=args.retries, max_foreign=args.max_foreign, quick=bool(args.quick),
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
        print(f"\n{len(result['errors'])} method runs failed: {result['errors']}")
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
