"""Lossless compression of the spike trains that autograd saves for the backward pass.

In BPTT every weight layer that reads a spiking neuron's output saves that input, a ``[T, B, ...]``
spike train, for its weight gradient ``dL/dW = Σ_t g_t ⊗ S_t``. The spikes are stored as floating-point
numbers (4 bytes each in float32), although each carries one bit. Together with the BatchNorm input and
the neuron's membrane charge, that is a third of what a conv-BN-neuron layer keeps per time step.

:func:`compress_saved_spikes` stores those tensors as 1 bit (``"bits"``, SpikingJelly's
``memopt.BitSpikeCompressor``) or 1 byte (``"bool"``, ``memopt.BooleanSpikeCompressor``) per spike, and
restores them exactly when backward needs them; the gradients are bit for bit the same as without it.

How a saved tensor is recognised as spikes, without looking at its values: while the context is active
every neuron announces its output with :func:`note_spikes` (``BaseNode`` and the DSR neurons do), giving
the one non-zero value its spikes carry (1, or ``V_th`` for DSR). A ``saved_tensors_hooks`` pack hook then
compresses a saved tensor when it shares its storage with an announced spike tensor that is still alive,
has the same dtype and has not been modified in place since (same version counter); views such as the
``[T·B, ...]`` fold of a time-distributed layer are recognised too. Every other saved tensor is kept as
it is. Under autocast the spikes normally come out in the low-precision dtype already (their neuron's
input, a BatchNorm output, is in it), so the convolutions save them uncast and they are compressed as
well; only where a layer casts a float32 spike train itself does it save an uncompressed copy.

Only the forward pass inside the context is affected; what is recomputed during backward (RevSNN's
reversible blocks) is not compressed.
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch

__all__ = ["SPIKE_STORAGE", "SpikeStorage", "check_spike_storage", "compress_saved_spikes", "note_spikes"]

SpikeStorage = Literal["float", "bool", "bits"]
#: the accepted ``spike_storage`` settings: ``float`` (off), ``bool`` (1 byte per spike), ``bits`` (1 bit)
SPIKE_STORAGE: tuple[str, ...] = ("float", "bool", "bits")
#: tensors smaller than this many elements are saved as they are (not worth a compression kernel)
MIN_NUMEL = 1024

_local = threading.local()


def _compressor(kind: str) -> Any:
    from spikingjelly.activation_based.memopt import BitSpikeCompressor, BooleanSpikeCompressor

    return BitSpikeCompressor() if kind == "bits" else BooleanSpikeCompressor()


class _SpikeRegistry:
    """The spike tensors announced in one ``compress_saved_spikes`` context, keyed by storage address."""

    def __init__(self, kind: str) -> None:
        self.compressor = _compressor(kind)
        # saved-tensor hooks already active outside (torch's save_on_cpu, a memory tally, ...): the
        # innermost pair is the only one autograd calls, so this one hands every tensor on to them
        self.outer = _outer_hooks()
        self.entries: dict[int, tuple[weakref.ref, int, torch.dtype, float | torch.Tensor]] = {}
        self.packed = 0  # number of saved tensors compressed (for tests and benchmarks)

    def note(self, spikes: torch.Tensor, value: float | torch.Tensor) -> None:
        if spikes.numel() < MIN_NUMEL or not spikes.is_floating_point():
            return
        key = spikes.untyped_storage().data_ptr()
        self.entries[key] = (weakref.ref(spikes), spikes._version, spikes.dtype, value)

    def _spike_value(self, t: torch.Tensor) -> float | torch.Tensor | None:
        """The non-zero value of the announced spike train ``t`` belongs to, or None if it is not one."""
        if not t.is_floating_point() or t.numel() < MIN_NUMEL:
            return None
        entry = self.entries.get(t.untyped_storage().data_ptr())
        if entry is None:
            return None
        ref, version, dtype, value = entry
        # the announced tensor must be alive (so its storage address cannot have been reused) and unmodified
        return value if ref() is not None and t._version == version and t.dtype == dtype else None

    def pack(self, t: torch.Tensor) -> Any:
        value = self._spike_value(t)
        if value is None:
            return (_Plain, self.outer[0](t) if self.outer else t)
        # 0/1 trains are compressed as they are; others as their non-zero mask, scaled back on unpacking
        scale = None if isinstance(value, float) and value == 1.0 else value
        with torch.no_grad():
            data, bits_dtype, shape = self.compressor.compress(t if scale is None else t != 0)
        self.packed += 1
        if self.outer:
            data = self.outer[0](data)
        return (_Packed, data, bits_dtype, shape, t.dtype, scale)

    def unpack(self, obj: Any) -> torch.Tensor:
        if obj[0] is _Plain:
            return self.outer[1](obj[1]) if self.outer else obj[1]
        _, data, bits_dtype, shape, dtype, scale = obj
        if self.outer:
            data = self.outer[1](data)
        out = self.compressor.decompress((data, bits_dtype, shape)).to(dtype)
        return out if scale is None else out * scale


class _Packed:
    """Marker of a compressed saved tensor."""


class _Plain:
    """Marker of a saved tensor kept as it is."""


def _outer_hooks() -> tuple[Any, Any] | None:
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return top(False) if top is not None else None


def check_spike_storage(kind: str) -> str:
    """``kind`` if it is one of :data:`SPIKE_STORAGE`, else ``ValueError`` naming the choices."""
    if kind not in SPIKE_STORAGE:
        raise ValueError(f"spike_storage must be one of {list(SPIKE_STORAGE)}, got {kind!r}")
    return kind


def _active() -> _SpikeRegistry | None:
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def note_spikes(spikes: torch.Tensor, value: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Announce a neuron's output as a spike train whose elements are 0 or ``value``; returns it unchanged.

    Does nothing outside :func:`compress_saved_spikes` or when autograd is off. ``value`` is a Python
    float or a 0-dim tensor of the spikes' dtype holding the exact non-zero value.
    """
    registry = _active()
    if registry is not None and torch.is_grad_enabled():
        registry.note(spikes, value)
    return spikes


@contextmanager
def compress_saved_spikes(kind: SpikeStorage = "bits") -> Iterator[_SpikeRegistry | None]:
    """Store the spike trains saved for backward in the forward pass of this block as ``kind``.

    ``"float"`` leaves everything as it is (yields ``None``); ``"bool"`` and ``"bits"`` yield the registry,
    whose ``packed`` attribute counts the compressed saved tensors.
    """
    if check_spike_storage(kind) == "float":
        yield None
        return
    registry = _SpikeRegistry(kind)
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(registry)
    try:
        with torch.autograd.graph.saved_tensors_hooks(registry.pack, registry.unpack):
            yield registry
    finally:
        stack.pop()
        registry.entries.clear()
