"""Figure for ``lab.probes.segments.segment_boundaries``: one panel per stage K, the teacher's ODE
paths (thin), the student's K jumps (lines + markers) and the teacher's state at each boundary
of that stage (open circles). Nothing here computes: it only draws."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.viz import COLORS, PALETTE


def _lines(sub: pd.DataFrame, max_paths: int):
    xs, ys = [], []
    for _, p in sub[sub.path < max_paths].groupby("path"):
        p = p.sort_values("k")
        xs += list(p.x) + [None]
        ys += list(p.y) + [None]
    return xs, ys


def segment_boundaries_figure(df: pd.DataFrame, max_paths: int = 24, lim: float | None = None) -> go.Figure:
    ks = sorted(int(k) for k in df.loc[df.kind == "boundary", "K"].unique())
    teacher = df[df.kind == "teacher"]
    student = df[df.kind == "student"]
    titles = []
    for k in ks:
        g = student[(student.K == k) & student.gap.notna()]
        last = g[g.t == g.t.min()].gap.mean() if len(g) else np.nan
        bs = ", ".join(f"{j / k:.3g}" for j in range(k, -1, -1))
        titles.append(f"K = {k}: boundaries {bs}<br>final gap to teacher ODE {last:.3f}")
    cols = min(4, len(ks))
    rows = (len(ks) + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.05, vertical_spacing=0.14)
    tx, ty = _lines(teacher, max_paths)
    for i, k in enumerate(ks):
        r, c = i // cols + 1, i % cols + 1
        first = i == 0
        fig.add_trace(go.Scatter(x=tx, y=ty, mode="lines", line=dict(color=COLORS["teacher"], width=0.7),
                                 name="teacher ODE", legendgroup="teacher", showlegend=first), row=r, col=c)
        bset = [j / k for j in range(k + 1)]
        tb = teacher[(teacher.path < max_paths) & teacher.t.apply(lambda t: any(abs(t - b) < 1e-6 for b in bset))]
        fig.add_trace(go.Scatter(x=tb.x, y=tb.y, mode="markers", name="teacher at boundaries", legendgroup="tb",
                                 showlegend=first, marker=dict(symbol="circle-open", size=8, color=COLORS["teacher"])),
                      row=r, col=c)
        sx, sy = _lines(student[student.K == k], max_paths)
        fig.add_trace(go.Scatter(x=sx, y=sy, mode="lines+markers", name=f"student, {k} jumps",
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=1.5), marker=dict(size=5)),
                      row=r, col=c)
    lim = lim or float(max(df.x.abs().quantile(0.995), df.y.abs().quantile(0.995)) * 1.1)
    fig.update_xaxes(range=[-lim, lim])
    fig.update_yaxes(range=[-lim, lim])
    fig.update_layout(title="Segment boundaries: student jumps vs the teacher's ODE (t = 1 → 0)",
                      height=420 * rows, legend=dict(orientation="h"), margin=dict(t=110))
    return fig


def boundary_gaps_figure(gaps: pd.DataFrame) -> go.Figure:
    """gaps: columns K, t, gap (``lab.probes.segments.boundary_gaps``)."""
    fig = go.Figure()
    for i, (k, sub) in enumerate(gaps.groupby("K")):
        fig.add_trace(go.Scatter(x=sub.t, y=sub.gap, mode="lines+markers", name=f"K = {int(k)}",
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    fig.update_layout(title="Distance to the teacher's ODE at each boundary", xaxis_title="t (1 = noise)",
                      yaxis_title="mean |student - teacher ODE|", xaxis_autorange="reversed", height=360)
    return fig
