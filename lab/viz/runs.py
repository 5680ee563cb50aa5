"""Figures of the runs root (drawn from ``lab.runs.index`` data only): quality against NFE across runs with the
Pareto front, and a run's recorded snapshot."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.errors import LabError
from lab.viz import COLORS, PALETTE, square_axes
from lab.viz.images import image_grid_figure


def pareto_figure(points: pd.DataFrame, front: pd.DataFrame,
                  title: str = "Quality against NFE across runs") -> go.Figure:
    """``lab.runs.index.quality_points`` (one marker per run and NFE, one colour per method, joined per run) and
    ``lab.runs.index.pareto`` (the front, a step line); one panel per data set, each with its noise floor."""
    datas = list(dict.fromkeys(points["data"])) or ["(no measured run)"]
    metric = {d: str(points.loc[points.data == d, "metric"].iloc[0]) for d in datas if (points.data == d).any()}
    fig = make_subplots(rows=1, cols=len(datas), subplot_titles=[f"{d} ({metric.get(d, '')})" for d in datas],
                        horizontal_spacing=0.08)
    colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(dict.fromkeys(points["method"]))}
    shown = set()
    for c, d in enumerate(datas, start=1):
        sub = points[points.data == d]
        for name, run in sub.groupby("name", sort=False):
            m = str(run["method"].iloc[0])
            run = run.sort_values("nfe")
            fig.add_trace(go.Scatter(x=run.nfe, y=run.distance, mode="lines+markers", name=m, legendgroup=m,
                                     showlegend=m not in shown, line=dict(color=colors[m], width=1),
                                     marker=dict(size=8, color=colors[m]), text=[name] * len(run),
                                     hovertemplate="%{text}<br>NFE %{x}<br>distance %{y:.4g}<extra>" + m + "</extra>"),
                          row=1, col=c)
            shown.add(m)
        f = front[front.data == d].sort_values("nfe")
        if len(f):
            fig.add_trace(go.Scatter(x=f.nfe, y=f.distance, mode="lines", line=dict(color="black", dash="dash",
                                     shape="hv"), name="Pareto front", legendgroup="front",
                                     showlegend="front" not in shown, hoverinfo="skip"), row=1, col=c)
            shown.add("front")
        if len(sub) and "floor" in sub and sub.floor.notna().any():
            fig.add_hline(y=float(sub.floor.iloc[0]), line_dash="dot", line_color=COLORS["data"],
                          annotation_text="noise floor", row=1, col=c)
    ticks = sorted({int(k) for k in points["nfe"]}) if len(points) else [1]
    fig.update_xaxes(type="log", title_text="NFE", tickvals=ticks, ticktext=[str(k) for k in ticks])
    fig.update_yaxes(title_text="distance to data (lower is better)", col=1)
    fig.update_layout(title=title, height=420, legend=dict(orientation="h", y=-0.2), margin=dict(t=80))
    return fig


def snapshot_figure(snap: dict, title: str | None = None, max_images: int = 32) -> go.Figure:
    """A run's snapshot (``lab.runs.index.snapshot``): its student's samples, as points (2D) or as a grid of the
    first ``max_images`` images (8 per row)."""
    if "samples" not in snap:
        raise LabError(f"the snapshot has no samples; it holds {', '.join(k for k in snap if k != 'step')}")
    x = np.asarray(snap["samples"])
    nfe = int(np.asarray(snap.get("samples_nfe", 1)))
    title = title or f"Student samples at step {snap.get('step', '?')} ({nfe} NFE, fixed noise)"
    if x.ndim == 2 and x.shape[1] == 2:
        fig = go.Figure(go.Scattergl(x=x[:, 0], y=x[:, 1], mode="markers", name="student",
                                     marker=dict(size=3, color=COLORS["student"])))
        if "targets_x_t" in snap and np.asarray(snap["targets_x_t"]).shape[1:] == (2,):
            t = np.asarray(snap["targets_x_t"])
            fig.add_trace(go.Scattergl(x=t[:, 0], y=t[:, 1], mode="markers", name="probe inputs x_t",
                                       marker=dict(size=2, color=COLORS["data"]), visible="legendonly"))
        fig.update_layout(title=title, height=460, legend=dict(orientation="h"))
        lim = float(np.quantile(np.abs(x), 0.99) * 1.15) if len(x) else 3.0
        return square_axes(fig, lim)
    if x.ndim == 4:
        k = min(max_images, len(x))
        cols = min(8, k)
        rows = -(-k // cols)
        cells = np.full((rows * cols, *x.shape[1:]), np.nan, dtype=np.float32)
        cells[:k] = x[:k]
        return image_grid_figure(cells.reshape(rows, cols, *x.shape[1:]), [f"#{i * cols}" for i in range(rows)],
                                 title=title, pixel=6)
    raise LabError(f"cannot draw samples of shape {x.shape}; allowed: (n, 2) points or (n, C, H, W) images")


__all__ = ["pareto_figure", "snapshot_figure"]
