"""Named data sources: 2D distributions and point clouds (toy2d), digits and users' images (images)."""
from lab.data import images, toy2d
from lab.data.images import Digits, ImageSource
from lab.data.toy2d import GMM, PointCloud, Source, load_points, resolve

__all__ = ["toy2d", "images", "Digits", "ImageSource", "GMM", "PointCloud", "Source", "load_points", "resolve"]
