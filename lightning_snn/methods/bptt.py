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
from .init_weights import load_weights_only

__all__ = ["BPTT"]


class BPTT(SpikingClassifier):
    """Surrogate-gradient BPTT.

    Args:
        surrogate: override the neuron's surrogate, as a name (``rectangular``, ``sigmoid``, ``atan``) or a
            dict ``{name: sigmoid, alpha: 4.0}``; None keeps the one in ``neuron``.
        detach_reset: override the neuron's ``detach_reset``; None keeps the neuron's.
        init_weights: checkpoint (Lightning ``.ckpt`` or a plain state dict) whose weights, and only weights,
            initialise the model when fitting starts: the STBP repository's ``--resume``
            (:mod:`lightning_snn.methods.init_weights`). Optimiser, schedule and epoch count start afresh,
            unlike Lightning's ``--ckpt_path``. Loaded in ``setup``, after ``QuantizationAwareTraining`` has
            fake-quantized the layers, into their float weights.
        **kwargs: see :class:`SpikingClassifier`.
    """

    def __init__(
        self,
        *args: Any,
        surrogate: str | dict[str, Any] | None = None,
        detach_reset: bool | None = None,
        init_weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._surrogate = surrogate
        self._detach_reset = detach_reset
        self.init_weights = init_weights
        self._weights_loaded = False
        super().__init__(*args, **kwargs)

    def setup(self, stage: str) -> None:
        if self.init_weights is not None and stage == "fit" and not self._weights_loaded:
            load_weights_only(self, self.init_weights)
        self._weights_loaded = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a checkpoint of this model (--ckpt_path) holds the trained weights: never overwrite them
        self._weights_loaded = True

    def neuron_spec(self, neuron: Mapping[str, Any] | None) -> Any:
        spec = dict(STBP_LIF if neuron is None else neuron)
        if self._surrogate is not None:
            spec["surrogate"] = self._surrogate
        if self._detach_reset is not None:
            spec["detach_reset"] = self._detach_reset
        return build_neuron_factory(spec)
