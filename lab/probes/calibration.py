"""The calibration numbers (ECE, reliability, agreement, entropies, soft labels) live in :mod:`lab.metrics.calibration`
(metrics, so ``lab.kd`` can use them without importing probes); re-exported here, where the probes and the
notebooks have always imported them."""
from lab.metrics.calibration import *  # noqa: F401,F403
from lab.metrics.calibration import __all__  # noqa: F401
