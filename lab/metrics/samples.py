"""Distances between sample sets, mode statistics for mixtures, and noise floors.

- ``sliced_wasserstein``: SW2 over fixed projections (seeded, so every call uses the
  same directions); unequal sample sizes are compared through quantiles.
- ``mmd``: squared MMD (unbiased) with a sum of RBF kernels over several bandwidths.
- ``energy_distance``: 2 E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic).
- ``mode_stats``: for a Gaussian mixture, the share of samples within 3 sigma of a mode
  ("high quality") and the number of modes covered.
- ``noise_floor``: the metric between two fresh data draws of the same size: a
  generator cannot be told apart from the data below this value.
"""
from __future__ import annotations

import numpy as np
import torch

from lab.errors import LabError


def _t(x) -> torch.Tensor:
    x = torch.as_tensor(np.array(x, dtype=np.float64) if not torch.is_tensor(x) else x).detach().to("cpu", torch.float64)
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1)
    return x


def random_projections(dim: int, n_proj: int, seed: int) -> torch.Tensor:
    """``n_proj`` random unit directions in ``dim`` dimensions, columns of a (dim, n_proj) float64 tensor, the same
    for the same seed (the projections of :func:`sliced_wasserstein`)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(dim, n_proj, generator=g, dtype=torch.float64)
    return p / p.norm(dim=0, keepdim=True)


def sliced_wasserstein(x, y, n_proj: int = 256, seed: int = 0) -> float:
    x, y = _t(x), _t(y)
    if x.shape[1] != y.shape[1]:
        raise LabError(f"sample dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    P = random_projections(x.shape[1], n_proj, seed)
    px, _ = torch.sort(x @ P, dim=0)
    py, _ = torch.sort(y @ P, dim=0)
    if px.shape[0] != py.shape[0]:
        q = torch.linspace(0, 1, max(px.shape[0], py.shape[0]), dtype=torch.float64)
        px, py = torch.quantile(px, q, dim=0), torch.quantile(py, q, dim=0)
    return float(torch.sqrt(((px - py) ** 2).mean()))


def _sqdist(a, b):
    return (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T


def mmd(x, y, bandwidths=(0.05, 0.1, 0.2, 0.5, 1.0, 2.0), max_n: int = 2000) -> float:
    x, y = _t(x)[:max_n], _t(y)[:max_n]
    kxx, kyy, kxy = 0.0, 0.0, 0.0
    dxx, dyy, dxy = _sqdist(x, x).clamp_min(0), _sqdist(y, y).clamp_min(0), _sqdist(x, y).clamp_min(0)
    for h in bandwidths:
        kxx = kxx + torch.exp(-dxx / (2 * h * h))
        kyy = kyy + torch.exp(-dyy / (2 * h * h))
        kxy = kxy + torch.exp(-dxy / (2 * h * h))
    n, m = x.shape[0], y.shape[0]
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def energy_distance(x, y, max_n: int = 2000) -> float:
    x, y = _t(x)[:max_n], _t(y)[:max_n]
    dxy = _sqdist(x, y).clamp_min(0).sqrt().mean()
    dxx = _sqdist(x, x).clamp_min(0).sqrt().mean()
    dyy = _sqdist(y, y).clamp_min(0).sqrt().mean()
    return float(2 * dxy - dxx - dyy)


def mode_stats(x, gmm, n_sigma: float = 3.0, min_share: float = 0.25) -> dict:
    """Share of samples within ``n_sigma`` std of their nearest mode, and modes covered.

    A mode counts as covered when at least ``min_share`` of its expected number of
    samples (n * weight) fall within n_sigma of it.
    """
    x = _t(x)
    means = gmm.means.to(torch.float64)
    stds = gmm.stds.to(torch.float64)
    d = torch.cdist(x, means)  # (n,K)
    nearest = d.argmin(1)
    dn = d.gather(1, nearest[:, None])[:, 0] / stds[nearest]
    good = dn <= n_sigma
    counts = torch.bincount(nearest[good], minlength=means.shape[0]).to(torch.float64)
    expected = x.shape[0] * gmm.weights.to(torch.float64)
    covered = int((counts >= min_share * expected).sum())
    return {"high_quality": float(good.to(torch.float64).mean()), "modes_covered": covered,
            "n_modes": int(means.shape[0])}


def low_density_share(x, gmm, n_sigma: float = 3.0) -> float:
    """Share of samples farther than n_sigma from every mode (the 'between modes' mass)."""
    return 1.0 - mode_stats(x, gmm, n_sigma)["high_quality"]


METRICS = {"swd": sliced_wasserstein, "mmd": mmd, "energy": energy_distance}


def noise_floor(source, n: int, metric: str = "swd", reps: int = 5, seed: int = 12345) -> float:
    """Mean metric between two fresh data draws of size n (the value a perfect generator gets)."""
    if metric not in METRICS:
        raise LabError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    vals = []
    for r in range(reps):
        g = torch.Generator().manual_seed(seed + 2 * r)
        a = source.sample(n, g)
        b = source.sample(n, g)
        vals.append(METRICS[metric](a, b))
    return float(np.mean(vals))


def evaluate(samples, source, n_ref: int | None = None, seed: int = 4242, metrics=("swd", "mmd", "energy")) -> dict:
    """All distances of ``samples`` to fresh data from ``source`` (same size unless n_ref)."""
    x = _t(samples)
    ref = source.sample(n_ref or x.shape[0], torch.Generator().manual_seed(seed))
    out = {}
    for m in metrics:
        if m not in METRICS:
            raise LabError(f"unknown metric {m!r}; allowed: {', '.join(METRICS)}")
        out[m] = METRICS[m](x, ref)
    if getattr(source, "gmm", None) is not None:
        out.update(mode_stats(x, source.gmm))
    return out
