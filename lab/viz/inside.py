"""Figures of the "inside each method" views (``lab.probes.inside.View``). Nothing here computes: it only draws.

``view_figure(view)`` dispatches on ``view.kind`` and reuses the figure of the probe that made the data (dm, scm,
segments, guidance, adversarial, paths, images, kd's CKA heatmap, live's field drawing). Titles are short and on
one line, legends sit below the plots and 2D planes have equal x and y scales (a 1024x768 projector).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.errors import LabError
from lab.viz import COLORS, PALETTE, square_axes, trajectories_figure
from lab.viz.adversarial import decision_field_figure
from lab.viz.dm import fake_score_error_figure
from lab.viz.guidance import guidance_sweep_figure, student_split_figure
from lab.viz.images import guidance_grid_figure, x0_view_figure
from lab.viz.kd import cka_heatmap
from lab.viz.live import field_traces
from lab.viz.paths import path_error_figure
from lab.viz.scm import scm_internals_figure
from lab.viz.segments import segment_boundaries_figure

FONT = dict(size=12)
HEIGHT = 440


def field_figure(df, title: str) -> go.Figure:
    """The method's field (``method_field``) alone: arrows (and a discriminator's logit) on equal-scaled axes."""
    fig = go.Figure(field_traces(df))
    lim = float(max(np.abs(df.x).max(), np.abs(df.y).max(), np.abs(df.x + df.u).max(), np.abs(df.y + df.v).max(), 1.0))
    fig.update_layout(title=title)
    return square_axes(fig, min(lim * 1.05, 6.0))


def consistency_grid_figure(df, title: str) -> go.Figure:
    """``consistency_grid``: adjacent-point gap and endpoint error against the grid time."""
    fig = go.Figure([go.Scatter(x=df.t, y=df.endpoint, mode="lines+markers", name="to the path's end",
                                line=dict(color=COLORS["student"])),
                     go.Scatter(x=df.t, y=df.consistency, mode="lines+markers", name="adjacent grid points",
                                line=dict(color=COLORS["target"])),
                     go.Scatter(x=df.t, y=df.teacher_spread, mode="lines", name="spread of the ends (scale)",
                                line=dict(color=COLORS["data"], dash="dot"))])
    fig.update_layout(title=title, xaxis_title="grid time t (1 = noise)", yaxis_title="mean distance",
                      yaxis_type="log")
    return fig


def schedule_figure(df, title: str) -> go.Figure:
    """``method_schedule``: one row of subplots per quantity, value against the training step."""
    qs = list(dict.fromkeys(df.quantity))
    fig = make_subplots(rows=len(qs), cols=1, shared_xaxes=True, subplot_titles=qs,
                        vertical_spacing=0.5 / (4 * len(qs)) if len(qs) > 1 else 0.0)
    for i, q in enumerate(qs):
        sub = df[df.quantity == q]
        fig.add_trace(go.Scatter(x=sub.step, y=sub.value, mode="lines", name=q, line_shape="hv",
                                 line=dict(color=PALETTE[i % len(PALETTE)])), row=i + 1, col=1)
    fig.update_xaxes(title_text="training step", row=len(qs), col=1)
    fig.update_layout(title=title, height=max(HEIGHT, 150 * len(qs) + 90), showlegend=False)
    return fig


def _cka(df, title):
    t = df.t.iloc[0] if len(df) else 0.5
    return cka_heatmap(df[df.t == t], title=title)


def _straightness(data, title):
    fig = trajectories_figure(data["paths"], data["summary"])
    fig.update_layout(title=title)
    return fig


def _segments(data, title):
    fig = segment_boundaries_figure(data["boundaries"])
    fig.update_layout(title=title, margin=dict(t=110))
    return fig


def _titled(fig, title):
    fig.update_layout(title=title)
    return fig


DRAW = {
    "field": lambda v: field_figure(v.data, v.title),
    "cka": lambda v: _cka(v.data, v.title),
    "fake_score_error": lambda v: _titled(fake_score_error_figure(v.data), v.title).update_xaxes(
        title_text="auxiliary fitting step"),
    "decision": lambda v: decision_field_figure(v.data["field"], v.data["samples"], title=v.title),
    "scm": lambda v: _titled(scm_internals_figure(v.data), v.title),
    "path_error": lambda v: _titled(path_error_figure(v.data), v.title),
    "guidance_sweep": lambda v: _titled(guidance_sweep_figure(v.data["summary"], v.data["samples"]), v.title),
    "student_split": lambda v: _titled(student_split_figure(v.data), v.title),
    "segments": lambda v: _segments(v.data, v.title),
    "consistency_grid": lambda v: consistency_grid_figure(v.data, v.title),
    "straightness": lambda v: _straightness(v.data, v.title),
    "schedule": lambda v: schedule_figure(v.data, v.title),
    "x0": lambda v: _titled(x0_view_figure(v.data), v.title),
    "guidance_grid": lambda v: _titled(guidance_grid_figure(v.data), v.title),
}


def view_figure(view) -> go.Figure:
    """The plotly figure of one ``lab.probes.inside.View`` (dispatch on ``view.kind``)."""
    draw = DRAW.get(getattr(view, "kind", None))
    if draw is None:
        raise LabError(f"unknown view kind {getattr(view, 'kind', None)!r}; allowed: {', '.join(DRAW)}")
    fig = draw(view)
    fig.update_layout(title=dict(text=view.title, font=dict(size=14)), font=FONT,
                      legend=dict(orientation="h", y=-0.12, yanchor="top", x=0))
    if view.kind not in ("schedule", "segments", "x0", "guidance_grid", "guidance_sweep"):
        fig.update_layout(height=HEIGHT, margin=dict(t=50, b=40, l=50, r=20))
    return fig


__all__ = ["view_figure", "field_figure", "consistency_grid_figure", "schedule_figure", "DRAW"]
