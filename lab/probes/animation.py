"""Where every particle is at each frame of the trajectory animation (data for
:func:`lab.viz.animation.trajectory_animation`).

The teacher integrates an ODE: its particles glide, linearly interpolated in t between the points of its fine
path. A few-step student evaluates its network only at a handful of times: its particles stay at its last jump
until the next one, so they jump. What to look for: the student's jumps landing where the teacher's glide ends.
Fidelity note: between two of the teacher's solver steps the true ODE path is curved; the straight interpolation
is only a drawing aid (with 50 steps the gap is invisible at toy scale).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lab.errors import LabError, check_int

COLUMNS = ["frame", "t", "model", "path", "k", "x", "y"]
_EPS = 1e-9


def _model_array(sub: pd.DataFrame, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times (K,) decreasing, points (K, P, 2), path ids (P,)) of one model's paths."""
    ks = np.sort(sub["k"].unique())
    paths = np.sort(sub["path"].unique())
    if len(sub) != len(ks) * len(paths):
        raise LabError(f"{model}'s paths must all have the same points k (got {len(sub)} rows for "
                       f"{len(paths)} paths and {len(ks)} steps)")
    s = sub.sort_values(["k", "path"])
    pts = s[["x", "y"]].to_numpy(float).reshape(len(ks), len(paths), 2)
    t = s["t"].to_numpy(float).reshape(len(ks), len(paths))[:, 0]
    if len(t) > 1 and not np.all(np.diff(t) < 0):
        raise LabError(f"{model}'s times must decrease along k (noise at t = 1 to data at t = 0), got {t.tolist()}")
    return t, pts, paths


def trajectory_frames(paths: pd.DataFrame, n_frames: int = 25) -> pd.DataFrame:
    """``n_frames`` times evenly from the paths' largest t (the noise, 1) to their smallest (the data, 0), and
    where each particle is then: the teacher ("teacher" rows) linearly interpolated along its path, every other
    model at its last jump at or before that time (its point with the smallest t >= the frame time).

    ``paths``: :func:`lab.probes.trajectories`'s first output (columns model, path, k, t, x, y).
    Returns one row per (frame, model, path): frame, t, model, path, k (the position along the path, fractional
    for the teacher between two of its points), x, y.
    """
    missing = {"model", "path", "k", "t", "x", "y"} - set(getattr(paths, "columns", ()))
    if missing or not len(paths):
        raise LabError("paths must be lab.probes.trajectories' paths (columns model, path, k, t, x, y); got "
                       + ("no rows" if not missing else "no column " + ", ".join(sorted(missing))))
    n_frames = check_int("n_frames", n_frames, 2, 1000)
    times = np.linspace(float(paths["t"].max()), float(paths["t"].min()), n_frames)
    out = []
    for model, sub in paths.groupby("model", sort=False):
        t, pts, ids = _model_array(sub, str(model))
        for f, tf in enumerate(times):
            j = int(np.sum(t >= tf - _EPS)) - 1  # the last point reached at or before tf (t decreases along k)
            j = max(j, 0)
            if model == "teacher" and j + 1 < len(t) and tf < t[j] - _EPS:
                w = (t[j] - tf) / (t[j] - t[j + 1])
                xy, k = (1 - w) * pts[j] + w * pts[j + 1], j + w
            else:
                xy, k = pts[j], float(j)
            out.append(pd.DataFrame({"frame": f, "t": tf, "model": model, "path": ids, "k": k,
                                     "x": xy[:, 0], "y": xy[:, 1]}))
    return pd.concat(out, ignore_index=True)[COLUMNS]


__all__ = ["trajectory_frames"]
