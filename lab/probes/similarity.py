"""The representation similarity (linear/RBF/minibatch CKA) live in :mod:`lab.metrics.similarity`
(metrics, so ``lab.kd`` can use them without importing probes); re-exported here, where the probes and the
notebooks have always imported them."""
from lab.metrics.similarity import *  # noqa: F401,F403
from lab.metrics.similarity import __all__  # noqa: F401
