"""Figures for particle paths (data from ``lab.probes.particles``). Nothing here computes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.viz import COLORS, square_axes


def particle_paths_figure(paths: pd.DataFrame, data=None, max_particles: int = 128, title: str | None = None,
                          lim: float | None = None) -> go.Figure:
    """Each particle's path over training (thin lines), start (open circles) and end (dots), over data points."""
    fig = go.Figure()
    if data is not None:
        d = np.asarray(data)
        fig.add_trace(go.Scatter(x=d[:, 0], y=d[:, 1], mode="markers", name="data",
                                 marker=dict(color=COLORS["data"], size=3, opacity=0.3)))
    sub = paths[paths.particle < max_particles].sort_values(["particle", "step"])
    xs, ys = [], []
    for _, p in sub.groupby("particle"):
        xs += list(p.x) + [None]
        ys += list(p.y) + [None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="paths", line=dict(color=COLORS["student"], width=0.7),
                             opacity=0.5))
    first, last = sub.step.min(), sub.step.max()
    s0, s1 = sub[sub.step == first], sub[sub.step == last]
    fig.add_trace(go.Scatter(x=s0.x, y=s0.y, mode="markers", name=f"start (step {first})",
                             marker=dict(color="black", size=4, symbol="circle-open")))
    fig.add_trace(go.Scatter(x=s1.x, y=s1.y, mode="markers", name=f"end (step {last})",
                             marker=dict(color=COLORS["student"], size=5)))
    fig.update_layout(title=title or "particle paths during training", height=520, legend=dict(orientation="h"))
    return square_axes(fig, lim)


def final_particles_figure(finals: dict, data=None, title: str | None = None, lim: float | None = 3.0) -> go.Figure:
    """Final particles of one or more methods (``{"sds": paths_or_array, ...}``) over the data."""
    from lab.viz import PALETTE  # inside: no cycle (lab.viz does not import this module); could be top-level

    fig = go.Figure()
    if data is not None:
        d = np.asarray(data)
        fig.add_trace(go.Scatter(x=d[:, 0], y=d[:, 1], mode="markers", name="data",
                                 marker=dict(color=COLORS["data"], size=3, opacity=0.3)))
    for i, (name, v) in enumerate(finals.items()):
        if isinstance(v, pd.DataFrame):
            last = v[v.step == v.step.max()]
            p = last[["x", "y"]].to_numpy()
        else:
            p = np.asarray(v)
        fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="markers", name=name,
                                 marker=dict(color=PALETTE[i % len(PALETTE)], size=5)))
    fig.update_layout(title=title or "final particles over the data", height=520, legend=dict(orientation="h"))
    return square_axes(fig, lim)


def particle_summary_figure(summary: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Spread and mean distance to the nearest mode over training (from ``particle_summary``)."""
    fig = go.Figure()
    for col in ("spread", "mode_dist", "move"):
        if col in summary and summary[col].notna().any():
            fig.add_trace(go.Scatter(x=summary.step, y=summary[col], mode="lines+markers", name=col))
    fig.update_layout(title=title or "particles over training", xaxis_title="step", height=380)
    return fig
