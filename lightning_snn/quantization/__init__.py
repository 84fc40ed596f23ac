"""Low-bit weights for neuromorphic deployment: fake quantization, export and re-loading."""
from .export import export_quantized, load_quantized
from .fake_quant import FakeQuantize, QuantSpec, is_quantized, quantize_model, quantize_symmetric, quantized_layers

__all__ = [
    "FakeQuantize",
    "QuantSpec",
    "export_quantized",
    "is_quantized",
    "load_quantized",
    "quantize_model",
    "quantize_symmetric",
    "quantized_layers",
]
