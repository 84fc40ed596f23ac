"""Low-bit weights for neuromorphic deployment: fake quantization (the integer export is ``lightning_snn.export``)."""
from .fake_quant import FakeQuantize, QuantSpec, is_quantized, quantize_model, quantize_symmetric, quantized_layers

__all__ = [
    "FakeQuantize",
    "QuantSpec",
    "is_quantized",
    "quantize_model",
    "quantize_symmetric",
    "quantized_layers",
]
