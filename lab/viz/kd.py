"""Figures for the knowledge-distillation probes (``lab.probes.kd``, ``lab.probes.embeddings``). They only draw."""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.errors import LabError

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
_CKA_COLUMNS = {"teacher_layer", "student_layer", "cka"}
_METRIC_TITLES = {"acc": "test accuracy", "nll": "test NLL", "ece": "test ECE", "agree": "top-1 agreement with teacher",
                  "kl_truth": "KL(truth || model)"}


def _need(df: pd.DataFrame, cols: set, what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise LabError(f"expected a DataFrame ({what}), got {type(df).__name__}")
    missing = cols - set(df.columns)
    if missing:
        raise LabError(f"table lacks columns {sorted(missing)}; allowed: the output of {what}")


def _matrix(df: pd.DataFrame) -> pd.DataFrame:
    rows = list(dict.fromkeys(df["teacher_layer"]))
    cols = list(dict.fromkeys(df["student_layer"]))
    return df.pivot(index="teacher_layer", columns="student_layer", values="cka").loc[rows, cols]


def _heatmap(mat: pd.DataFrame, visible: bool = True, name: str = "CKA") -> go.Heatmap:
    z = mat.to_numpy(dtype=float)
    return go.Heatmap(z=z, x=list(mat.columns), y=list(mat.index), zmin=0.0, zmax=1.0, colorscale="Viridis",
                      text=np.round(z, 2), texttemplate="%{text}", visible=visible, name=name,
                      colorbar=dict(title="CKA"),
                      hovertemplate="teacher %{y}<br>student %{x}<br>CKA %{z:.3f}<extra></extra>")


def cka_heatmap(df: pd.DataFrame, title: str = "Linear CKA: teacher layers vs student layers") -> go.Figure:
    """Heatmap of ``layer_cka(...)``: teacher layers on the y axis (first at the top), student layers on x."""
    _need(df, _CKA_COLUMNS, "layer_cka()")
    fig = go.Figure(_heatmap(_matrix(df)))
    fig.update_layout(title=title, xaxis_title="student layer", yaxis_title="teacher layer", height=420)
    fig.update_yaxes(autorange="reversed")
    return fig


def cka_over_training_figure(frames: Union[Sequence[pd.DataFrame], pd.DataFrame],
                             title: str = "Linear CKA over training") -> go.Figure:
    """One CKA heatmap per recorded step (``CKATracker.frames``, or their concatenation with a ``step`` column),
    with a slider over the steps; the last step is shown first."""
    df = pd.concat(list(frames), ignore_index=True) if not isinstance(frames, pd.DataFrame) else frames
    _need(df, _CKA_COLUMNS | {"step"}, "CKATracker.frames")
    steps = list(dict.fromkeys(df["step"].astype(int)))
    if not steps:
        raise LabError("no CKA records to draw; allowed: the frames of a CKATracker that has run")
    fig = go.Figure([_heatmap(_matrix(df[df.step == s]), visible=(i == len(steps) - 1), name=f"step {s}")
                     for i, s in enumerate(steps)])
    slider_steps = [dict(method="update", label=str(s),
                         args=[{"visible": [j == i for j in range(len(steps))]}, {"title": f"{title} (step {s})"}])
                    for i, s in enumerate(steps)]
    fig.update_layout(title=f"{title} (step {steps[-1]})", xaxis_title="student layer", yaxis_title="teacher layer",
                      height=470, sliders=[dict(active=len(steps) - 1, currentvalue=dict(prefix="step "),
                                                pad=dict(t=40), steps=slider_steps)])
    fig.update_yaxes(autorange="reversed")
    return fig


def embedding_figure(df: pd.DataFrame, title: str = "Teacher and student features (2D)") -> go.Figure:
    """Side-by-side scatter of ``teacher_student_embeddings(...)``: teacher left, student right, one colour per
    label (one shared legend entry per label)."""
    _need(df, {"model", "x", "y", "label"}, "teacher_student_embeddings()")
    models = list(dict.fromkeys(df["model"]))
    layer = (lambda m: f" · {df[df.model == m]['layer'].iloc[0]}") if "layer" in df.columns else (lambda m: "")
    fig = make_subplots(rows=1, cols=len(models), subplot_titles=[f"{m}{layer(m)}" for m in models])
    labels = sorted(df["label"].unique())
    for c, m in enumerate(models, start=1):
        sub = df[df.model == m]
        for i, lab in enumerate(labels):
            pts = sub[sub.label == lab]
            fig.add_trace(go.Scattergl(x=pts.x, y=pts.y, mode="markers", name=str(lab), legendgroup=str(lab),
                                       showlegend=(c == 1), marker=dict(size=5, color=PALETTE[i % len(PALETTE)]),
                                       hovertemplate=f"{m}<br>label {lab}<extra></extra>"), row=1, col=c)
    fig.update_layout(title=title, legend_title_text="label", height=450)
    return fig


def run_comparison_figure(df: pd.DataFrame, title: str = "KD runs compared") -> go.Figure:
    """Either the test metrics over training of each run (``history_table(...)``: columns run, it, metrics), one
    panel per metric; or the best/last bars of ``compare_runs(...)`` (columns best_<metric>, last_<metric>)."""
    if not isinstance(df, pd.DataFrame) or df.empty:
        raise LabError("run_comparison_figure needs a non-empty DataFrame from history_table() or compare_runs()")
    if {"run", "it"} <= set(df.columns):
        metrics = [k for k in _METRIC_TITLES if k in df.columns and df[k].notna().any()]
        fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[_METRIC_TITLES[k] for k in metrics])
        for i, run in enumerate(dict.fromkeys(df["run"])):
            sub = df[df.run == run].sort_values("it")
            for c, k in enumerate(metrics, start=1):
                fig.add_trace(go.Scatter(x=sub["it"], y=sub[k], mode="lines+markers", name=str(run),
                                         legendgroup=str(run), showlegend=(c == 1),
                                         line=dict(color=PALETTE[i % len(PALETTE)])), row=1, col=c)
        fig.update_xaxes(title_text="step")
        fig.update_layout(title=title, height=380)
        return fig
    metrics = [k for k in _METRIC_TITLES if f"last_{k}" in df.columns and df[f"last_{k}"].notna().any()]
    if not metrics:
        raise LabError("table has neither run/it columns nor best_/last_ metric columns; allowed: the output of "
                       "history_table() or compare_runs()")
    runs = [str(r) for r in df.index]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[_METRIC_TITLES[k] for k in metrics])
    for j, which in enumerate(("best", "last")):
        for c, k in enumerate(metrics, start=1):
            fig.add_trace(go.Bar(x=runs, y=df[f"{which}_{k}"], name=which, legendgroup=which, showlegend=(c == 1),
                                 marker_color=PALETTE[j]), row=1, col=c)
    fig.update_layout(title=title, barmode="group", height=380)
    return fig


__all__ = ["cka_heatmap", "cka_over_training_figure", "embedding_figure", "run_comparison_figure"]
