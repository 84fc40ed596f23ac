"""The method table of ``lightning-snn bench``: how each training method builds and runs one training step.

Every method trains the *same* backbone (a registered name with its ``backbone_kwargs``, e.g. from a fit
config) on the same batch; a step is the method's own: ``module.compute_loss(module(x), y)``, backward,
``optimizer.step()`` (SGD, momentum 0.9), so neuron swaps (DSR, SLTT, OTTT), hooks (Rate-BP) and structural
backbones (RevSNN) are all in it. SLTT / OTTT run their own per-time-step loop (``run_sequence``).

==================  =====================================================================================
``ann``             the backbone with ReLU for every neuron, run once on ``[1, B, ...]``: the reference of
                    ``ratio_vs_ann_x_T = step_time / (T * ann step_time)``; always measured
``bptt``            :class:`~lightning_snn.methods.BPTT`, neuron backend ``torch`` (the reference)
``bptt_inductor``   the same, neuron backend ``inductor``; ``bptt_triton``: SpikingJelly's Triton kernels (CUDA)
``bptt_bits``       the same as ``bptt`` with ``spike_storage: bits`` (spike trains saved as 1 bit each)
``dsr``             :class:`~lightning_snn.methods.DSR` (its own IF neuron); ``dsr_bits`` with bit storage
``rate_bp_m`` / _s  :class:`~lightning_snn.methods.RateBP`, multi- / single-step mode (``rate_bp``: both)
``revsnn``          BPTT on a reversible backbone (``revs_resnet*``, ``revs_former*``); ``revsnn_twin``: the
                    same backbone with ``reversible: false`` (same weights layout, ordinary autograd)
``sltt`` / ``ottt`` :class:`~lightning_snn.methods.SLTT`, :class:`~lightning_snn.methods.OTTT` (variant A)
``ide``             :class:`~lightning_snn.methods.IDE`: needs a feedback backbone (``ide_*``)
==================  =====================================================================================

A method that cannot run the backbone is decided up front where the reason is structural
(:attr:`MethodEntry.supports`: IDE without a feedback backbone, RevSNN without a reversible one, a CUDA-only
backend on CPU); a ``ValueError`` / ``TypeError`` / ``NotImplementedError`` raised while the method is built
(e.g. Rate-BP meeting a stateful layer its hooks do not handle) also marks it skipped, with the message as
the reason. :func:`register_method` adds or replaces entries (the ``benchmarks/`` presets add their own).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import methods
from ..neurons import reset_states
from .harness import amp_context

__all__ = [
    "ALIASES",
    "METHODS",
    "BenchSetting",
    "MethodEntry",
    "Trainee",
    "Unsupported",
    "build_method",
    "method_table",
    "method_trainee",
    "online_trainee",
    "probe_backbone",
    "register_method",
    "resolve_method_names",
    "sgd",
    "skip_reason",
]


@dataclass(frozen=True)
class BenchSetting:
    """What every method of one measurement shares: backbone, data shape, T, batch, device, precision.

    ``neuron`` is the neuron spec of the BPTT family (``None``: the method's default); DSR and IDE always
    use their own neurons. ``label`` names the backbone in the records (default: ``backbone``).
    """

    backbone: str
    num_classes: int
    input_shape: tuple[int, int, int]
    T: int
    batch: int
    device: torch.device
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    neuron: dict[str, Any] | None = None
    amp: str | None = None
    label: str | None = None

    @property
    def backbone_label(self) -> str:
        return self.label or self.backbone


@dataclass
class Trainee:
    """A built method: its module, optimiser and ``train(x, y) -> loss`` (one full training step)."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    train: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    backbone: str
    T: int

    def step_on(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
        """The zero-argument step the timing loop and the memory accounting call."""
        return lambda: self.train(x, y)


@dataclass(frozen=True)
class MethodEntry:
    """A row of the method table: ``build(setting) -> Trainee``; ``supports(setting)`` returns the reason
    the method cannot run that setting (``None``: it can)."""

    name: str
    build: Callable[[BenchSetting], Trainee]
    description: str
    needs_cuda: bool = False
    default: bool = True
    available: Callable[[], bool] = field(default=lambda: True)
    supports: Callable[[BenchSetting], str | None] = field(default=lambda s: None)


METHODS: list[MethodEntry] = []

#: names that stand for several rows
ALIASES: dict[str, tuple[str, ...]] = {"rate_bp": ("rate_bp_m", "rate_bp_s")}


def register_method(entry: MethodEntry) -> MethodEntry:
    """Add (or replace, by name) a method of the table."""
    METHODS[:] = [m for m in METHODS if m.name != entry.name] + [entry]
    return entry


def sgd(module: nn.Module, lr: float = 0.01) -> torch.optim.Optimizer:
    """The optimiser of every benchmarked step: SGD, momentum 0.9."""
    return torch.optim.SGD(module.parameters(), lr=lr, momentum=0.9)


def method_trainee(module: nn.Module, setting: BenchSetting, T: int | None = None, lr: float = 0.01) -> Trainee:
    """A method module's own step: forward (encoding, state reset), its loss, backward, SGD step; the neurons'
    state is freed inside the step so that its release is not charged to the next one."""
    module = module.to(setting.device).train()
    opt = sgd(module, lr)

    def train(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with amp_context(x.device, setting.amp):
            loss = module.compute_loss(module(x), y)
        loss.backward()
        opt.step()
        reset_states(module)
        return loss.detach()

    return Trainee(module, opt, train, setting.backbone_label, T or setting.T)


def online_trainee(module: nn.Module, setting: BenchSetting, lr: float = 0.01) -> Trainee:
    """SLTT / OTTT: one backward pass per time step (``run_sequence``), then the update (every step for
    OTTT-O)."""
    module = module.to(setting.device).train()
    opt = sgd(module, lr)

    def update() -> None:
        opt.step()
        opt.zero_grad(set_to_none=True)

    def train(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with amp_context(x.device, setting.amp):
            outputs = module.run_sequence(x, y, backward=lambda loss: loss.backward(), update=update)
        if not module.updates_every_step:
            opt.step()
        reset_states(module)
        return module.compute_loss(outputs.float(), y).detach()

    return Trainee(module, opt, train, setting.backbone_label, setting.T)


def _module(cls: type, s: BenchSetting, T: int | None = None, backbone_kwargs: dict[str, Any] | None = None,
            **kwargs: Any) -> nn.Module:
    torch.manual_seed(0)
    return cls(backbone=s.backbone, num_classes=s.num_classes, input_shape=s.input_shape, T=T or s.T,
               backbone_kwargs=dict(s.backbone_kwargs if backbone_kwargs is None else backbone_kwargs), **kwargs)


def _neuron(s: BenchSetting, **override: Any) -> dict[str, Any] | None:
    if s.neuron is None and not override:
        return None
    return {**(s.neuron or {}), **override}


def _bptt(**kwargs: Any) -> Callable[[BenchSetting], Trainee]:
    backend = kwargs.pop("backend", None)

    def build(s: BenchSetting) -> Trainee:
        neuron = _neuron(s, backend=backend) if backend else _neuron(s)
        return method_trainee(_module(methods.BPTT, s, neuron=neuron, **kwargs), s)

    return build


def _reversible(flag: bool) -> Callable[[BenchSetting], Trainee]:
    def build(s: BenchSetting) -> Trainee:
        kwargs = {**s.backbone_kwargs, "reversible": flag}
        return method_trainee(_module(methods.BPTT, s, backbone_kwargs=kwargs, neuron=_neuron(s)), s)

    return build


def _build_ann(s: BenchSetting) -> Trainee:
    return method_trainee(_module(methods.SpikingClassifier, s, T=1, neuron=lambda: nn.ReLU()), s, T=1)


# ----------------------------------------------------------------------------------- up-front checks
@functools.lru_cache(maxsize=8)
def _probe(key: str) -> nn.Module | str:
    """The backbone as the BPTT family builds it (once per setting), or the error it raises."""
    import json

    spec = json.loads(key)
    try:
        module = methods.SpikingClassifier(T=1, **spec)
    except (ValueError, TypeError) as err:
        return f"{type(err).__name__}: {err}"
    return module.backbone


def probe_backbone(s: BenchSetting) -> nn.Module | str:
    """The setting's backbone built once (cached), or the error text when it cannot be built."""
    import json

    spec = {"backbone": s.backbone, "num_classes": s.num_classes, "input_shape": list(s.input_shape),
            "backbone_kwargs": s.backbone_kwargs, "neuron": s.neuron}
    return _probe(json.dumps(spec, sort_keys=True, default=str))


def _needs_feedback(s: BenchSetting) -> str | None:
    from ..backbones.feedback import FeedbackSNN

    net = probe_backbone(s)
    if isinstance(net, (FeedbackSNN, str)):  # (a backbone that cannot be built: the build reports why)
        return None
    return (f"IDE needs a feedback backbone exposing its equilibrium map (ide_conv, ide_fc, ide_alexnet_f, "
            f"ide_cifarnet_f); {s.backbone!r} is not one")


def _needs_reversible(s: BenchSetting) -> str | None:
    from ..backbones.reversible import ReversibleBackboneMixin

    net = probe_backbone(s)
    if isinstance(net, (ReversibleBackboneMixin, str)):
        return None
    return f"RevSNN needs a reversible backbone (revs_resnet*, revs_former*); {s.backbone!r} is not one"


def _rate_bp_layers(s: BenchSetting) -> str | None:
    from ..neurons import BaseNode

    net = probe_backbone(s)
    if isinstance(net, str):
        return None  # the build reports it
    others = sorted({type(m).__name__ for m in net.modules() if getattr(m, "is_stateful", False)
                     and not isinstance(m, BaseNode)})
    if others:
        return f"Rate-BP's hooks handle IF/LIF (BaseNode) neurons only; {s.backbone!r} holds stateful {others}"
    return None


for _entry in (
    MethodEntry("ann", _build_ann, "same backbone, ReLU for every neuron, input [1, B, ...] (T x ANN reference)"),
    MethodEntry("bptt", _bptt(), "BPTT, the backbone's neuron, backend torch"),
    MethodEntry("bptt_inductor", _bptt(backend="inductor"), "BPTT, neuron backend inductor (torch.compile)",
                default=False),
    MethodEntry("bptt_triton", _bptt(backend="triton"), "BPTT, neuron backend triton (SpikingJelly's kernels)",
                needs_cuda=True, default=False),
    MethodEntry("bptt_bits", _bptt(spike_storage="bits"), "BPTT, saved spike trains stored as bits"),
    MethodEntry("dsr", lambda s: method_trainee(_module(methods.DSR, s), s), "DSR, its IF neuron (V_th 6, alpha 0.5)"),
    MethodEntry("dsr_bits", lambda s: method_trainee(_module(methods.DSR, s, spike_storage="bits"), s),
                "DSR, saved spike trains stored as bits"),
    MethodEntry("rate_bp_m", lambda s: method_trainee(_module(methods.RateBP, s, neuron=_neuron(s), step_mode="m"), s),
                "Rate-BP, multi-step mode", supports=_rate_bp_layers),
    MethodEntry("rate_bp_s", lambda s: method_trainee(_module(methods.RateBP, s, neuron=_neuron(s), step_mode="s"), s),
                "Rate-BP, single-step mode", supports=_rate_bp_layers),
    MethodEntry("revsnn", _reversible(True), "BPTT on the reversible backbone", supports=_needs_reversible),
    MethodEntry("revsnn_twin", _reversible(False), "BPTT on the same backbone with reversible: false",
                supports=_needs_reversible),
    MethodEntry("sltt", lambda s: online_trainee(_module(methods.SLTT, s, neuron=_neuron(s)), s),
                "SLTT: temporal gradient path cut, one backward per time step",
                available=lambda: hasattr(methods, "SLTT")),
    MethodEntry("ottt", lambda s: online_trainee(_module(methods.OTTT, s, neuron=_neuron(s)), s),
                "OTTT_A: SLTT's step plus presynaptic-trace weight gradients, one update per batch",
                available=lambda: hasattr(methods, "OTTT")),
    MethodEntry("ide", lambda s: method_trainee(_module(methods.IDE, s, neuron=_neuron(s)), s), "IDE on a feedback backbone",
                available=lambda: hasattr(methods, "IDE"), supports=_needs_feedback),
):
    register_method(_entry)


def method_table(*extra: MethodEntry) -> dict[str, MethodEntry]:
    """The registry by name, with ``extra`` entries added or replacing same-named ones (a preset's own table,
    without changing the registry)."""
    return {m.name: m for m in (*METHODS, *extra)}


def resolve_method_names(names: Sequence[str] | None, table: Mapping[str, MethodEntry] | None = None) -> list[str]:
    """``names`` with aliases expanded and ``ann`` first (the T x ANN reference is always measured); ``None``:
    every default entry. Unknown names are a ``ValueError`` listing the table."""
    by_name = dict(table or method_table())
    if not names:
        chosen = [n for n, m in by_name.items() if m.default]
    else:
        chosen = []
        for n in names:
            for k in ALIASES.get(n, (n,)):
                if k not in by_name:
                    raise ValueError(f"--methods: unknown method {n!r}; available: {sorted([*by_name, *ALIASES])}")
                chosen.append(k)
    chosen = list(dict.fromkeys(chosen))
    return ["ann", *[n for n in chosen if n != "ann"]]


def skip_reason(entry: MethodEntry, s: BenchSetting) -> str | None:
    """Why ``entry`` cannot run ``s`` (decided without building it), or None."""
    if not entry.available():
        return f"{entry.name} is not available in this installation"
    if entry.needs_cuda and s.device.type != "cuda":
        return f"{entry.name} needs a CUDA device"
    return entry.supports(s)


class Unsupported(Exception):
    """A method refused the setting while it was built (the reason is the message)."""


def build_method(name: str, s: BenchSetting, table: Mapping[str, MethodEntry] | None = None) -> Trainee:
    """Build method ``name`` (of ``table``, default the registry) for ``s``; a ``ValueError`` / ``TypeError`` /
    ``NotImplementedError`` from the method's constructor (it refuses the backbone or an argument) becomes
    :class:`Unsupported`."""
    entry = (table or method_table())[name]
    reason = skip_reason(entry, s)
    if reason is not None:
        raise Unsupported(reason)
    try:
        return entry.build(s)
    except (ValueError, TypeError, NotImplementedError) as err:
        raise Unsupported(f"{type(err).__name__}: {err}") from err
