"""Spiking primitives: neurons, surrogate gradients and normalisation (no Lightning in here)."""
from .compression import SPIKE_STORAGE, SpikeStorage, compress_saved_spikes, note_spikes
from .factory import NEURONS, STBP_LIF, NeuronFactory, build_neuron_factory, register_neuron, threshold_of
from .nodes import BACKENDS, Backend, BaseNode, IFNode, LIFNode, StepMode, reset_states, set_step_mode
from .norm import BatchNormThroughTime, ThresholdDependentBatchNorm
from .plif import PLIFNode
from .surrogate import ATan, Erf, PiecewiseQuadratic, Rectangular, Sigmoid, SurrogateGradient, build_surrogate

__all__ = [
    "ATan",
    "BACKENDS",
    "Backend",
    "BaseNode",
    "BatchNormThroughTime",
    "Erf",
    "IFNode",
    "LIFNode",
    "NEURONS",
    "NeuronFactory",
    "PLIFNode",
    "PiecewiseQuadratic",
    "Rectangular",
    "STBP_LIF",
    "Sigmoid",
    "StepMode",
    "SPIKE_STORAGE",
    "SpikeStorage",
    "SurrogateGradient",
    "ThresholdDependentBatchNorm",
    "build_neuron_factory",
    "build_surrogate",
    "compress_saved_spikes",
    "note_spikes",
    "register_neuron",
    "reset_states",
    "set_step_mode",
    "threshold_of",
]

from .dsr import (  # noqa: E402  (DSR neurons; registers dsr_if, dsr_lif, ann_relu)
    DSRIFNode,
    DSRLIFNode,
    DSRNode,
    ReLUActivation,
    lif_leak,
    representation_weights,
    spike_representation,
)

__all__ += ["DSRIFNode", "DSRLIFNode", "DSRNode", "ReLUActivation", "lif_leak", "representation_weights", "spike_representation"]

from .online import OnlineIFNode, OnlineLIFNode, OnlineNode, cut_neuron_type  # noqa: E402  (SLTT / OTTT; registers online_if, online_lif)

__all__ += ["OnlineIFNode", "OnlineLIFNode", "OnlineNode", "cut_neuron_type"]
