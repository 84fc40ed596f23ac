"""Lightning callbacks: firing-rate monitoring (more: quantization-aware training, calibration)."""
from .firing_rate import FiringRateMonitor, firing_rates

__all__ = ["FiringRateMonitor", "firing_rates"]
