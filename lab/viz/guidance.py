"""Figures for guidance distillation and multi-student distillation (drawn from probe data only)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

LABEL_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf"]


def guidance_sweep_figure(summary: pd.DataFrame, samples: pd.DataFrame, max_points: int = 800) -> go.Figure:
    """A grid: rows = guided teacher and student, columns = guidance weights; points coloured by class.
    Titles give the steps, network passes and the SWD to the many-step guided reference."""
    ws = list(dict.fromkeys(samples.w))
    models = [m for m in ("teacher", "student") if m in set(samples.model)]
    titles = []
    for m in models:
        for w in ws:
            r = summary[(summary.model == m) & (summary.w == w)].iloc[0]
            titles.append(f"{m} w={w:g}<br>{int(r.steps)} steps, {int(r.passes)} passes · SWD {r.swd:.3f}")
    fig = make_subplots(rows=len(models), cols=len(ws), subplot_titles=titles, horizontal_spacing=0.03,
                        vertical_spacing=0.12)
    for i, m in enumerate(models):
        for j, w in enumerate(ws):
            sub = samples[(samples.model == m) & (samples.w == w)].head(max_points)
            colors = [LABEL_COLORS[int(k) % len(LABEL_COLORS)] for k in sub.label]
            fig.add_trace(go.Scattergl(x=sub.x, y=sub.y, mode="markers", marker=dict(size=3, color=colors),
                                       name=f"{m} w={w:g}", showlegend=False), row=i + 1, col=j + 1)
    lim = float(max(samples.x.abs().quantile(0.99), samples.y.abs().quantile(0.99)) * 1.15)
    fig.update_xaxes(range=[-lim, lim])
    fig.update_yaxes(range=[-lim, lim])
    fig.update_layout(height=320 * len(models), width=max(600, 280 * len(ws)),
                      title="Guidance sweep: guided teacher (2 passes/step) vs distilled student (1 pass/step)",
                      margin=dict(t=100))
    return fig


def guidance_sweep_lines(summary: pd.DataFrame, column: str = "swd") -> go.Figure:
    """``column`` (swd, class_swd, pair, spread, high_quality) against w, one line per model."""
    fig = go.Figure()
    for m, sub in summary.groupby("model", sort=False):
        fig.add_trace(go.Scatter(x=sub.w, y=sub[column], mode="lines+markers", name=m))
    fig.update_layout(xaxis_title="guidance weight w", yaxis_title=column, title=f"{column} vs guidance weight")
    return fig


def student_split_figure(df: pd.DataFrame, max_points: int = 2000) -> go.Figure:
    """One-step samples of a multi-student generator, coloured by the student that made them."""
    fig = go.Figure()
    for k, sub in df.head(max_points).groupby("student"):
        fig.add_trace(go.Scattergl(x=sub.x, y=sub.y, mode="markers", marker=dict(size=3, color=LABEL_COLORS[int(k) % 10]),
                                   name=f"student {k}"))
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    fig.update_layout(title="Multi-student one-step samples by student")
    return fig
