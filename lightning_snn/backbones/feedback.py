"""Feedback spiking networks of IDE (Xiao et al., "Training Feedback Spiking Neural Networks by Implicit
Differentiation on the Equilibrium State", NeurIPS 2021), exposing their equilibrium map.

A feedback SNN has an input layer ``F_x`` (the only place the data enter), a chain of hidden spiking layers
``F_1 .. F_N`` and a feedback connection ``W_fb`` from the last hidden layer back to the first one. With
reset by subtraction and leak factor λ (λ = 1: IF), simulating it for ``T`` steps (Sec. 3.1)::

    u_1[t] = λ·v_1[t-1] + F_x(x[t]) + W_fb(s_N[t-1])     (no feedback at t = 0)
    u_l[t] = λ·v_l[t-1] + F_{l-1}(s_{l-1}[t])              l = 2..N
    s_l[t] = Θ(u_l[t] - V_th),   v_l[t] = u_l[t] - V_th·s_l[t]

gives the (weighted) average firing rates ``a_l[T] = Σ_t λ^{T-1-t} s_l[t] / Σ_t λ^t``, which converge to
the equilibrium of the map (Theorems 1-3 of the paper; "f_last" in its multi-layer form)::

    a_1 = clamp((W_fb a_N + F_x(x̄)) / V_th, 0, 1),   a_l = clamp(F_{l-1}(a_{l-1}) / V_th, 0, 1)
    => a_N = f(a_N, x̄)

where ``x̄`` is the (weighted) average input. :class:`FeedbackSNN` provides the simulation
(:meth:`~FeedbackSNN.simulate`), the map (:meth:`~FeedbackSNN.equilibrium_map`) and the classifier on
``a_N``; :class:`lightning_snn.methods.IDE` trains it by implicit differentiation. Its plain
``forward([T, B, ...]) -> [T, B, K]`` runs the same simulation with surrogate gradients, so BPTT can train
the same network for comparison.

Registered networks (Sec. 5, Table 1-3 of the paper):

* ``ide_conv``: "64C5s (F64C5)", MNIST / N-MNIST;
* ``ide_fc``: "400 (F400)", Fashion-MNIST;
* ``ide_alexnet_f``: AlexNet-F, 96C3s-256C3-384C3s-384C3-256C3 (F96C3u), CIFAR;
* ``ide_cifarnet_f``: CIFARNet-F, 128C3s-256C3-512C3s-1024C3-512C3 (F128C3u), CIFAR.

As in the paper's code (``modules/snn_modules.py``, ``modules/optimizations.py``), weights start as
per-filter unit-norm uniform draws with zero biases, the feedback weight is spectrally normalised with a
learnable gain clipped to [-1, 1] (keeps ``f`` contractive; initialised and advanced as the code does, see
:func:`spectral_normalize`), and dropout draws one mask per sample and element, used at all time steps
and in the equilibrium map.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..neurons import BaseNode, build_neuron_factory
from .registry import register_backbone

__all__ = [
    "FeedbackSNN",
    "SynapticLayer",
    "VariationalDropout",
    "IDE_IF",
    "frozen_batchnorm_stats",
    "hidden_batchnorm_eval",
    "ide_alexnet_f",
    "ide_cifarnet_f",
    "ide_conv",
    "ide_fc",
    "spectral_normalize",
]

#: Per-channel ``(mean, variance, eps)`` that a BatchNorm normalises with (``SynapticLayer.forward``).
BatchStats = tuple[torch.Tensor, torch.Tensor, float]

#: The IF neuron of the IDE experiments: V_th = 2, reset by subtraction (LIF: add ``type: lif, decay: λ``).
IDE_IF: dict[str, Any] = {"type": "if", "v_threshold": 2.0, "v_reset": None}


class VariationalDropout(nn.Module):
    """Dropout with one mask per sample batch, reused at every time step and in the equilibrium map
    (the "variational" hidden dropout of the IDE code). The mask is cleared by ``reset_states``."""

    is_stateful = True

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {p}")
        self.p = float(p)
        self.mask: torch.Tensor | None = None

    def reset(self) -> None:
        self.mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.mask is None:
            self.mask = torch.empty_like(x).bernoulli_(1.0 - self.p).div_(1.0 - self.p)
        elif self.mask.shape != x.shape:
            raise RuntimeError(
                f"VariationalDropout: input {tuple(x.shape)} does not match the mask {tuple(self.mask.shape)}; "
                "call reset_states(model) before a new batch"
            )
        return x * self.mask

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class _GainSpectralNorm(nn.Module):
    """Parametrization ``W -> clamp(g, -r, r) · W / σ`` of the feedback weights, computed as the IDE code's
    ``WeightSpectralNorm`` (``modules/optimizations.py``) computes it.

    * σ = ``uᵀ M v`` with ``M`` the weight reshaped to ``[weight.shape[0], -1]``: ``[out, in·k·k]`` for a
      convolution, but ``[in, out·k·k]`` for a transposed convolution (weight ``[in, out, k, k]``), the code's
      ``dim=0`` reshape.
    * ``u``, ``v`` (buffers) start as normalised N(0, 1) draws (``u`` first) and advance by one power
      iteration at construction (the code computes the weight once when it installs the norm) and by one
      more in :meth:`reset`, which ``reset_states`` calls before every sample batch, in training and in
      evaluation alike (the code's ``_reset`` runs at every forward). Every use of the weight within a
      batch (all time steps, the equilibrium map, the backward solve) sees the same σ.
    * ``g`` starts at σ estimated by 10 power iterations from a second, independent pair of N(0, 1) draws
      (the code's ``compute_spectral_norm``), *not* clipped: the clip is applied in the forward, so while
      ``|g| > r`` it passes no gradient to ``g`` and only weight decay moves it.

    At the first step the effective scale ``clamp(g, -r, r) / σ`` therefore compares a 10-iteration
    estimate with a 2-iteration one from a random start, as in the official runs. Random draws are taken
    in the code's order (``u``, ``v``, then the gain's pair), so on CPU with the same generator state they
    are the code's draws.
    """

    is_stateful = True

    def __init__(self, weight: torch.Tensor, norm_range: float) -> None:
        super().__init__()
        self.norm_range = float(norm_range)
        mat = self._matrix(weight.detach())
        self.register_buffer("u", F.normalize(torch.randn(mat.shape[0], dtype=mat.dtype), dim=0, eps=1e-12))
        self.register_buffer("v", F.normalize(torch.randn(mat.shape[1], dtype=mat.dtype), dim=0, eps=1e-12))
        u = F.normalize(torch.randn(mat.shape[0], dtype=mat.dtype), dim=0, eps=1e-12)
        v = F.normalize(torch.randn(mat.shape[1], dtype=mat.dtype), dim=0, eps=1e-12)
        u, v = _power_iteration(mat, u, v, 10)
        self.gain = nn.Parameter(torch.dot(u, mat @ v))
        self._advance(mat)

    @staticmethod
    def _matrix(weight: torch.Tensor) -> torch.Tensor:
        return weight.reshape(weight.shape[0], -1)

    @torch.no_grad()
    def _advance(self, mat: torch.Tensor) -> None:
        u, v = _power_iteration(mat, self.u, self.v, 1)
        self.u.copy_(u)
        self.v.copy_(v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):  # σ in the weight's own precision
            sigma = torch.dot(self.u.to(weight.dtype), torch.mv(self._matrix(weight), self.v.to(weight.dtype)))
        return self.gain.clamp(-self.norm_range, self.norm_range) * weight / sigma

    def reset(self) -> None:
        self._advance(self._matrix(self._original.detach()))

    @property
    def _original(self) -> torch.Tensor:
        return self._owner.parametrizations.weight.original


def _power_iteration(mat: torch.Tensor, u: torch.Tensor, v: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` power iterations ``v <- norm(Mᵀu), u <- norm(Mv)`` (the start ``v`` only sets the shape)."""
    with torch.no_grad():
        for _ in range(steps):
            v = F.normalize(mat.t() @ u, dim=0, eps=1e-12)
            u = F.normalize(mat @ v, dim=0, eps=1e-12)
    return u, v


def spectral_normalize(module: nn.Module, norm_range: float = 1.0, name: str = "weight") -> nn.Module:
    """Reparametrise ``module.weight`` as ``clamp(g, -r, r) · W / σ(W)`` (σ: power-iteration estimate of the
    spectral norm), initialised and advanced as the IDE code does (:class:`_GainSpectralNorm`). Bounding
    the feedback weight's norm keeps the equilibrium map contractive (IDE, Sec. 4.3)."""
    if name != "weight":
        raise ValueError("spectral_normalize: only the weight of a layer can be normalised")
    param = _GainSpectralNorm(module.weight, norm_range)
    parametrize.register_parametrization(module, name, param)
    object.__setattr__(param, "_owner", module)  # not a submodule: avoids a reference cycle in the module tree
    return module


def _unit_norm_init(op: nn.Module) -> None:
    """Uniform(-1, 1) weights with every output filter scaled to unit norm, zero biases (IDE code's init)."""
    with torch.no_grad():
        w = op.weight
        w.uniform_(-1.0, 1.0)
        filters = w.transpose(0, 1) if isinstance(op, nn.ConvTranspose2d) else w
        filters.div_(filters.reshape(filters.shape[0], -1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (w.dim() - 1)))
        if op.bias is not None:
            op.bias.zero_()


class SynapticLayer(nn.Module):
    """One weight layer of a feedback SNN: ``op`` (conv / transposed conv / linear), optional BatchNorm,
    then :class:`VariationalDropout` (which validates ``dropout``).

    ``forward(x, stats=(mean, var, eps))`` normalises with the given statistics instead of the batch's:
    the input layer uses the statistics of the average input at every time step of an event sample.
    """

    def __init__(self, op: nn.Module, batch_norm: bool = False, dropout: float = 0.0, flatten: bool = False) -> None:
        super().__init__()
        self.flatten = flatten
        self.op = op
        _unit_norm_init(op)
        channels = op.out_features if isinstance(op, nn.Linear) else op.out_channels
        self.bn: nn.Module | None = None
        if batch_norm:
            self.bn = nn.BatchNorm1d(channels) if isinstance(op, nn.Linear) else nn.BatchNorm2d(channels)
        self.dropout = VariationalDropout(dropout)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x.flatten(1) if self.flatten else x)

    def batch_stats(self, x: torch.Tensor, unbiased: bool = False, eps: float | None = None) -> BatchStats:
        """``(mean, var, eps)``: per-channel mean and variance of ``op(x)`` over the batch (and space), biased
        (as BatchNorm normalises) or unbiased, and the eps to add to the variance (None: the BatchNorm's)."""
        if self.bn is None:
            raise ValueError("batch_stats: this layer has no BatchNorm")
        y = self.linear(x)
        dims = [d for d in range(y.dim()) if d != 1]
        return y.mean(dims), y.var(dims, unbiased=unbiased), float(self.bn.eps if eps is None else eps)

    def forward(self, x: torch.Tensor, stats: BatchStats | None = None) -> torch.Tensor:
        y = self.linear(x)
        if self.bn is not None:
            if stats is None:
                y = self.bn(y)
            else:
                mean, var, eps = stats
                y = F.batch_norm(y, mean, var, self.bn.weight, self.bn.bias, training=False, eps=eps)
        return self.dropout(y)


