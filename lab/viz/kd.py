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


_LIVE_TITLES = {**_METRIC_TITLES, "train_loss": "training loss"}


def live_curves_figure(history: pd.DataFrame, metrics: Sequence[str] = ("acc", "agree", "ece"),
                       title: str = "Test metrics while training") -> go.Figure:
    """The live KD curves (``KDLiveSession.frame().history``: run, step, metrics): one panel per metric, one line
    per run (the method first, solid; the baselines dashed), the same colours in every panel."""
    _need(history, {"run", "step"}, "KDLiveSession.frame().history")
    metrics = [k for k in metrics if k in history.columns]
    if not metrics:
        raise LabError(f"none of the metrics are in the table; allowed: {', '.join(_LIVE_TITLES)}")
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[_LIVE_TITLES.get(k, k) for k in metrics],
                        horizontal_spacing=0.07)
    for i, run in enumerate(dict.fromkeys(history["run"])):
        sub = history[history.run == run].sort_values("step")
        for c, k in enumerate(metrics, start=1):
            fig.add_trace(go.Scatter(x=sub["step"], y=sub[k], mode="lines+markers", name=str(run),
                                     legendgroup=str(run), showlegend=(c == 1), marker=dict(size=4),
                                     line=dict(color=PALETTE[i % len(PALETTE)], dash="solid" if i == 0 else "dash")),
                          row=1, col=c)
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=title, height=340, margin=dict(t=70, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


def disagreement_grid(examples: dict, cols: int = 6, title: str | None = None) -> go.Figure:
    """The digits of ``disagreement_examples(...)`` (its "images" and "rows"), largest KL first, each captioned
    with the teacher's and the student's prediction and confidence (and the true label)."""
    if not isinstance(examples, dict) or "rows" not in examples or "images" not in examples:
        raise LabError("expected disagreement_examples() of an image task (with 'rows' and 'images')")
    rows, imgs, who = examples["rows"], np.asarray(examples["images"]), examples.get("student", "student")
    title = title or f"Where {who} and the teacher disagree (largest KL first)"
    if len(rows) == 0:
        fig = go.Figure()
        fig.add_annotation(text=f"{who} agrees with the teacher on every example", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        fig.update_layout(title=title, height=200, xaxis_visible=False, yaxis_visible=False)
        return fig
    cols = max(1, min(int(cols), len(rows)))
    nrows = -(-len(rows) // cols)
    caps = [f"T {r.teacher_pred} ({r.teacher_conf:.2f})<br>S {r.student_pred} ({r.student_conf:.2f}) · y {r.label}"
            for r in rows.itertuples()]
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=caps, horizontal_spacing=0.02,
                        vertical_spacing=0.12 / max(1, nrows - 1) if nrows > 1 else 0.0)
    for i, r in enumerate(rows.itertuples()):
        fig.add_trace(go.Heatmap(z=imgs[i], colorscale="gray_r", showscale=False, zmin=float(imgs.min()),
                                 zmax=float(imgs.max()),
                                 hovertemplate=f"test digit {r.example}<br>KL {r.kl:.3f}<extra></extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_annotations(font_size=11)
    fig.update_layout(title=title, height=150 + 170 * nrows, margin=dict(t=90, l=10, r=10, b=10))
    for i in range(1, len(rows) + 1):  # each image square
        fig.layout[f"yaxis{'' if i == 1 else i}"].scaleanchor = f"x{'' if i == 1 else i}"
    return fig


def token_disagreement_figure(examples: dict, title: str | None = None) -> go.Figure:
    """The language-task rows of ``disagreement_examples(...)`` as a table: context (the last tokens, "^" the
    start), the true next token, the teacher's and the student's predictions with their confidence, the KL."""
    if not isinstance(examples, dict) or "rows" not in examples or "context" not in examples["rows"].columns:
        raise LabError("expected disagreement_examples() of the language task (rows with a 'context')")
    r, who = examples["rows"], examples.get("student", "student")
    head = ["context", "true next", "teacher", f"{who}", "KL(T||S)"]
    cells = [list(r.context), list(r.label_text), [f"{t} ({c:.2f})" for t, c in zip(r.teacher_text, r.teacher_conf)],
             [f"{t} ({c:.2f})" for t, c in zip(r.student_text, r.student_conf)], [f"{v:.3f}" for v in r.kl]]
    fig = go.Figure(go.Table(header=dict(values=head, align="left"),
                             cells=dict(values=cells, align="left", font=dict(family="monospace"))))
    fig.update_layout(title=title or f"Where {who} and the teacher disagree (largest KL first)",
                      height=120 + 24 * max(1, len(r)), margin=dict(t=50, l=10, r=10, b=10))
    return fig


def confusion_heatmap(conf: pd.DataFrame, title: str = "Teacher vs student predictions",
                      labels: Sequence[str] | None = None) -> go.Figure:
    """``confusion(...)``: teacher's prediction (rows) against the student's (columns). The diagonal (agreement) is
    left blank so that the disagreements stand out; the title says how many agreed."""
    if not isinstance(conf, pd.DataFrame) or conf.shape[0] != conf.shape[1]:
        raise LabError("expected a square table from confusion()")
    z = conf.to_numpy(dtype=float)
    diag = np.diag(z).copy()
    off = z.copy()
    np.fill_diagonal(off, np.nan)
    names = list(labels) if labels is not None else [str(c) for c in conf.columns]
    text = np.where(np.isnan(off) | (off == 0), "", np.nan_to_num(off).astype(int).astype(str))
    fig = go.Figure(go.Heatmap(z=off, x=names, y=names, colorscale="Reds", text=text, texttemplate="%{text}",
                               colorbar=dict(title="count"),
                               hovertemplate="teacher %{y}<br>student %{x}<br>%{z} examples<extra></extra>"))
    fig.update_layout(title=f"{title} (off-diagonal; agreed: {int(diag.sum())} of {int(z.sum())})",
                      xaxis_title=f"{conf.columns.name or 'student'} predicts", yaxis_title="teacher predicts",
                      height=420, xaxis=dict(type="category"), yaxis=dict(type="category", autorange="reversed"))
    return fig


__all__ = ["cka_heatmap", "cka_over_training_figure", "embedding_figure", "run_comparison_figure",
           "live_curves_figure", "disagreement_grid", "token_disagreement_figure", "confusion_heatmap"]
