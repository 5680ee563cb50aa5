"""Figures for the distribution-matching probes (``lab.probes.dm``). They only draw."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.viz import PALETTE, square_axes

FIELD_COLORS = {"real": "#1f77b4", "fake": "#d62728", "diff": "#2ca02c"}
FIELD_NAMES = {"real": "real score (teacher)", "fake": "fake score", "diff": "real - fake (generator push)"}


def _quiver(x, y, u, v, scale, name, color, visible=True):
    """Arrows as one line trace: a shaft and two head strokes per arrow, None-separated."""
    xs, ys = [], []
    for x0, y0, du, dv in zip(x, y, u * scale, v * scale):
        x1, y1 = x0 + du, y0 + dv
        length = float(np.hypot(du, dv))
        xs += [x0, x1, None]
        ys += [y0, y1, None]
        if length > 0:
            h = 0.3 * length
            ang = np.arctan2(dv, du)
            for s in (np.pi - 0.45, -(np.pi - 0.45)):
                xs += [x1, x1 + h * np.cos(ang + s), None]
                ys += [y1, y1 + h * np.sin(ang + s), None]
    return go.Scatter(x=xs, y=ys, mode="lines", name=name, line=dict(color=color, width=1),
                      visible=True if visible else "legendonly", hoverinfo="skip")


def _spacing(df):
    ux = np.unique(np.round(df["x"].to_numpy(), 6))
    if df.get("where", pd.Series(["grid"])).iloc[0] == "grid" and len(ux) > 1:
        return float(np.median(np.diff(ux)))
    span = float(max(np.ptp(df["x"].to_numpy()), np.ptp(df["y"].to_numpy()), 1e-6))
    return span / max(np.sqrt(len(df)), 1.0)


def score_field_figure(df: pd.DataFrame, fields=("diff", "real", "fake"), normalize: bool = True,
                       title: str | None = None) -> go.Figure:
    """Quiver plot of the real, fake and real-minus-fake scores from ``score_field`` or ``score_arrows``.

    Arrows are scaled together per field so the longest is about one grid spacing (``normalize``);
    the first field is shown, the others can be switched on in the legend. Generator samples
    (``sample_x``/``sample_y``, from ``score_arrows``) are drawn as grey dots.
    """
    fig = go.Figure()
    if "sample_x" in df:
        fig.add_trace(go.Scatter(x=df["sample_x"], y=df["sample_y"], mode="markers", name="generator samples",
                                 marker=dict(color="#7f7f7f", size=3, opacity=0.6)))
    step = _spacing(df)
    for i, f in enumerate(fields):
        u, v = df[f"{f}_dx"].to_numpy(), df[f"{f}_dy"].to_numpy()
        m = float(np.nanmax(np.hypot(u, v))) if len(u) else 0.0
        scale = step / m if (normalize and m > 0) else 1.0
        fig.add_trace(_quiver(df["x"].to_numpy(), df["y"].to_numpy(), u, v, scale, FIELD_NAMES.get(f, f),
                              FIELD_COLORS.get(f, PALETTE[i % len(PALETTE)]), visible=(i == 0)))
    t = float(df["t"].iloc[0]) if "t" in df and len(df) else float("nan")
    where = df["where"].iloc[0] if "where" in df and len(df) else "grid"
    fig.update_layout(title=title or f"scores at t = {t:.2f} (on the {where})", height=520, legend=dict(orientation="h"))
    return square_axes(fig)


def fake_score_error_figure(df: pd.DataFrame, column: str = "error_eps", log: bool = True,
                            title: str | None = None) -> go.Figure:
    """Fake-score error: against t (from ``fake_score_error``), or over training, one line per t
    (from ``FakeScoreTracker.frame()``, which has an ``it`` column)."""
    fig = go.Figure()
    if "it" in df:
        for i, (t, sub) in enumerate(df.groupby("t")):
            sub = sub.sort_values("it")
            fig.add_trace(go.Scatter(x=sub["it"], y=sub[column], mode="lines+markers", name=f"t = {t:.2f}",
                                     line=dict(color=PALETTE[i % len(PALETTE)])))
        xlab = "training step"
    else:
        sub = df.sort_values("t")
        fig.add_trace(go.Scatter(x=sub["t"], y=sub[column], mode="lines+markers", name="fake vs true score",
                                 line=dict(color=FIELD_COLORS["fake"])))
        ref = {"error": "teacher_error", "error_eps": "teacher_error_eps"}.get(column)
        if ref in sub:
            fig.add_trace(go.Scatter(x=sub["t"], y=sub[ref], mode="lines+markers",
                                     name="teacher vs true score", line=dict(color=FIELD_COLORS["real"], dash="dot")))
        xlab = "t"
    fig.update_layout(title=title or f"fake-score error ({column})", xaxis_title=xlab, yaxis_title=column, height=420,
                      legend=dict(orientation="h"))
    if log:
        fig.update_yaxes(type="log")
    return fig
