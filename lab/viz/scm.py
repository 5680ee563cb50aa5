"""Figures for the continuous-time consistency probes (``lab.probes.scm``). They only draw."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.viz import COLORS


def scm_internals_figure(df: pd.DataFrame, x: str = "t", title: str | None = None) -> go.Figure:
    """Tangent norm (before and after normalisation) and adaptive weight against time (``scm_internals``)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("tangent norm ||g|| / sqrt(D)", "adaptive weight w(t) e^-logvar(t)"))
    fig.add_trace(go.Scatter(x=df[x], y=df["tangent_norm"], mode="lines+markers", name="raw tangent",
                             line=dict(color=COLORS["student"])), row=1, col=1)
    if "tangent_norm_normalised" in df:
        fig.add_trace(go.Scatter(x=df[x], y=df["tangent_norm_normalised"], mode="lines", name="normalised tangent",
                                 line=dict(color=COLORS["target"], dash="dash")), row=1, col=1)
    fig.add_trace(go.Scatter(x=df[x], y=df["weight"], mode="lines+markers", name="weight",
                             line=dict(color=COLORS["teacher"])), row=1, col=2)
    label = "t (linear flow)" if x == "t" else "t (TrigFlow)"
    fig.update_xaxes(title_text=label)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_layout(title=title or "sCM internals on a fixed batch")
    return fig


def scm_training_figure(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Mean tangent norm and mean adaptive weight over training steps (``scm_training``)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("mean tangent norm", "mean adaptive weight"))
    fig.add_trace(go.Scatter(x=df["step"], y=df["tangent_norm"], mode="lines", name="tangent norm",
                             line=dict(color=COLORS["student"])), row=1, col=1)
    fig.add_trace(go.Scatter(x=df["step"], y=df["weight"], mode="lines", name="weight",
                             line=dict(color=COLORS["teacher"])), row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=title or "sCM over training")
    return fig
