"""Figures for particle paths (data from ``lab.probes.particles``). Nothing here computes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.viz import COLORS, PALETTE, square_axes


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


def side_by_side_figure(side: dict, data=None, force_step: int | None = None, max_particles: int = 64,
                        lim: float | None = 3.0, arrow: float = 0.5, title: str | None = None) -> go.Figure:
    """Score-distillation methods side by side (``lab.probes.particles.score_distillation_side_by_side``): per
    method one panel with the data (grey), each particle's path (thin lines), its start (open circles), its end
    (dots) and the force on it at ``force_step`` (arrows; default the last recorded step). Arrows are scaled per
    panel so the longest is ``arrow`` long (the direction and the relative size within a panel are the data's)."""
    from plotly.subplots import make_subplots

    paths, forces = side["paths"], side["forces"]
    metrics = side.get("metrics")
    methods = list(dict.fromkeys(paths.method))
    titles = []
    for m in methods:
        t = m
        if metrics is not None and (metrics.method == m).any():
            r = metrics[metrics.method == m].iloc[0]
            t += f"<br>spread {r.spread:.3f} · to modes {r.fidelity:.3f}"
        titles.append(t)
    fig = make_subplots(rows=1, cols=len(methods), subplot_titles=titles, horizontal_spacing=0.03)
    fstep = int(forces.step.max()) if force_step is None else int(force_step)
    for i, m in enumerate(methods):
        col, color, first = i + 1, PALETTE[i % len(PALETTE)], i == 0
        if data is not None:
            d = np.asarray(data)
            fig.add_trace(go.Scattergl(x=d[:, 0], y=d[:, 1], mode="markers", name="data", showlegend=first,
                                       legendgroup="data", marker=dict(color=COLORS["data"], size=3, opacity=0.25)),
                          row=1, col=col)
        sub = paths[(paths.method == m) & (paths.particle < max_particles)].sort_values(["particle", "step"])
        xs, ys = [], []
        for _, p in sub.groupby("particle"):
            xs += list(p.x) + [None]
            ys += list(p.y) + [None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="paths", showlegend=first, legendgroup="paths",
                                 line=dict(color=color, width=0.6), opacity=0.45), row=1, col=col)
        s0, s1 = sub[sub.step == sub.step.min()], sub[sub.step == sub.step.max()]
        fig.add_trace(go.Scatter(x=s0.x, y=s0.y, mode="markers", name="start", showlegend=first, legendgroup="start",
                                 marker=dict(color="black", size=4, symbol="circle-open")), row=1, col=col)
        fig.add_trace(go.Scatter(x=s1.x, y=s1.y, mode="markers", name=f"{m}: end", marker=dict(color=color, size=5)),
                      row=1, col=col)
        f = forces[(forces.method == m) & (forces.step == fstep) & (forces.particle < max_particles)]
        norm = float(np.hypot(f.u, f.v).max()) if len(f) else 0.0
        s = arrow / norm if norm > 0 else 0.0
        ax, ay = [], []
        for x, y, u, v in zip(f.x, f.y, f.u, f.v):
            ax += [x, x + s * u, None]
            ay += [y, y + s * v, None]
        fig.add_trace(go.Scatter(x=ax, y=ay, mode="lines", name=f"force (step {fstep})", showlegend=first,
                                 legendgroup="force", line=dict(color="black", width=1)), row=1, col=col)
    fig.update_layout(title=title or "Score distillation side by side: same start, same steps",
                      height=360, margin=dict(t=90), legend=dict(orientation="h"))
    for i in range(len(methods)):
        fig.update_yaxes(scaleanchor=f"x{i + 1 if i else ''}", scaleratio=1, row=1, col=i + 1)
        if lim is not None:
            fig.update_xaxes(range=[-lim, lim], row=1, col=i + 1)
            fig.update_yaxes(range=[-lim, lim], row=1, col=i + 1)
    return fig
