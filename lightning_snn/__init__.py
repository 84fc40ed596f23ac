"""lightning-snn: PyTorch Lightning modules for training spiking neural networks.

Backbones are plain PyTorch (:mod:`lightning_snn.backbones`), training methods are LightningModules
that wrap them (:mod:`lightning_snn.methods`), datasets are LightningDataModules
(:mod:`lightning_snn.data`). See ARCHITECTURE in the repository for the design.
"""
__version__ = "0.1.0"

from .backbones import create_backbone, list_backbones, register_backbone
from .callbacks import FiringRateMonitor, QuantizationAwareTraining
from .methods import BPTT, DSR, IDE, RateBP, SpikingClassifier
from .neurons import IFNode, LIFNode, reset_states, set_step_mode

__all__ = [
    "BPTT",
    "DSR",
    "IDE",
    "FiringRateMonitor",
    "QuantizationAwareTraining",
    "RateBP",
    "IFNode",
    "LIFNode",
    "SpikingClassifier",
    "__version__",
    "create_backbone",
    "list_backbones",
    "register_backbone",
    "reset_states",
    "set_step_mode",
]
