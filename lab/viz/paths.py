"""Figures for ``lab.probes.paths``."""
from __future__ import annotations

__all__ = ["path_error_figure"]


def path_error_figure(df):
    """Plotly figure of :func:`lab.probes.paths.path_error`: error against time, one line per kind."""
    import plotly.graph_objects as go  # lazy: plotly only for this figure

    fig = go.Figure()
    for kind, part in df.groupby("kind", sort=False):
        fig.add_trace(go.Scatter(x=part["t"], y=part["error"], mode="lines+markers", name=kind))
    first = df.drop_duplicates("t")
    fig.add_trace(go.Scatter(x=first["t"], y=first["teacher_spread"], mode="lines", name="teacher spread",
                             line={"dash": "dot"}))
    fig.update_layout(xaxis_title="t (1 = noise)", yaxis_title="mean distance to the teacher's ODE state",
                      xaxis_autorange="reversed")
    return fig
