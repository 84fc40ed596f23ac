"""Training methods: one LightningModule each, all subclasses of :class:`SpikingClassifier`."""
from .base import SpikingClassifier, direct_encoding, poisson_encoding, tet_loss
from .bptt import BPTT

__all__ = ["BPTT", "SpikingClassifier", "direct_encoding", "poisson_encoding", "tet_loss"]
