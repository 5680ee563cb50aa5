"""Named 2D distributions, labelled variants, and users' own point clouds.

Every source has the same interface: ``sample(n, generator=None, labelled=False)``
returns an (n, 2) float tensor (and (n,) integer labels when ``labelled``).
Gaussian mixtures expose their exact parameters (``.gmm``) so an analytic teacher
and mode metrics can use them.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lab.data.source import MAX_SAMPLES, SEED_RANGE, Source, check_seed, path_exists  # noqa: F401  (re-exported)
from lab.data.source import short_repr as _short
from lab.data import images
from lab.errors import LabError

@dataclass
class GMM:
    """A Gaussian mixture with full covariances. means (K,2), covs (K,2,2), weights (K,)."""

    means: torch.Tensor
    covs: torch.Tensor
    weights: torch.Tensor

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def stds(self) -> torch.Tensor:
        """Per-component isotropic scale (sqrt of the mean eigenvalue)."""
        return torch.sqrt(torch.diagonal(self.covs, dim1=-2, dim2=-1).mean(-1))

    def sample(self, n: int, generator: torch.Generator | None = None):
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        chol = torch.linalg.cholesky(self.covs)
        eps = torch.randn(n, 2, generator=generator)
        x = self.means[k] + (chol[k] @ eps.unsqueeze(-1)).squeeze(-1)
        return x, k

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        d = x.unsqueeze(1) - self.means.unsqueeze(0)  # (n,K,2)
        prec = torch.linalg.inv(self.covs)
        maha = torch.einsum("nki,kij,nkj->nk", d, prec, d)
        logdet = torch.logdet(self.covs)
        comp = -0.5 * maha - 0.5 * logdet - math.log(2 * math.pi)
        return torch.logsumexp(comp + torch.log(self.weights), dim=1)

    def to_dict(self) -> dict:
        return {"means": self.means.tolist(), "covs": self.covs.tolist(), "weights": self.weights.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "GMM":
        return cls(torch.tensor(d["means"], dtype=torch.float32), torch.tensor(d["covs"], dtype=torch.float32),
                   torch.tensor(d["weights"], dtype=torch.float32))


def _iso_gmm(means, std) -> GMM:
    means = torch.tensor(means, dtype=torch.float32)
    k = means.shape[0]
    covs = torch.eye(2).expand(k, 2, 2) * std**2
    return GMM(means, covs.clone(), torch.full((k,), 1.0 / k))


def _eight_gaussians() -> GMM:
    r = 2.0
    ang = [2 * math.pi * i / 8 for i in range(8)]
    return _iso_gmm([[r * math.cos(a), r * math.sin(a)] for a in ang], 0.15)


def _grid25() -> GMM:
    return _iso_gmm([[float(i), float(j)] for i in range(-2, 3) for j in range(-2, 3)], 0.08)


def _rand(n, g):
    return torch.rand(n, generator=g)


def _randn(*shape, g):
    return torch.randn(*shape, generator=g)


def _moons(n, g):
    y = (torch.rand(n, generator=g) < 0.5).long()
    a = math.pi * _rand(n, g)
    x = torch.stack([torch.cos(a), torch.sin(a)], 1)
    x2 = torch.stack([1 - torch.cos(a), 0.5 - torch.sin(a)], 1)
    x = torch.where(y[:, None] == 0, x, x2)
    x = x + 0.06 * _randn(n, 2, g=g)
    x = (x - torch.tensor([0.5, 0.25])) * 1.6
    return x, y


def _swissroll(n, g):
    u = _rand(n, g)
    tt = 1.5 * math.pi * (1 + 2 * u)
    x = torch.stack([tt * torch.cos(tt), tt * torch.sin(tt)], 1) / 5.0
    x = x + 0.08 * _randn(n, 2, g=g)
    y = torch.clamp((u * 4).long(), max=3)
    return x, y


def _checkerboard(n, g):
    # 8 dark squares of a 4x4 board on [-2, 2]^2
    cell = torch.randint(0, 8, (n,), generator=g)
    row = cell // 2
    col = (cell % 2) * 2 + (row % 2)
    x = torch.stack([col.float() + _rand(n, g), row.float() + _rand(n, g)], 1) - 2.0
    return x, cell


def _rings(n, g):
    y = torch.randint(0, 4, (n,), generator=g)
    r = 0.5 * (y.float() + 1)
    a = 2 * math.pi * _rand(n, g)
    x = torch.stack([r * torch.cos(a), r * torch.sin(a)], 1) + 0.05 * _randn(n, 2, g=g)
    return x, y


def _spirals(n, g):
    y = (torch.rand(n, generator=g) < 0.5).long()
    u = torch.sqrt(_rand(n, g))
    a = u * 3 * math.pi + math.pi * y.float()
    rad = 2.2 * u
    x = torch.stack([rad * torch.cos(a), rad * torch.sin(a)], 1) + 0.06 * _randn(n, 2, g=g)
    return x, y


def _pinwheel(n, g, arms=5):
    y = torch.randint(0, arms, (n,), generator=g)
    feats = _randn(n, 2, g=g) * torch.tensor([0.3, 0.05]) + torch.tensor([1.0, 0.0])
    base = 2 * math.pi * y.float() / arms
    ang = base + 0.25 * torch.exp(feats[:, 0])
    c, s = torch.cos(ang), torch.sin(ang)
    x = torch.stack([c * feats[:, 0] - s * feats[:, 1], s * feats[:, 0] + c * feats[:, 1]], 1) * 1.8
    return x, y


class Toy2D(Source):
    def __init__(self, name: str, fn: Callable, n_classes: int, gmm: GMM | None = None, description: str = ""):
        self.name, self._fn, self.n_classes, self.gmm = name, fn, n_classes, gmm
        self.description = description
        self.spec = f"toy2d:{name}"

    def _draw(self, n, g):
        if self.gmm is not None:
            return self.gmm.sample(n, g)
        return self._fn(n, g)


class PointCloud(Source):
    """A user's own points (N x 2), resampled with replacement."""

    def __init__(self, points: np.ndarray | torch.Tensor, name: str = "points", spec: str = ""):
        pts = torch.as_tensor(np.asarray(points), dtype=torch.float32)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise LabError(f"points must have shape (N, 2), got {tuple(pts.shape)}")
        if pts.shape[0] < 2:
            raise LabError(f"need at least 2 points, got {pts.shape[0]}")
        if not torch.isfinite(pts).all():
            raise LabError("points contain NaN or infinite values")
        self.points, self.name, self.spec = pts, name, spec or name
        self.n_classes = 0

    def _draw(self, n, g):
        idx = torch.randint(0, self.points.shape[0], (n,), generator=g)
        return self.points[idx], torch.zeros(n, dtype=torch.long)


