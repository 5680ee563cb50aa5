"""Sample-quality metrics with noise floors."""
from lab.metrics.samples import (
    METRICS, energy_distance, evaluate, low_density_share, mmd, mode_stats, noise_floor, sliced_wasserstein,
)

__all__ = ["METRICS", "energy_distance", "evaluate", "low_density_share", "mmd", "mode_stats", "noise_floor",
           "sliced_wasserstein"]
