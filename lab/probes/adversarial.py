"""Probes for adversarial methods: what the discriminator believes, on a grid.

Generic interface: a method that trains a discriminator exposes

    method.discriminator_logits(x_t: Tensor (n, 2), t: float | Tensor (n,)) -> Tensor (n,)

the raw logit at noisy points x_t with noise level t (larger = "looks like real data noised
to t"). ``add`` offers it; ``dmd2`` (GAN head on the fake score) can offer the same
signature and this probe works unchanged.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lab.errors import LabError
from lab.probes import grid, to_numpy


def decision_field(method, t: float = 0.1, lim: float = 3.0, n: int = 41) -> pd.DataFrame:
    """The discriminator's logit on an n x n grid of x_t in [-lim, lim]^2 at noise level t.

    Columns: x, y, logit, t, method. Rows are the grid points in row-major order
    (x varies fastest), so ``df.logit.values.reshape(n, n)`` is an image with y as rows.
    """
    fn = getattr(method, "discriminator_logits", None)
    if fn is None:
        raise LabError(f"{getattr(method, 'name', type(method).__name__)} has no discriminator "
                       "(it exposes no discriminator_logits(x_t, t))")
    if not 0.0 <= float(t) <= 1.0:
        raise LabError(f"t must be in [0, 1], got {t}")
    if not isinstance(n, int) or n < 2:
        raise LabError(f"n must be an integer >= 2, got {n!r}")
    device = getattr(method, "device", "cpu")
    x_t = grid(lim, n, device)
    with torch.no_grad():
        logit = fn(x_t, torch.full((x_t.shape[0],), float(t), device=device))
    out = pd.DataFrame({"x": to_numpy(x_t[:, 0]), "y": to_numpy(x_t[:, 1]), "logit": to_numpy(logit).reshape(-1).astype(np.float64)})
    out["t"], out["method"] = float(t), getattr(method, "name", type(method).__name__)
    return out


def real_and_student(method, t: float = 0.1, n: int = 500, nfe: int = 1, seed: int = 0) -> pd.DataFrame:
    """Real data and the method's student samples (nfe steps), both noised to t with the same seed's noise,
    as the discriminator sees them. Columns: x, y, kind ("real" / "student"), t."""
    g = torch.Generator().manual_seed(seed)
    device = getattr(method, "device", "cpu")
    real = method.data.sample(n, g).to(device)
    z = torch.randn(n, 2, generator=g).to(device)
    fake = method.generator().sample(z=z, nfe=nfe, seed=seed).x
    tt = torch.full((n,), float(t), device=device)
    proc = method.process
    rows = []
    for kind, x in (("real", real), ("student", fake)):
        x_t = proc.add_noise(x, torch.randn(n, 2, generator=g).to(device), tt)
        rows.append(pd.DataFrame({"x": to_numpy(x_t[:, 0]), "y": to_numpy(x_t[:, 1]), "kind": kind}))
    out = pd.concat(rows, ignore_index=True)
    out["t"] = float(t)
    return out
