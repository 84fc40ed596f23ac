"""Training methods: one LightningModule each, all subclasses of :class:`SpikingClassifier`."""
from .base import SpikingClassifier, direct_encoding, poisson_encoding, tet_loss
from .bptt import BPTT

__all__ = ["BPTT", "SpikingClassifier", "direct_encoding", "poisson_encoding", "tet_loss"]

from .rate_bp import RateBP  # noqa: E402  (Rate-BP)

__all__ += ["RateBP"]

from .dsr import DSR  # noqa: E402  (DSR)

__all__ += ["DSR"]

from .ide import IDE  # noqa: E402  (IDE)

__all__ += ["IDE"]

from .sltt import SLTT  # noqa: E402  (SLTT, SLTT-K)

__all__ += ["SLTT"]

from .ottt import OTTT  # noqa: E402  (OTTT, variants A and O)

__all__ += ["OTTT"]
