"""Quality against NFE and against measured latency (drawn from :func:`lab.probes.quality.quality_curves` only).

What to look for: students below the teacher's dashed curve at the same NFE (or the same milliseconds) are
worth their distillation; the grey dotted line is the noise floor, the distance a perfect generator gets at this
sample size. Open markers are NFEs a student was not trained for (shown only with ``native_only=False``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.errors import LabError
from lab.viz import COLORS, PALETTE

METRIC_LABELS = {"swd": "sliced Wasserstein to data", "fd": "Fréchet distance (digits features)"}
_NEEDED = {"model", "kind", "nfe", "native", "quality", "metric", "floor", "ms"}


def _check(df: pd.DataFrame) -> None:
    missing = _NEEDED - set(getattr(df, "columns", ()))
    if missing or not len(df):
        raise LabError("expected the rows of lab.probes.quality.quality_curves (columns "
                       f"{', '.join(sorted(_NEEDED))}); "
                       f"got {'no rows' if not missing else 'no column ' + ', '.join(sorted(missing))}")


def _figure(df: pd.DataFrame, x: str, title: str, xtitle: str, nfe_text: bool = False) -> go.Figure:
    _check(df)
    fig, i = go.Figure(), 0
    for model, sub in df.groupby("model", sort=False):
        sub = sub.sort_values("nfe")
        teacher = sub["kind"].iloc[0] == "teacher"
        color = COLORS["teacher"] if teacher else PALETTE[i % len(PALETTE)]
        i += 0 if teacher else 1
        fig.add_trace(go.Scatter(
            x=sub[x].to_numpy(), y=sub["quality"].to_numpy(), name=str(model),
            mode="lines+markers+text" if nfe_text else "lines+markers",
            text=[str(int(k)) for k in sub["nfe"]] if nfe_text else None, textposition="top center",
            textfont=dict(size=10, color=color),
            line=dict(color=color, width=1.5, dash="dash" if teacher else "solid"),
            marker=dict(size=8 if not teacher else 6, color=color,
                        symbol=["circle" if nat else "circle-open" for nat in sub["native"]]),
            customdata=np.stack([sub["nfe"].to_numpy(), sub["ms"].to_numpy()], 1),
            hovertemplate=f"<b>{model}</b><br>NFE %{{customdata[0]}}<br>quality %{{y:.4g}}<br>"
                          f"%{{customdata[1]:.1f}} ms<extra></extra>"))
    floor, lo, hi = float(df["floor"].iloc[0]), float(df[x].min()), float(df[x].max())
    fig.add_trace(go.Scatter(x=[lo, hi], y=[floor, floor], mode="lines", name="noise floor",
                             line=dict(color=COLORS["data"], dash="dot", width=1.5),
                             hovertemplate=f"noise floor {floor:.4g}<extra></extra>"))  # add_hline mislabels log axes
    metric = str(df["metric"].iloc[0])
    fig.update_yaxes(title_text=f"{METRIC_LABELS.get(metric, metric)} (lower is better)", type="log")
    fig.update_layout(title=title, xaxis_title=xtitle, height=440, legend=dict(orientation="h", y=-0.18),
                      margin=dict(t=60, l=70, r=20), hovermode="closest")
    return fig


def quality_vs_nfe_figure(df: pd.DataFrame) -> go.Figure:
    """Quality against NFE (log2 axis): one line per model, the teacher dashed, the noise floor dotted grey."""
    fig = _figure(df, "nfe", "Quality against NFE", "NFE (network evaluations)")
    ticks = sorted({int(k) for k in df["nfe"]})
    return fig.update_xaxes(type="log", tickvals=ticks, ticktext=[str(k) for k in ticks])


def quality_vs_latency_figure(df: pd.DataFrame) -> go.Figure:
    """Quality against measured warm latency per batch (log axis); same encoding as :func:`quality_vs_nfe_figure`."""
    return _figure(df, "ms", "Quality against latency", "ms per batch (warm median); labels: NFE",
                   nfe_text=True).update_xaxes(type="log")


__all__ = ["quality_vs_nfe_figure", "quality_vs_latency_figure", "METRIC_LABELS"]
