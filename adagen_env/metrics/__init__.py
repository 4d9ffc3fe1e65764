"""Benchmark metrics: FID, KID, Inception Score and precision/recall via torch-fidelity, and class agreement.

Importing this package registers the shapes classifier with torch-fidelity as ``"shapes-classifier"``.
The public names are those of `adagen_env.metrics.fidelity`.
"""

from adagen_env.metrics import fidelity
from adagen_env.metrics.fidelity import *  # noqa: F403

__all__ = fidelity.__all__
