"""Named data sources."""
from lab.data import toy2d
from lab.data.toy2d import GMM, PointCloud, Source, load_points, resolve

__all__ = ["toy2d", "GMM", "PointCloud", "Source", "load_points", "resolve"]
