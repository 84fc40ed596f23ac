"""Lightning callbacks: firing-rate monitoring, the guard against non-finite values (more: quantization-aware
training, calibration, the fit summary)."""
from .firing_rate import FiringRateMonitor, firing_rates
from .quantization import QuantizationAwareTraining

__all__ = ["FiringRateMonitor", "QuantizationAwareTraining", "firing_rates"]

from .calibration import ThresholdCalibration, calibrate_thresholds  # noqa: E402  (DSR hybrid pipeline)

__all__ += ["ThresholdCalibration", "calibrate_thresholds"]

from .summary import SpikingSummary, SynapticOps, count_synaptic_ops  # noqa: E402  (fit-start summary, SOPs)

__all__ += ["SpikingSummary", "SynapticOps", "count_synaptic_ops"]

from .sync_batchnorm import SpikingSyncBatchNorm  # noqa: E402  (sync_batchnorm for time-folded BatchNorm)

__all__ += ["SpikingSyncBatchNorm"]

from .guard import NonFiniteError, SpikingGuard  # noqa: E402  (non-finite values, divergence, dead layers)

__all__ += ["NonFiniteError", "SpikingGuard"]

from .ema import EMA, ema_state_dict  # noqa: E402  (weight averaging, timm ModelEmaV3)

__all__ += ["EMA", "ema_state_dict"]

from .rng_state import RandomStateCheckpoint  # noqa: E402  (exact resume: RNG states in checkpoints)
from .requeue import SlurmRequeue  # noqa: E402  (SLURM preemption: checkpoint at a step boundary, requeue)

__all__ += ["RandomStateCheckpoint", "SlurmRequeue"]
