"""Plotly figures drawn from probe and metric data. Nothing here computes: it only draws."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = {"teacher": "#1f77b4", "student": "#d62728", "target": "#2ca02c", "data": "#7f7f7f"}
PALETTE = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def square_axes(fig, lim=None):
    """Equal x and y scales on ``fig`` (and both axes over [-lim, lim] when ``lim`` is given); returns ``fig``."""
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    if lim is not None:
        fig.update_xaxes(range=[-lim, lim])
        fig.update_yaxes(range=[-lim, lim])
    return fig


def _arrows(df, ox, oy, dx, dy, name, color, scale=1.0):
    xs, ys = [], []
    for x, y, u, v in zip(df[ox], df[oy], df[dx], df[dy]):
        xs += [x, x + scale * (u - x) if scale != 1.0 else u, None]
        ys += [y, y + scale * (v - y) if scale != 1.0 else v, None]
    return go.Scatter(x=xs, y=ys, mode="lines", name=name, line=dict(color=color, width=1))


def targets_figure(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Arrows from each x_t to the teacher's prediction and to the method's target (x0 space),
    or velocity arrows (v space)."""
    space = df["space"].iloc[0]
    fig = go.Figure()
    if space == "x0":
        fig.add_trace(_arrows(df, "x", "y", "teacher_x", "teacher_y", "teacher x̂0", COLORS["teacher"]))
        fig.add_trace(_arrows(df, "x", "y", "target_x", "target_y", "method target", COLORS["target"]))
        fig.add_trace(go.Scatter(x=df["target_x"], y=df["target_y"], mode="markers", name="target endpoint",
                                 marker=dict(color=COLORS["target"], size=4)))
    else:
        s = 0.15
        d = df.assign(tx=df.x + s * df.target_x, ty=df.y + s * df.target_y,
                      kx=df.x + s * df.teacher_x.fillna(0), ky=df.y + s * df.teacher_y.fillna(0))
        if df["teacher_x"].notna().any():
            fig.add_trace(_arrows(d, "x", "y", "kx", "ky", "teacher velocity", COLORS["teacher"]))
        fig.add_trace(_arrows(d, "x", "y", "tx", "ty", "method target velocity", COLORS["target"]))
    fig.add_trace(go.Scatter(x=df["x"], y=df["y"], mode="markers", name="x_t", marker=dict(color="black", size=3)))
    t = df["t"].iloc[0]
    fig.update_layout(title=title or f"{df['method'].iloc[0]}: regression targets at t = {t:.2f} ({space} space, on {df['on'].iloc[0]})",
                      height=520, legend=dict(orientation="h"))
    return square_axes(fig)


def trajectories_figure(paths: pd.DataFrame, summary: pd.DataFrame | None = None, max_paths: int = 64) -> go.Figure:
    fig = go.Figure()
    for model, color in (("teacher", COLORS["teacher"]), ("student", COLORS["student"])):
        sub = paths[(paths.model == model) & (paths.path < max_paths)]
        if sub.empty:
            continue
        xs, ys = [], []
        for _, p in sub.groupby("path"):
            xs += list(p.x) + [None]
            ys += list(p.y) + [None]
        label = model
        if summary is not None and (summary.model == model).any():
            r = summary[summary.model == model].iloc[0]
            label = f"{model} ({int(r.nfe)} NFE, straightness {r.straightness:.3g})"
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers" if model == "student" else "lines", name=label,
                                 line=dict(color=color, width=1.5 if model == "student" else 0.8),
                                 marker=dict(size=4)))
        ends = sub[sub.k == sub.k.max()]
        fig.add_trace(go.Scatter(x=ends.x, y=ends.y, mode="markers", showlegend=False, marker=dict(color=color, size=5)))
    fig.update_layout(title="Sampling paths from the same noise (t = 1 → 0)", height=560, legend=dict(orientation="h"))
    lim = float(max(paths.x.abs().quantile(0.995), paths.y.abs().quantile(0.995)) * 1.1)
    return square_axes(fig, lim)


def sample_panels_figure(panels: pd.DataFrame, lim: float | None = None, max_points: int = 1000) -> go.Figure:
    keys = list(dict.fromkeys(zip(panels.model, panels.nfe)))
    cols = min(4, len(keys))
    rows = (len(keys) + cols - 1) // cols
    titles = []
    for m, k in keys:
        r = panels[(panels.model == m) & (panels.nfe == k)].iloc[0]
        titles.append(f"{m} @ {k} NFE<br>SWD {r.swd:.3f} (floor {r.swd_floor:.3f}) · {1000 * r.seconds:.1f} ms")
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.04, vertical_spacing=0.12)
    for i, (m, k) in enumerate(keys):
        sub = panels[(panels.model == m) & (panels.nfe == k)].head(max_points)
        color = COLORS["teacher"] if m == "teacher" else PALETTE[(i - 1) % len(PALETTE)]
        fig.add_trace(go.Scattergl(x=sub.x, y=sub.y, mode="markers", marker=dict(size=3, color=color),
                                   name=f"{m}@{k}", showlegend=False), row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(height=330 * rows, title="Same noise: teacher vs students", margin=dict(t=90))
    lim = lim or float(max(panels.x.abs().quantile(0.99), panels.y.abs().quantile(0.99)) * 1.15)
    fig.update_xaxes(range=[-lim, lim])
    fig.update_yaxes(range=[-lim, lim])
    return fig


def metrics_figure(metrics: pd.DataFrame, columns: list[str] | None = None) -> go.Figure:
    cols = columns or [c for c in metrics.columns if c.startswith("loss/")]
    fig = go.Figure()
    for c in cols:
        fig.add_trace(go.Scatter(x=metrics["step"], y=metrics[c], mode="lines", name=c))
    fig.update_layout(title="Training curves", xaxis_title="step", yaxis_type="log", height=360)
    return fig


def distance_vs_nfe_figure(df: pd.DataFrame) -> go.Figure:
    """df columns: model, nfe, swd (and optionally swd_floor)."""
    fig = go.Figure()
    for m, sub in df.groupby("model", sort=False):
        fig.add_trace(go.Scatter(x=sub.nfe, y=sub.swd, mode="lines+markers", name=m))
    if "swd_floor" in df:
        fig.add_hline(y=float(df.swd_floor.iloc[0]), line_dash="dot", annotation_text="noise floor")
    fig.update_layout(xaxis_type="log", xaxis_title="NFE", yaxis_title="sliced Wasserstein to data", height=380)
    return fig


__all__ = ["targets_figure", "trajectories_figure", "sample_panels_figure", "metrics_figure", "distance_vs_nfe_figure"]
