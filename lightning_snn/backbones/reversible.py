"""Reversible spiking blocks (RevSNN, Zhang & Zhang, AAAI 2024), shared by RevSResNet and RevSFormer.

A reversible spiking block splits its multi-step input ``X: [T, B, C, ...]`` into two channel halves and
updates each half from the other through a spiking sub-network (the RevNet coupling of Gomez et al. 2017,
applied to the whole spatio-temporal tensor)::

    X1, X2 = chunk(X, 2, dim=2)
    Y1 = X1 + F(X2)            F, G: stateful multi-step sub-networks; every call simulates all T steps
    Y2 = X2 + G(Y1)                  from the reset state (their neurons are reset before each call)
    Y  = cat(Y1, Y2, dim=2)

so the input can be recovered from the output: ``X2 = Y2 - G(Y1)``, ``X1 = Y1 - F(X2)``.

**Extension along time.** Time is never split: F and G see all T steps at once. The neuron dynamics are
not inverted; in the backward pass each sub-network is *re-simulated* from v = 0 over all T steps on the
reconstructed input, which regenerates every membrane potential and spike. Nothing per time step is kept
between the forward and the backward pass.

**What is stored.** Each block runs under one custom :class:`torch.autograd.Function`
(:class:`_ReversibleBlockFunction`) whose forward runs F and G without a graph, keeps neither its input nor
any membrane potential (the neurons are reset after the call), and returns ``Y``. In a
:class:`ReversibleSequence` (one per network stage) only the **last** block keeps its output; each
block's backward reconstructs its input and hands it to the block before it, which needs it as its own
output. Activation memory is therefore one stage output plus one sub-network's graph during the
backward sweep, whatever the number of blocks. The reconstruction is written into the storage of the
output it is computed from (in place; for the stored stage output only with ``reuse_output_storage``),
and the forward writes both halves straight into the output, so no concatenation copies are made.

**Backward of one block** (``ReversibleBlock.backward_pass``)::

    with grad:  g = G(Y1)  (from reset)   ->  dY1' = dY1 + G'(Y1)^T dY2,   grads of G's parameters
    X2 = Y2 - g
    with grad:  f = F(X2)  (from reset)   ->  dX2  = dY2 + F'(X2)^T dY1',  grads of F's parameters
    X1 = Y1 - f
    return cat(X1, X2), cat(dY1', dX2)

The parameters of F and G are inputs of the Function and their gradients are returned explicitly (not
accumulated as a side effect by nested ``.backward()`` calls as in the official code), so DDP, gradient
clipping and gradient hooks see them like any other gradient.

**Recompute fidelity** (the pitfalls of ``methods/rev_rate.md`` A6):

* *BatchNorm in train mode.* The recompute normalises with the batch statistics of the reconstructed
  input (equal to the forward's up to rounding) but must not move the running statistics a second time:
  the running buffers of every norm layer in F and G are snapshot before the recompute and restored
  after it, so a reversible step updates them exactly once, like its non-reversible twin. (The official
  code updates them twice, an effective momentum of ~0.19 instead of 0.1.)
* *Neuron state.* F and G are reset (``reset_states``) before and after every forward call and every
  recompute. Firing-rate recording (``record_rate``) is paused during the recompute so spikes are not
  counted twice.
* *Autocast.* The autocast state (enabled, dtype) of the forward is recorded and the recompute runs
  under the same, so the regenerated graph has the forward's precision.
* *RNG.* If F or G contain an active stochastic layer (``nn.Dropout*`` or timm's ``DropPath`` with
  p > 0 in train mode), the CPU and CUDA RNG states before F and before G are saved in the forward and
  replayed in the recompute inside :func:`torch.random.fork_rng`, so the same masks are drawn and the
  global RNG stream is left untouched. ``preserve_rng_state`` forces this on or off.
* *Precision.* ``X2 = Y2 - G(Y1)`` is exact only up to rounding; in float64 the reconstruction error is
  ~1e-16 relative, in float32 ~1e-7. A reconstructed membrane ending within that distance of the
  threshold can flip a spike in the recompute, so float32 gradients equal the twin's only within a
  tolerance (the tests state it); float64 gives the twin's gradients to ~1e-12.

**Twin.** With ``reversible=False`` the same modules (same parameter names, same state dict) run the
same coupling with ordinary autograd (BPTT through every block), which is the non-reversible network
the memory and gradient comparisons are made against. The reversible path is also skipped whenever no
graph is being built (``torch.no_grad``, evaluation), where both compute the same thing.

Limits: backward can run once per forward (``retain_graph`` is refused with a clear error), no double
backward, and the reversible path needs multi-step mode (the recompute re-simulates all T steps);
single-step mode is available for the twin only.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ..neurons import StepMode, reset_states

__all__ = [
    "ReversibleBlock",
    "ReversibleSequence",
    "set_reversible",
    "is_reversible",
    "ReversibleBackboneMixin",
    "has_active_randomness",
]


# ------------------------------------------------------------------------------------------ helpers
def has_active_randomness(module: nn.Module) -> bool:
    """True if ``module`` holds a dropout / DropPath layer with p > 0 in train mode."""
    for m in module.modules():
        if not m.training:
            continue
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
            return True
        if "DropPath" in type(m).__name__ and float(getattr(m, "drop_prob", 0.0) or 0.0) > 0:  # timm's, ours
            return True
    return False


class _RngState:
    """CPU (and, for CUDA inputs, the device's) RNG state at one point of the forward pass."""

    __slots__ = ("cpu", "cuda", "devices")

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.devices: list[int] = []
        self.cuda: list[torch.Tensor] = []
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            self.devices = [index]
            self.cuda = [torch.cuda.get_rng_state(index)]

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        for index, state in zip(self.devices, self.cuda):
            torch.cuda.set_rng_state(state, index)


class _AutocastState:
    """The autocast settings of one device type, recorded in forward and re-entered in the recompute."""

    __slots__ = ("device_type", "enabled", "dtype", "cache")

    def __init__(self, device: torch.device) -> None:
        self.device_type = device.type if device.type in ("cuda", "cpu", "xpu", "mps", "hpu") else "cpu"
        self.enabled = torch.is_autocast_enabled(self.device_type)
        self.dtype = torch.get_autocast_dtype(self.device_type)
        self.cache = torch.is_autocast_cache_enabled()

    def context(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled, cache_enabled=self.cache)


@contextlib.contextmanager
def _frozen_running_stats(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Restore the running statistics (and ``num_batches_tracked``) of every norm layer on exit."""
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    for m in modules:
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.training and m.track_running_stats:
            for buf in (m.running_mean, m.running_var, m.num_batches_tracked):
                if buf is not None:
                    saved.append((buf, buf.detach().clone()))
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


@contextlib.contextmanager
def _rate_recording_paused(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Switch off firing-rate recording (FiringRateMonitor) so the recompute does not count spikes twice."""
    paused = [m for m in modules if getattr(m, "record_rate", False)]
    for m in paused:
        m.record_rate = False
    try:
        yield
    finally:
        for m in paused:
            m.record_rate = True


class _Slot:
    """A mutable cell through which a block's backward hands the tensor it reconstructed to the block
    that produced it (for which it is the output). Holds nothing between forward and backward except
    for the last block of a sequence, whose output is kept (it cannot be reconstructed)."""

    __slots__ = ("tensor",)

    def __init__(self) -> None:
        self.tensor: torch.Tensor | None = None

    def take(self) -> torch.Tensor | None:
        tensor, self.tensor = self.tensor, None
        return tensor


# ------------------------------------------------------------------------------------------ Function
class _ReversibleBlockFunction(torch.autograd.Function):
    """One reversible block: forward without a graph, backward by reconstruction and local recompute.

    Inputs: ``x``, the block, the output slot (holds ``Y`` by the time backward runs), the input slot
    (receives the reconstructed ``X``, or None), then the parameters of F and G (so that their
    gradients are returned as ordinary Function gradients).
    """

    @staticmethod
    def forward(ctx, x, block, out_slot, in_slot, keep_output, reuse_output, *params):  # type: ignore[override]
        ctx.block = block
        ctx.out_slot = out_slot
        ctx.in_slot = in_slot
        # reconstruct the input in the storage of the output: always for outputs that were themselves
        # reconstructed (owned by the backward pass), for the stored stage output only if allowed
        ctx.overwrite = (not keep_output) or reuse_output
        ctx.autocast = _AutocastState(x.device)
        preserve = block.preserve_rng_state
        if preserve is None:
            preserve = has_active_randomness(block)
        rng: list[_RngState] | None = [] if preserve else None
        y = block.coupling(x, rng_states=rng)
        ctx.rng = rng
        # free every membrane potential: nothing of F / G survives the forward pass
        reset_states(block)
        if keep_output:
            out_slot.tensor = y.detach()
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):  # type: ignore[override]
        y = ctx.out_slot.take()
        if y is None:
            raise RuntimeError(
                "reversible block: its output is not available for backward. Backward through a reversible "
                "block can run only once per forward pass (retain_graph is not supported), and the block "
                "after it in a ReversibleSequence must be differentiated first."
            )
        block: ReversibleBlock = ctx.block
        x, dx, grad_f, grad_g = block.backward_pass(
            y, dy, autocast=ctx.autocast, rng=ctx.rng, overwrite_output=ctx.overwrite
        )
        if ctx.in_slot is not None:
            ctx.in_slot.tensor = x
        del y
        return (dx, None, None, None, None, None, *grad_f, *grad_g)


# ------------------------------------------------------------------------------------------ modules
class ReversibleBlock(nn.Module):
    """``Y1 = X1 + F(X2)``, ``Y2 = X2 + G(Y1)`` on the channel halves of a ``[T, B, C, ...]`` tensor.

    Args:
        f, g: the two spiking sub-networks; each maps ``C/2`` channels to ``C/2`` channels (same shape)
            and starts with its own neuron and ends with a (BatchNorm) analog output.
        step_mode: ``"m"`` (``[T, B, C, ...]``, split at dim 2) or ``"s"`` (``[B, C, ...]``, split at
            dim 1, twin only).
        preserve_rng_state: replay the RNG in the recompute; None (default) decides per forward pass
            from whether F or G contain an active dropout / DropPath.

    Used alone, ``forward`` is reversible when ``reversible`` is true (the output is then kept for the
    backward pass); inside a :class:`ReversibleSequence` the sequence drives the blocks.
    """

    def __init__(
        self,
        f: nn.Module,
        g: nn.Module,
        step_mode: StepMode = "m",
        reversible: bool = True,
        preserve_rng_state: bool | None = None,
    ) -> None:
        super().__init__()
        self.f = f
        self.g = g
        self.step_mode: StepMode = step_mode
        self.reversible = bool(reversible)
        self.preserve_rng_state = preserve_rng_state

    # ------------------------------------------------------------------ plain computation
    @property
    def split_dim(self) -> int:
        return 2 if self.step_mode == "m" else 1

    def f_params(self) -> list[nn.Parameter]:
        return [p for p in self.f.parameters()]

    def g_params(self) -> list[nn.Parameter]:
        return [p for p in self.g.parameters()]

    def _call(self, fn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # Multi-step: every call is a complete T-step simulation from the reset state. Single-step (twin
        # only): the state must carry over between the T calls, so it is left to reset_states(model).
        if self.step_mode == "m":
            reset_states(fn)
        return fn(x)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[self.split_dim] % 2:
            raise ValueError(
                f"{type(self).__name__}: the channel dimension {self.split_dim} of the input {tuple(x.shape)} must be "
                "even (it is split into two streams)"
            )
        x1, x2 = torch.chunk(x, 2, dim=self.split_dim)
        return x1, x2

    def coupling(self, x: torch.Tensor, rng_states: list[_RngState] | None = None) -> torch.Tensor:
        """``cat(X1 + F(X2), X2 + G(Y1))`` with whatever autograd mode is active (the twin's forward).

        Without a graph (the reversible forward) the two halves are written straight into the output
        instead of being concatenated, which saves a transient copy of the stream.
        """
        x1, x2 = self._split(x)
        if rng_states is not None:
            rng_states.append(_RngState(x.device))
        f_out = self._call(self.f, x2)
        if torch.is_grad_enabled():
            y1 = x1 + f_out
            del f_out
            if rng_states is not None:
                rng_states.append(_RngState(x.device))
            y2 = x2 + self._call(self.g, y1)
            return torch.cat([y1, y2], dim=self.split_dim)
        y = torch.empty_like(x, dtype=torch.promote_types(x.dtype, f_out.dtype))
        y1, y2 = self._split(y)
        torch.add(x1, f_out, out=y1)
        del f_out
        if rng_states is not None:
            rng_states.append(_RngState(x.device))
        torch.add(x2, self._call(self.g, y1), out=y2)
        return y

    @torch.no_grad()
    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Reconstruct the input from the output (no graph; the neurons are reset around each call)."""
        y1, y2 = self._split(y)
        x2 = y2 - self._call(self.g, y1)
        reset_states(self.g)
        x1 = y1 - self._call(self.f, x2)
        reset_states(self.f)
        return torch.cat([x1, x2], dim=self.split_dim)

    def _recompute_grad(
        self,
        fn: nn.Module,
        inp: torch.Tensor,
        grad_out: torch.Tensor,
        autocast: _AutocastState,
        rng: _RngState | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor | None]]:
        """Re-simulate one sub-network from reset with a graph (under the forward's precision and RNG)
        and differentiate it at once. Returns ``(fn(inp) detached, d inp, grads of fn's parameters)``.

        The running statistics are restored only after the gradient is taken: batch_norm's backward
        checks that the buffers it was given were not modified in place.
        """
        inp = inp.detach().requires_grad_(True)
        params = list(fn.parameters())
        trainable = [p for p in params if p.requires_grad]
        devices = rng.devices if rng is not None else []
        fork = torch.random.fork_rng(devices=devices, enabled=rng is not None, device_type="cuda")
        with fork, _frozen_running_stats(fn.modules()), _rate_recording_paused(fn.modules()):
            if rng is not None:
                rng.restore()
            with torch.enable_grad():
                with autocast.context():
                    reset_states(fn)
                    out = fn(inp)
                grads = torch.autograd.grad(out, [inp, *trainable], grad_out, allow_unused=True)
            reset_states(fn)
        return out.detach(), grads[0], _scatter(params, trainable, grads[1:])

    def backward_pass(
        self,
        y: torch.Tensor,
        dy: torch.Tensor,
        autocast: _AutocastState | None = None,
        rng: Sequence[_RngState] | None = None,
        overwrite_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor | None], list[torch.Tensor | None]]:
        """From the output ``y`` and its gradient ``dy``: the reconstructed input, its gradient, and the
        gradients of F's and G's parameters (None where a parameter is frozen or unused).

        ``overwrite_output``: ``y`` belongs to this call (it was reconstructed by the next block), so the
        input is reconstructed in its storage, in place; otherwise (the stored stage output, which the
        caller may still hold) into a new tensor. ``dy`` is never modified (autograd may share it).
        """
        autocast = autocast or _AutocastState(y.device)
        rng_f, rng_g = (rng[0], rng[1]) if rng else (None, None)
        y = y.detach()
        y1, y2 = self._split(y)
        dy1, dy2 = self._split(dy)
        with torch.no_grad():
            x = y if overwrite_output else torch.empty_like(y)
            x1, x2 = self._split(x)
            dx = torch.empty_like(dy)
            dx1, dx2 = self._split(dx)
            # G: Y2 = X2 + G(Y1)  ->  X2 = Y2 - G(Y1),  dX1 = dY1 + G'(Y1)^T dY2
            g_out, d_y1, grad_g = self._recompute_grad(self.g, y1, dy2, autocast, rng_g)
            torch.sub(y2, g_out, out=x2)
            torch.add(dy1, d_y1, out=dx1) if d_y1 is not None else dx1.copy_(dy1)
            del g_out, d_y1
            # F: Y1 = X1 + F(X2)  ->  X1 = Y1 - F(X2),  dX2 = dY2 + F'(X2)^T dX1
            f_out, d_x2, grad_f = self._recompute_grad(self.f, x2, dx1, autocast, rng_f)
            torch.sub(y1, f_out, out=x1)
            torch.add(dy2, d_x2, out=dx2) if d_x2 is not None else dx2.copy_(dy2)
            del f_out, d_x2
        return x, dx, grad_f, grad_g

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reversible and _needs_graph(x, self):
            return _run_reversible([self], x)
        return self.coupling(x)

    def extra_repr(self) -> str:
        return f"reversible={self.reversible}, step_mode={self.step_mode!r}"


def _scatter(all_params: list[nn.Parameter], used: list[nn.Parameter], grads: Sequence[torch.Tensor | None]):
    """Gradients aligned with ``all_params`` (None for parameters that are frozen or unused, as autograd)."""
    by_id = {id(p): g for p, g in zip(used, grads)}
    return [by_id.get(id(p)) for p in all_params]


def _needs_graph(x: torch.Tensor, module: nn.Module) -> bool:
    if not torch.is_grad_enabled():
        return False
    return x.requires_grad or any(p.requires_grad for p in module.parameters())


def _run_reversible(
    blocks: Sequence[ReversibleBlock], x: torch.Tensor, first_slot: _Slot | None = None, reuse_output: bool = False
) -> torch.Tensor:
    """Chain the per-block Functions so that only the last output is stored (see the module docstring)."""
    for b in blocks:
        if b.step_mode != "m":
            raise ValueError(
                "reversible blocks need multi-step mode (step_mode='m'): the backward pass re-simulates all T steps "
                "of F and G. Use the non-reversible twin (reversible: false) for single-step mode."
            )
    in_slot = first_slot  # the stage input is reconstructed for nobody unless a test asks for it
    n = len(blocks)
    for i, block in enumerate(blocks):
        out_slot = _Slot()
        params = (*block.f_params(), *block.g_params())
        x = _ReversibleBlockFunction.apply(x, block, out_slot, in_slot, i == n - 1, reuse_output, *params)
        in_slot = out_slot
    return x


class ReversibleSequence(nn.Module):
    """A stage of reversible blocks run as one chain (only the stage output is kept for backward).

    ``reversible=False`` (or no graph being built) runs the blocks with ordinary autograd: the twin.
    With ``keep_reconstructed_input`` set, the input reconstructed by the first block's backward is kept
    in :attr:`reconstructed_input` until the next forward (for tests; off by default, since the stage
    input is otherwise never needed).

    ``reuse_output_storage``: the backward pass of the last block reconstructs its input in the storage of
    the stage output it kept (the other blocks always do so with the outputs reconstructed for them),
    which saves one stream-sized tensor at the peak. The stage output then no longer holds its values
    after backward: only enable it where nothing reads the stage output after the backward pass (true in
    RevSResNet and RevSFormer, whose next layer is a neuron or a mean, which keep nothing of it).
    """

    def __init__(self, blocks: Sequence[ReversibleBlock], reversible: bool = True, reuse_output_storage: bool = False) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.reuse_output_storage = bool(reuse_output_storage)
        self._reversible = bool(reversible)
        for b in self.blocks:
            b.reversible = self._reversible
        self.keep_reconstructed_input = False
        self._first_slot: _Slot | None = None

    @property
    def reversible(self) -> bool:
        return self._reversible

    @reversible.setter
    def reversible(self, value: bool) -> None:
        self._reversible = bool(value)
        for b in self.blocks:
            b.reversible = self._reversible

    @property
    def reconstructed_input(self) -> torch.Tensor | None:
        return None if self._first_slot is None else self._first_slot.tensor

    def __len__(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = list(self.blocks)
        self._first_slot = None
        if not blocks:
            return x
        if not (self._reversible and _needs_graph(x, self)):
            for b in blocks:
                x = b.coupling(x)
            return x
        if self.keep_reconstructed_input:
            self._first_slot = _Slot()
        return _run_reversible(blocks, x, self._first_slot, self.reuse_output_storage)

    def extra_repr(self) -> str:
        return f"reversible={self._reversible}, reuse_output_storage={self.reuse_output_storage}"


def set_reversible(module: nn.Module, reversible: bool) -> None:
    """Switch every reversible stage / block in ``module`` between reversible and twin mode."""
    for m in module.modules():
        if isinstance(m, (ReversibleSequence, ReversibleBlock)):
            m.reversible = reversible


def is_reversible(module: nn.Module) -> bool:
    """True if any block in ``module`` runs reversibly."""
    return any(m.reversible for m in module.modules() if isinstance(m, ReversibleBlock))


class ReversibleBackboneMixin:
    """``reversible`` switch of a backbone built from :class:`ReversibleSequence` stages (RevSResNet, RevSFormer)."""

    @property
    def reversible(self) -> bool:
        return any(m.reversible for m in self.modules() if isinstance(m, ReversibleSequence))

    @reversible.setter
    def reversible(self, value: bool) -> None:
        set_reversible(self, value)