def _build():
    g8, g25 = _eight_gaussians(), _grid25()
    return {
        "8gaussians": Toy2D("8gaussians", None, 8, g8, "8 Gaussians on a circle of radius 2, std 0.15"),
        "25gaussians": Toy2D("25gaussians", None, 25, g25, "5x5 grid of Gaussians, spacing 1, std 0.08"),
        "moons": Toy2D("moons", _moons, 2, None, "two interleaved half-moons"),
        "swissroll": Toy2D("swissroll", _swissroll, 4, None, "2D swiss roll (4 label segments along the roll)"),
        "checkerboard": Toy2D("checkerboard", _checkerboard, 8, None, "uniform on the 8 dark cells of a 4x4 board"),
        "rings": Toy2D("rings", _rings, 4, None, "four concentric rings"),
        "spirals": Toy2D("spirals", _spirals, 2, None, "two interleaved spirals"),
        "pinwheel": Toy2D("pinwheel", _pinwheel, 5, None, "five-armed pinwheel"),
    }


DATASETS: dict[str, Toy2D] = _build()


def names() -> list[str]:
    return list(DATASETS)


def get(name: str) -> Toy2D:
    if name not in DATASETS:
        raise LabError(f"unknown toy2d distribution {name!r}; allowed: {', '.join(DATASETS)}")
    return DATASETS[name]


def load_points(path: str | Path) -> PointCloud:
    """Load an (N, 2) point cloud from ``.npy`` or ``.csv`` (comma separated, optional header)."""
    p = Path(path)
    if not path_exists(p, "point file"):
        raise LabError(f"no such file: {_short(str(p), 200)}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
            if not isinstance(arr, np.ndarray):  # an .npz archive under an .npy name
                arr.close()
                raise LabError(f"{p.name!r}: expected one array saved with np.save, got an .npz archive")
        elif suffix == ".csv":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "input contained no data": reported below as a LabError
                try:
                    arr = np.loadtxt(p, delimiter=",", ndmin=2)
                except ValueError:
                    arr = np.loadtxt(p, delimiter=",", ndmin=2, skiprows=1)
        else:
            raise LabError(f"unsupported point file {p.name!r}; allowed suffixes: .npy, .csv")
    except LabError:
        raise
    except Exception as e:  # noqa: BLE001 - turned into one clear line
        raise LabError(f"could not read points from {str(p)!r}: {' '.join(str(e).split()) or type(e).__name__}") from None
    if arr.dtype.kind not in "fiu":
        raise LabError(f"{p.name!r}: points must be numeric, got dtype {arr.dtype}")
    if arr.size and arr.dtype.kind == "f" and np.isfinite(arr).all() and np.abs(arr).max() > np.finfo(np.float32).max:
        raise LabError(f"{p.name!r}: point values beyond the float32 range (|x| up to {np.abs(arr).max():.3g}); "
                       "allowed: finite values within +-3.4e38")
    return PointCloud(arr.astype(np.float32), name=p.stem, spec=str(p.resolve()))


def resolve(spec: "str | Source") -> Source:
    """``toy2d:NAME`` or a path to ``.npy`` / ``.csv`` points -> a Source."""
    if isinstance(spec, Source):
        return spec
    spec = str(spec)
    if images.is_image_spec(spec):
        return images.resolve_image(spec)
    if spec.startswith("toy2d:"):
        return get(spec.split(":", 1)[1])
    if spec in DATASETS:
        return DATASETS[spec]
    if spec.lower().endswith((".npy", ".csv")):
        return load_points(spec)
    raise LabError(f"bad data spec {spec!r}; use toy2d:NAME (NAME one of {', '.join(DATASETS)}), a path to .npy/.csv "
                   f"points, {', '.join(images.names())} (optionally :test), or images:PATH (folder, .npz or IDX)")
