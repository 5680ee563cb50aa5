"""Figures for the divergence explorer (:mod:`lab.probes.divergence`); they only draw the probe's output."""
from __future__ import annotations

import math
from typing import Mapping

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.errors import LabError

__all__ = ["explorer_figure", "landing_figure"]

COLORS = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
TEACHER = "#1f77b4"
_FIT_KEYS = {"divergence", "teacher", "student", "loss", "mean", "std"}


def _fits(result) -> dict:
    """``explore(..., return_fits=True)`` output, its fits dict, or a single fit -> {label: fit}."""
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Mapping):
        result = result[1]
    if isinstance(result, Mapping) and _FIT_KEYS <= set(result):
        result = {result["divergence"]: result}
    if not isinstance(result, Mapping) or not result:
        raise LabError(f"explorer_figure got {type(result).__name__}; allowed: explore(..., return_fits=True), "
                       "its dict of fits, or one fit_categorical / fit_gaussian result")
    for k, f in result.items():
        if not isinstance(f, Mapping) or not _FIT_KEYS <= set(f):
            have = set(f) if isinstance(f, Mapping) else set()
            raise LabError(f"fit {k!r} lacks keys {sorted(_FIT_KEYS - have)}; "
                           "allowed: fit_categorical / fit_gaussian results")
    return dict(result)


def explorer_figure(result, cols: int = 4, title: str | None = None) -> go.Figure:
    """One panel per divergence: the teacher (probabilities over the classes as bars, or the mixture density
    as a filled line) and the fitted student on top; the panel title gives where the student landed (mean,
    std and the share of its mass on the larger mode)."""
    fits = _fits(result)
    n = len(fits)
    cols = max(1, min(int(cols), n))
    rows = math.ceil(n / cols)
    titles = [f"{k}<br><sup>mean {f['mean']:.2f}, std {f['std']:.2f}, "
              f"{100 * f.get('dominant_share', float('nan')):.0f}% on one mode</sup>" for k, f in fits.items()]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, shared_yaxes=True,
                        vertical_spacing=0.22 / max(rows, 1) + 0.08, horizontal_spacing=0.03)
    for i, (k, f) in enumerate(fits.items()):
        r, c = i // cols + 1, i % cols + 1
        cat = "classes" in f
        x = f["classes"] if cat else f["x"]
        first = i == 0
        if cat:
            fig.add_trace(go.Bar(x=x, y=f["teacher"], name="teacher", marker_color=TEACHER, opacity=0.45,
                                 legendgroup="teacher", showlegend=first), r, c)
            fig.add_trace(go.Scatter(x=x, y=f["student"], mode="lines+markers", name="student",
                                     line=dict(color=COLORS[0]), marker=dict(size=4), legendgroup="student",
                                     showlegend=first), r, c)
        else:
            fig.add_trace(go.Scatter(x=x, y=f["teacher"], mode="lines", name="teacher", fill="tozeroy",
                                     line=dict(color=TEACHER), legendgroup="teacher", showlegend=first), r, c)
            fig.add_trace(go.Scatter(x=x, y=f["student"], mode="lines", name="student",
                                     line=dict(color=COLORS[0], width=2.5), legendgroup="student",
                                     showlegend=first), r, c)
    kind = "categorical" if "classes" in next(iter(fits.values())) else "gaussian"
    fig.update_layout(title=title or f"Which mode does the student pick? ({kind} explorer)",
                      height=280 * rows + 80, bargap=0.05)
    fig.update_xaxes(title_text="class" if kind == "categorical" else "x", row=rows)
    fig.update_yaxes(title_text="probability" if kind == "categorical" else "density", col=1)
    return fig


def landing_figure(df: pd.DataFrame, title: str = "Where the student lands") -> go.Figure:
    """From ``explore(...)``'s DataFrame: per divergence, the student's std (bars) against the teacher's
    whole std and its within-mode std (dashed lines), and the share of mass on the larger mode (markers,
    right axis)."""
    need = {"divergence", "std", "dominant_share", "teacher_std", "mode_std"}
    missing = need - set(df.columns)
    if missing:
        raise LabError(f"landing_figure needs columns {sorted(missing)}; allowed: the output of explore()")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=df["divergence"], y=df["std"], name="student std", marker_color=COLORS[0],
                         opacity=0.7), secondary_y=False)
    for col, name, dash in (("teacher_std", "teacher std (both modes)", "dash"),
                            ("mode_std", "one mode's std", "dot")):
        fig.add_trace(go.Scatter(x=df["divergence"], y=df[col], mode="lines", name=name,
                                 line=dict(color=TEACHER, dash=dash)), secondary_y=False)
    fig.add_trace(go.Scatter(x=df["divergence"], y=df["dominant_share"], mode="markers", name="mass on one mode",
                             marker=dict(color="black", size=10, symbol="diamond")), secondary_y=True)
    fig.update_layout(title=title, legend=dict(orientation="h", y=-0.35))
    fig.update_yaxes(title_text="std", secondary_y=False)
    fig.update_yaxes(title_text="share of mass on the larger mode", range=[0.4, 1.05], secondary_y=True)
    return fig
