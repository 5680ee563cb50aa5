"""Figures for the TAID probes (``lab.probes.taid``); they only draw the probes' DataFrames."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.errors import LabError

__all__ = ["taid_trace_figure", "interpolated_figure"]


def taid_trace_figure(df: pd.DataFrame, t_start: float | None = None, t_end: float | None = None,
                      title: str = "TAID: interpolation parameter t over training") -> go.Figure:
    """t against the step from ``taid_trace(...)``; with ``t_start``/``t_end`` also the linear floor t_lin."""
    if not {"step", "t"} <= set(df.columns):
        raise LabError(f"table lacks columns step and t (has {', '.join(map(str, df.columns))}); "
                       "allowed: the output of taid_trace()")
    fig = go.Figure(go.Scatter(x=df.step, y=df.t, mode="lines", name="t (adaptive)"))
    if t_start is not None and t_end is not None and len(df):
        total = int(df.step.max())
        fig.add_trace(go.Scatter(x=[0, total], y=[t_start, t_end], mode="lines", name="linear floor t_lin",
                                 line=dict(dash="dot", color="gray")))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="t (0 student, 1 teacher)", height=380)
    fig.update_yaxes(range=[0, 1.02])
    return fig


def interpolated_figure(df: pd.DataFrame, title: str = "TAID targets p_t between student (t=0) and teacher (t=1)") \
        -> go.Figure:
    """Left: p_t over the classes, one line per t; right: entropy of p_t and KL(teacher || p_t) against t,
    from ``interpolated(...)``."""
    if not {"t", "cls", "prob", "entropy", "kl_to_teacher"} <= set(df.columns):
        raise LabError(f"table lacks columns t, cls, prob, entropy, kl_to_teacher (has {', '.join(map(str, df.columns))}); "
                       "allowed: the output of interpolated()")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("p_t over classes", "entropy and KL to the teacher"))
    ts = sorted(df.t.unique())
    for i, v in enumerate(ts):
        sub = df[df.t == v]
        shade = int(40 + 180 * (i / max(len(ts) - 1, 1)))
        fig.add_trace(go.Scatter(x=sub.cls, y=sub.prob, mode="lines+markers", name=f"t = {v:.2f}",
                                 line=dict(color=f"rgb({255 - shade},{60},{shade})")), row=1, col=1)
    per_t = df.groupby("t", sort=True)[["entropy", "kl_to_teacher"]].first().reset_index()
    fig.add_trace(go.Scatter(x=per_t.t, y=per_t.entropy, mode="lines+markers", name="entropy of p_t (nats)"),
                  row=1, col=2)
    fig.add_trace(go.Scatter(x=per_t.t, y=per_t.kl_to_teacher, mode="lines+markers", name="KL(teacher || p_t)"),
                  row=1, col=2)
    fig.update_xaxes(title_text="class / token", row=1, col=1)
    fig.update_xaxes(title_text="t", row=1, col=2)
    fig.update_yaxes(title_text="probability", row=1, col=1)
    fig.update_layout(title=title, height=420, width=950)
    return fig
