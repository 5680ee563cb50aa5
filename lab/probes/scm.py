"""Probes for continuous-time consistency methods (``scm``, ``rcm``).

sCM's stability rests on two per-time quantities: the size of the tangent g (the JVP
estimate of df/dt along the teacher's PF-ODE, before tangent normalisation) and the
adaptive loss weight w(t) e^{-logvar(t)}. A method is used by duck typing; the attributes
read are ``sigma_d``, ``tangent(x_trig, t, r)``, ``weight(t)``, ``warmup_r(it)``, ``it``,
``data`` and ``device``.

- ``scm_internals(method, n_t=50, n=512, seed=0)``: both, as functions of time on a fixed batch.
- ``scm_training(rows)``: the same two numbers logged over training (``StepOutput.metrics``:
  ``tangent_norm``, ``weight``), from ``Recorder.rows`` or ``Run.metrics()``.
"""
from __future__ import annotations

import math

import pandas as pd
import torch

from lab.errors import LabError

__all__ = ["scm_internals", "scm_training"]


def _check(method):
    missing = [a for a in ("sigma_d", "tangent", "weight", "warmup_r") if not hasattr(method, a)]
    if missing:
        raise LabError(f"{type(method).__name__} is not a continuous-time consistency method: it lacks "
                       f"{', '.join(missing)} (needed: sigma_d, tangent, weight, warmup_r)")


def scm_internals(method, n_t: int = 50, n: int = 512, seed: int = 0) -> pd.DataFrame:
    """Tangent norm and adaptive weight at ``n_t`` TrigFlow times on one fixed batch of data and noise.

    Columns: t (linear-flow time in (0, 1)), t_trig (TrigFlow time in (0, pi/2)),
    tangent_norm (mean ||g|| / sqrt(D) before normalisation, at the current warm-up r),
    tangent_norm_normalised (after g / (||g|| + c)), weight (w(t) e^{-logvar(t)}), logvar.
    """
    _check(method)
    if not isinstance(n_t, int) or n_t < 2:
        raise LabError(f"n_t must be an integer >= 2, got {n_t!r}")
    dev = getattr(method, "device", torch.device("cpu"))
    g = torch.Generator().manual_seed(int(seed))
    x0 = method.data.sample(n, g).to(dev)
    eps = torch.randn(n, 2, generator=g).to(dev)
    eps_t = 1e-3
    ts = torch.linspace(eps_t, 0.5 * math.pi - eps_t, n_t)
    r = method.warmup_r(getattr(method, "it", 0))
    rows = []
    for tv in ts.tolist():
        t = torch.full((n,), tv, device=dev)
        x = torch.cos(t)[:, None] * x0 + torch.sin(t)[:, None] * method.sigma_d * eps
        _, gn, norm = method.tangent(x, t, r)
        with torch.no_grad():
            w, lv = method.weight(t[:1])
        s = method.sigma_d * math.sin(tv) / (math.cos(tv) + method.sigma_d * math.sin(tv))
        rows.append({"t": s, "t_trig": tv, "tangent_norm": float(norm.mean()),
                     "tangent_norm_normalised": float((gn.norm(dim=-1) / math.sqrt(gn.shape[-1])).mean()),
                     "weight": float(w[0]), "logvar": float(lv[0])})
    return pd.DataFrame(rows)


def scm_training(rows) -> pd.DataFrame:
    """Tangent norm and adaptive weight over training from logged rows (a list of dicts or a DataFrame).

    Columns: step, tangent_norm, weight (and r when logged); rows without them (pretraining) are dropped.
    """
    df = pd.DataFrame(rows)
    need = {"step", "tangent_norm", "weight"}
    if not need <= set(df.columns):
        raise LabError(f"these rows have no sCM metrics (need columns {', '.join(sorted(need))}; "
                       f"got {', '.join(map(str, df.columns))})")
    cols = [c for c in ("step", "tangent_norm", "weight", "r") if c in df.columns]
    return df[cols].dropna(subset=["tangent_norm", "weight"]).reset_index(drop=True)
