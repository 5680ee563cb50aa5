"""Figures for the calibration probes (``lab.probes.calibration``); they only draw the probes' DataFrames."""
from __future__ import annotations

from typing import Mapping, Union

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.errors import LabError

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
_RELIABILITY_COLUMNS = {"lower", "upper", "confidence", "accuracy", "count"}


def reliability_figure(data: Union[pd.DataFrame, Mapping[str, pd.DataFrame]], title: str = "Reliability diagram") \
        -> go.Figure:
    """Reliability diagram from ``reliability(...)`` tables: one bar trace per model (bin accuracy over the bin's
    confidence interval; empty bins left out) plus the dashed diagonal of perfect calibration. A dict of tables
    (name -> table) draws several models as grouped bars. Each legend entry carries the ECE of its table."""
    tables = {"model": data} if isinstance(data, pd.DataFrame) else dict(data)
    if not tables:
        raise LabError("reliability_figure got no tables; allowed: a DataFrame or a non-empty dict of DataFrames")
    fig = go.Figure()
    for i, (name, df) in enumerate(tables.items()):
        missing = _RELIABILITY_COLUMNS - set(df.columns)
        if missing:
            raise LabError(f"table {name!r} lacks columns {sorted(missing)}; allowed: the output of reliability()")
        full = df[df["count"] > 0]
        n = df["count"].sum()
        err = float((full["count"] * (full.accuracy - full.confidence).abs()).sum() / n) if n else float("nan")
        fig.add_trace(go.Bar(x=(full.lower + full.upper) / 2, y=full.accuracy, width=(full.upper - full.lower) * 0.95,
                             name=f"{name} (ECE {err:.3f})", marker_color=COLORS[i % len(COLORS)], opacity=0.7,
                             customdata=full[["confidence", "count"]].to_numpy(),
                             hovertemplate="accuracy %{y:.3f}<br>confidence %{customdata[0]:.3f}"
                                           "<br>count %{customdata[1]}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line=dict(color="black", dash="dash")))
    fig.update_layout(title=title, xaxis_title="confidence (top-1 probability)", yaxis_title="accuracy",
                      barmode="overlay")
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1])
    return fig


def temperature_sweep_figure(df: pd.DataFrame, title: str = "Teacher soft labels over temperature") -> go.Figure:
    """Two panels against the temperature (log axis): mean entropy (nats), and the mean top-1 probability with
    the mean mass on the non-argmax classes ("dark knowledge"), from ``temperature_sweep(...)``."""
    missing = {"temperature", "entropy", "top1_prob", "non_argmax_mass"} - set(df.columns)
    if missing:
        raise LabError(f"table lacks columns {sorted(missing)}; allowed: the output of temperature_sweep()")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("mean entropy (nats)", "probability mass"))
    fig.add_trace(go.Scatter(x=df.temperature, y=df.entropy, mode="lines+markers", name="entropy"), row=1, col=1)
    fig.add_trace(go.Scatter(x=df.temperature, y=df.top1_prob, mode="lines+markers", name="top-1 probability"),
                  row=1, col=2)
    fig.add_trace(go.Scatter(x=df.temperature, y=df.non_argmax_mass, mode="lines+markers",
                             name="non-argmax mass (dark knowledge)"), row=1, col=2)
    fig.update_xaxes(type="log", title_text="temperature T")
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_layout(title=title, width=900, height=400)
    return fig