@contextlib.contextmanager
def frozen_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    """Let BatchNorm layers normalise with batch statistics but restore their running statistics after
    (IDE with ``simulation_bn_update=False``: the simulation's input layer runs in training mode without
    counting in the running averages, which the paper's code intends but, restoring nothing, does not do)."""
    saved = [(m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, mean, var, n in saved:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(n)


@contextlib.contextmanager
def hidden_batchnorm_eval(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Put the BatchNorm layers of ``modules`` in eval mode (running statistics) for the duration."""
    bns = [m for mod in modules for m in mod.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in bns]
    try:
        for m in bns:
            m.eval()
        yield
    finally:
        for m, mode in zip(bns, modes):
            m.train(mode)


class FeedbackSNN(nn.Module):
    """A feedback spiking network with its equilibrium map (module docstring).

    Args:
        input_layer: ``F_x``, applied to the input frame (or the constant image).
        hidden_layers: ``F_1 .. F_{N-1}`` between the spiking layers (may be empty: one-layer network).
        feedback: ``W_fb`` from the last spiking layer to the first one.
        num_classes: classes of the linear readout on the last layer's rate.
        neuron: neuron spec or factory; must reset by subtraction (``v_reset: null``).
        in_channels, input_size: shape of one input frame (to size the readout).
    """

    def __init__(
        self,
        input_layer: SynapticLayer,
        hidden_layers: Sequence[SynapticLayer],
        feedback: SynapticLayer,
        num_classes: int,
        neuron: Any = None,
        in_channels: int = 1,
        input_size: Sequence[int] = (28, 28),
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.input_layer = input_layer
        self.hidden_layers = nn.ModuleList(hidden_layers)
        self.feedback = feedback
        factory = build_neuron_factory(neuron, default=IDE_IF)
        self.neurons = nn.ModuleList(factory() for _ in range(len(self.hidden_layers) + 1))
        for n in self.neurons:
            if not isinstance(n, BaseNode):
                raise ValueError(f"neuron: feedback networks need an IF/LIF neuron (BaseNode), got {type(n).__name__}")
            if n.v_reset is not None:
                raise ValueError(
                    "neuron.v_reset: the IDE equilibrium (average rate = clamped input / V_th) holds for reset by "
                    f"subtraction; set v_reset: null (got {n.v_reset})"
                )
            n.step_mode = "s"  # the feedback loop runs one step at a time
        first = self.neurons[0]
        if any(float(n.v_threshold) != float(first.v_threshold) or n.decay != first.decay for n in self.neurons):
            raise ValueError("neuron: all layers of a feedback network share one threshold and leak")
        with torch.no_grad():
            was = self.training
            self.eval()
            probe = torch.zeros(2, in_channels, *tuple(input_size))
            a = self.input_layer(probe)
            self.first_shape = tuple(a.shape[1:])
            for layer in self.hidden_layers:
                a = layer(a)
            self.last_shape = tuple(a.shape[1:])
            if tuple(self.feedback(a).shape[1:]) != self.first_shape:
                raise ValueError(
                    f"feedback maps the last layer {self.last_shape} to {tuple(self.feedback(a).shape[1:])}, "
                    f"but the first layer is {self.first_shape}"
                )
            self.train(was)
        self.classifier = nn.Linear(int(torch.tensor(self.last_shape).prod()), num_classes)

    # ------------------------------------------------------------------ the neuron parameters
    @property
    def v_threshold(self) -> float:
        return float(self.neurons[0].v_threshold)

    @property
    def leak(self) -> float:
        """Leak factor λ of the neurons (1 for IF)."""
        return float(self.neurons[0].decay)

    def rate_normaliser(self, T: int) -> float:
        """``Σ_{t<T} λ^t``: the weight sum of the weighted average rate (T for IF)."""
        lam = self.leak
        return float(T) if lam == 1.0 else (1.0 - lam**T) / (1.0 - lam)

    def average_input(self, x_seq: torch.Tensor) -> torch.Tensor:
        """The (λ-weighted) average input ``x̄`` of a ``[T, B, ...]`` sequence (the paper's ``u``)."""
        T = x_seq.shape[0]
        lam = self.leak
        if lam == 1.0:
            return x_seq.mean(0)
        w = lam ** torch.arange(T - 1, -1, -1, dtype=x_seq.dtype, device=x_seq.device)
        return torch.tensordot(w, x_seq, dims=([0], [0])) / self.rate_normaliser(T)

    # ------------------------------------------------------------------ simulation
    def simulate(
        self, x: torch.Tensor, T: int | None = None, static: bool = False, stats: BatchStats | None = None
    ) -> list[torch.Tensor]:
        """Run the network for ``T`` steps; returns the weighted average rate of every spiking layer.

        ``x`` is one image ``[B, ...]`` shown at every step (``static=True``, needs ``T``) or a sequence of
        frames ``[T, B, ...]``. A static image passes the input layer once, in the network's mode. Frames in
        training mode are all normalised by the input layer's BatchNorm with ``stats`` (default: the batch
        statistics of the average input ``x̄``, biased variance, the layer's eps), as the IDE code does
        (it normalises with the statistics of ``x̄``, but with the unbiased variance and eps 1e-8: see
        :class:`lightning_snn.methods.IDE`, ``event_bn_stats``). BatchNorm modes of the other layers are
        the caller's business (IDE: running statistics); so are gradients (IDE: none).
        """
        if static:
            if T is None or T < 1:
                raise ValueError(f"simulate: a static input needs T >= 1, got {T}")
            steps = T
        else:
            if T is not None and T != x.shape[0]:
                raise ValueError(f"simulate: got {x.shape[0]} frames but T={T}")
            steps = x.shape[0]
        if static or not self.training or self.input_layer.bn is None:
            stats = None
        elif stats is None:
            with torch.no_grad():
                stats = self.input_layer.batch_stats(self.average_input(x))
        lam = self.leak
        drive = self.input_layer(x) if static else None
        acc: list[torch.Tensor] = []
        last: torch.Tensor | None = None
        for t in range(steps):
            spikes = self._step(drive if static else self.input_layer(x[t], stats), last)
            last = spikes[-1]
            acc = spikes if not acc else [a * lam + sp for a, sp in zip(acc, spikes)]
        norm = self.rate_normaliser(steps)
        return [a / norm for a in acc]

    def _step(self, drive: torch.Tensor, last: torch.Tensor | None) -> list[torch.Tensor]:
        """One time step: the spikes of every layer, given the input drive and the last layer's previous
        spikes (``None`` at t = 0: no feedback yet)."""
        s = self.neurons[0](drive if last is None else drive + self.feedback(last))
        spikes = [s]
        for layer, neuron in zip(self.hidden_layers, self.neurons[1:]):
            s = neuron(layer(s))
            spikes.append(s)
        return spikes

    def equilibrium_map(self, a_last: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """``f(a_N, x̄)`` of the module docstring; ``drive`` is ``F_x(x̄)`` (:meth:`input_layer` output)."""
        vth = self.v_threshold
        a = torch.clamp((self.feedback(a_last) + drive) / vth, 0.0, 1.0)
        for layer in self.hidden_layers:
            a = torch.clamp(layer(a) / vth, 0.0, 1.0)
        return a

    def classify(self, rate: torch.Tensor) -> torch.Tensor:
        """Linear readout on the last layer's rate."""
        return self.classifier(rate.flatten(1))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Simulate with surrogate gradients; ``[T, B, K]`` readouts of the running weighted rate.

        This is the unrolled network (what BPTT differentiates); IDE uses :meth:`simulate` and
        :meth:`equilibrium_map` instead.
        """
        lam = self.leak
        outs = []
        acc = last = None
        norm = 0.0
        for t in range(x_seq.shape[0]):
            last = self._step(self.input_layer(x_seq[t]), last)[-1]
            acc = last if acc is None else acc * lam + last
            norm = norm * lam + 1.0
            outs.append(self.classify(acc / norm))
        return torch.stack(outs)


def _conv(cin: int, cout: int, k: int, stride: int = 1, bias: bool = True, padding: int | None = None) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, (k - 1) // 2 if padding is None else padding, bias=bias)


@register_backbone("ide_conv")
def ide_conv(
    num_classes: int = 10,
    neuron: Any = None,
    in_channels: int = 1,
    input_size: Sequence[int] = (28, 28),
    channels: int = 64,
    kernel_size: int = 5,
    dropout: float = 0.2,
    padding: int | None = None,
    step_mode: str = "s",
) -> FeedbackSNN:
    """"64C5s (F64C5)" of IDE (MNIST, N-MNIST): one spiking conv layer (5x5, stride 2, BN) whose
    spikes feed back through a 5x5 conv (spectrally normalised, no bias).

    ``padding`` of the input conv; None: ``(kernel_size - 1) // 2`` (2 for 5x5: 28x28 -> 14x14, the code's
    MNIST setting). The code's N-MNIST script pads by 1 (34x34 -> 16x16: 269,643 parameters); the README
    table's 291K matches padding 2 (17x17: 290,763), which that script never ran.
    """
    if padding is not None and padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    x = SynapticLayer(_conv(in_channels, channels, kernel_size, 2, padding=padding), batch_norm=True, dropout=dropout)
    fb = SynapticLayer(_conv(channels, channels, kernel_size, 1, bias=False), dropout=dropout)
    spectral_normalize(fb.op)
    return FeedbackSNN(x, [], fb, num_classes, neuron, in_channels, input_size)


@register_backbone("ide_fc")
def ide_fc(
    num_classes: int = 10,
    neuron: Any = None,
    in_channels: int = 1,
    input_size: Sequence[int] = (28, 28),
    hidden: int = 400,
    dropout: float = 0.2,
    step_mode: str = "s",
) -> FeedbackSNN:
    """"400 (F400)" of IDE (Fashion-MNIST): one fully connected spiking layer with feedback."""
    d_in = in_channels * int(torch.tensor(tuple(input_size)).prod())
    x = SynapticLayer(nn.Linear(d_in, hidden), batch_norm=True, dropout=dropout, flatten=True)
    fb = SynapticLayer(nn.Linear(hidden, hidden, bias=False), dropout=dropout)
    spectral_normalize(fb.op)
    return FeedbackSNN(x, [], fb, num_classes, neuron, in_channels, input_size)


def _multilayer(
    widths: Sequence[int], num_classes: int, neuron: Any, in_channels: int, input_size: Sequence[int], dropout: float
) -> FeedbackSNN:
    """The CIFAR feedback networks: input conv (3x3, stride 2, BN), four conv layers (3x3, BN; the second
    with stride 2), feedback by a 3x3 stride-2 transposed conv (spectrally normalised, no bias)."""
    if len(widths) != 5:
        raise ValueError(f"channels: expected 5 widths (input, s1, s2, s3, s4), got {list(widths)}")
    c0, c1, c2, c3, c4 = widths
    x = SynapticLayer(_conv(in_channels, c0, 3, 2), batch_norm=True, dropout=dropout)
    hidden = [
        SynapticLayer(_conv(c0, c1, 3, 1), batch_norm=True, dropout=dropout),
        SynapticLayer(_conv(c1, c2, 3, 2), batch_norm=True, dropout=dropout),
        SynapticLayer(_conv(c2, c3, 3, 1), batch_norm=True, dropout=dropout),
        SynapticLayer(_conv(c3, c4, 3, 1), batch_norm=True, dropout=dropout),
    ]
    fb = SynapticLayer(nn.ConvTranspose2d(c4, c0, 3, 2, 1, output_padding=1, bias=False), dropout=dropout)
    spectral_normalize(fb.op)
    return FeedbackSNN(x, hidden, fb, num_classes, neuron, in_channels, input_size)


@register_backbone("ide_alexnet_f")
def ide_alexnet_f(
    num_classes: int = 10,
    neuron: Any = None,
    in_channels: int = 3,
    input_size: Sequence[int] = (32, 32),
    channels: Sequence[int] = (96, 256, 384, 384, 256),
    dropout: float = 0.2,
    step_mode: str = "s",
) -> FeedbackSNN:
    """AlexNet-F of IDE (CIFAR-10/100): 96C3s-256C3-384C3s-384C3-256C3 with feedback F96C3u."""
    return _multilayer(channels, num_classes, neuron, in_channels, input_size, dropout)


@register_backbone("ide_cifarnet_f")
def ide_cifarnet_f(
    num_classes: int = 10,
    neuron: Any = None,
    in_channels: int = 3,
    input_size: Sequence[int] = (32, 32),
    channels: Sequence[int] = (128, 256, 512, 1024, 512),
    dropout: float = 0.2,
    step_mode: str = "s",
) -> FeedbackSNN:
    """CIFARNet-F of IDE (CIFAR-10/100): 128C3s-256C3-512C3s-1024C3-512C3 with feedback F128C3u."""
    return _multilayer(channels, num_classes, neuron, in_channels, input_size, dropout)
