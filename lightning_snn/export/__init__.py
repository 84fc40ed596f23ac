"""Export formats of trained SNNs, one module per format.

* :mod:`~lightning_snn.export.quantized`: integer weights + scales + neuron parameters of a
  fake-quantized model (``<stem>.safetensors`` + ``<stem>.json``) and the loader that rebuilds it.
* :mod:`~lightning_snn.export.nir`: the Neuromorphic Intermediate Representation (NIR) graph of a
  sequential spiking backbone, and back.
"""
from .nir import NIRSequential, from_nir, to_nir
from .quantized import FORMAT, VERSION, export_quantized, load_quantized

__all__ = ["FORMAT", "NIRSequential", "VERSION", "export_quantized", "from_nir", "load_quantized", "to_nir"]
