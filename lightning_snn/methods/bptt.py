"""STBP / surrogate-gradient backpropagation through time (Wu et al., Front. Neurosci. 2018).

The loss is backpropagated through the unrolled network over all T steps; the non-differentiable spike
uses a surrogate derivative (rectangular window of width ``a`` in STBP, Eq. 12). With tdBN backbones this
is the training of Zheng et al. (AAAI 2021); ``loss="tet"`` gives TET (Deng et al., ICLR 2022).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..neurons import STBP_LIF, build_neuron_factory
from .base import SpikingClassifier

__all__ = ["BPTT"]


class BPTT(SpikingClassifier):
    """Surrogate-gradient BPTT.

    Args:
        surrogate: override the neuron's surrogate, as a name (``rectangular``, ``sigmoid``, ``atan``) or a
            dict ``{name: sigmoid, alpha: 4.0}``; None keeps the one in ``neuron``.
        detach_reset: override the neuron's ``detach_reset``; None keeps the neuron's.
        **kwargs: see :class:`SpikingClassifier`.
    """

    def __init__(
        self,
        *args: Any,
        surrogate: str | dict[str, Any] | None = None,
        detach_reset: bool | None = None,
        **kwargs: Any,
    ) -> None:
        self._surrogate = surrogate
        self._detach_reset = detach_reset
        super().__init__(*args, **kwargs)

    def neuron_spec(self, neuron: Mapping[str, Any] | None) -> Any:
        spec = dict(STBP_LIF if neuron is None else neuron)
        if self._surrogate is not None:
            spec["surrogate"] = self._surrogate
        if self._detach_reset is not None:
            spec["detach_reset"] = self._detach_reset
        return build_neuron_factory(spec)
