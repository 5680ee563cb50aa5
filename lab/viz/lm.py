"""Figures for the language-model probes (``lab.probes.lm``); they only draw the probes' DataFrames.

- ``gkd_figure``: KL to the true language over training per λ (seed mean ± std), and the final KL on true
  sequences and on the student's own samples.
- ``hacking_figure``: proxy and golden distance against the step per regime; ``proxy_golden_figure``: the
  proxy–golden plane; ``loglog_figure``: log proxy vs log step with the early power-law fit.
- ``acceptance_figure``: acceptance rate α, tokens per target call and accepted drafts per round along the query
  stream (frozen vs online drafts) with B's share;
  ``side_by_side_figure``: the target's and the draft's next-token distributions at a position.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.errors import LabError
from lab.viz import PALETTE

__all__ = ["gkd_figure", "hacking_figure", "proxy_golden_figure", "loglog_figure", "acceptance_figure",
           "side_by_side_figure"]

REGIME_COLORS = {"offline": "#d62728", "online_teacher": "#1f77b4", "online_student": "#2ca02c"}


def _need(df, cols, what):
    if not isinstance(df, pd.DataFrame) or not set(cols) <= set(df.columns):
        has = ", ".join(map(str, df.columns)) if isinstance(df, pd.DataFrame) else type(df).__name__
        raise LabError(f"table lacks columns {', '.join(cols)} (has {has}); allowed: the output of {what}")


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def gkd_figure(curves: pd.DataFrame, title: str = "GKD: KL to the true language, on-policy (λ) vs off-policy") \
        -> go.Figure:
    """Left: kl_truth (true test sequences) against the step, seed mean with a ± std band, one line per λ. Right:
    the final KL on true sequences and on the student's own samples per λ (bars: seed mean, error: std)."""
    _need(curves, ("lmbda", "seed", "it", "kl_truth"), "gkd_compare()")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("KL on true sequences over training",
                                                        "final KL (true sequences / own samples)"))
    for i, (lm, d) in enumerate(curves.groupby("lmbda")):
        m = d.groupby("it")["kl_truth"].agg(["mean", "std"]).reset_index().fillna(0)
        c = _color(i)
        fig.add_trace(go.Scatter(x=list(m["it"]) + list(m["it"][::-1]),
                                 y=list(m["mean"] + m["std"]) + list((m["mean"] - m["std"])[::-1]), fill="toself",
                                 line=dict(width=0), fillcolor=c, opacity=0.15, showlegend=False, hoverinfo="skip"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=m["it"], y=m["mean"], mode="lines+markers", name=f"λ = {lm:g}",
                                 line=dict(color=c)), row=1, col=1)
    last = curves.sort_values("it").groupby(["lmbda", "seed"]).tail(1)
    views = [("kl_truth", "true sequences")] + ([("kl_own", "own samples")] if "kl_own" in last.columns else [])
    for j, (col, label) in enumerate(views):
        s = last.groupby("lmbda")[col].agg(["mean", "std"]).reset_index().fillna(0)
        fig.add_trace(go.Bar(x=[f"λ = {v:g}" for v in s["lmbda"]], y=s["mean"], error_y=dict(array=s["std"]),
                             name=label, marker_color=["#7f7f7f", "#ff7f0e"][j]), row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_yaxes(title_text="KL(true || student) per token", row=1, col=1)
    fig.update_layout(title=title, height=420, barmode="group")
    return fig


def hacking_figure(curves: pd.DataFrame, title: str = "Teacher hacking: proxy (to the teacher) and golden (to the "
                                                     "oracle) distance") -> go.Figure:
    """Two panels (proxy, golden) against the step, one line per regime (seed mean ± std), from
    ``hacking_curves(df)``."""
    _need(curves, ("regime", "step", "metric", "mean", "std"), "hacking_curves()")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("proxy: KL(teacher || student)",
                                                        "golden: KL(oracle || student)"))
    for col, metric in ((1, "proxy"), (2, "golden")):
        for r, d in curves[curves["metric"] == metric].groupby("regime", sort=False):
            d = d.sort_values("step").fillna({"std": 0})
            fig.add_trace(go.Scatter(x=d["step"], y=d["mean"], mode="lines", name=r, legendgroup=r,
                                     showlegend=col == 1, error_y=dict(array=d["std"], thickness=0.8),
                                     line=dict(color=REGIME_COLORS.get(r))), row=1, col=col)
        fig.update_xaxes(title_text="step", row=1, col=col)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)  # the late rise of the golden distance is small against its first drop
    fig.update_layout(title=title, height=420)
    return fig


def proxy_golden_figure(plane: pd.DataFrame, title: str = "Proxy–golden plane (lower-left is better)") -> go.Figure:
    """Golden against proxy along training (seed means), one path per regime, from ``proxy_golden(df)``."""
    _need(plane, ("regime", "step", "proxy", "golden"), "proxy_golden()")
    fig = go.Figure()
    for r, d in plane.groupby("regime", sort=False):
        d = d[d["step"] > 0].sort_values("step")
        fig.add_trace(go.Scatter(x=d["proxy"], y=d["golden"], mode="lines+markers", name=r, text=d["step"],
                                 hovertemplate="step %{text}<br>proxy %{x:.4f}<br>golden %{y:.4f}",
                                 line=dict(color=REGIME_COLORS.get(r))))
    fig.update_layout(title=title, xaxis_title="proxy: KL(teacher || student)",
                      yaxis_title="golden: KL(oracle || student)", height=420)
    fig.update_xaxes(type="log")
    return fig


def loglog_figure(fit: pd.DataFrame, title: str = "log proxy vs log step, with the early power-law fit") -> go.Figure:
    """The seed-mean proxy and its fitted power law a * step^b per regime on log-log axes, from
    ``hacking_loglog(df)``."""
    _need(fit, ("regime", "step", "proxy", "fit", "b"), "hacking_loglog()")
    fig = go.Figure()
    for r, d in fit.groupby("regime", sort=False):
        c = REGIME_COLORS.get(r)
        fig.add_trace(go.Scatter(x=d["step"], y=d["proxy"], mode="markers", name=f"{r}", marker=dict(color=c)))
        fig.add_trace(go.Scatter(x=d["step"], y=d["fit"], mode="lines", name=f"{r} fit (b = {d['b'].iloc[0]:.2f})",
                                 line=dict(color=c, dash="dot")))
    fig.update_xaxes(type="log", title_text="step")
    fig.update_yaxes(type="log", title_text="proxy")
    fig.update_layout(title=title, height=420)
    return fig


def acceptance_figure(groups: pd.DataFrame, title: str = "Speculative decoding: acceptance along a shifting stream") \
        -> go.Figure:
    """α (rolling mean when ``alpha_rolling`` is there), tokens per target call and (when there) the mean accepted
    drafts per round against the request index, one line per run (frozen / online per divergence), with B's share
    of the stream on a second axis."""
    _need(groups, ("request", "alpha"), "osd_stream()['groups'] or rolling_acceptance()")
    g = groups if "run" in groups.columns else groups.assign(run="run")
    ycol = "alpha_rolling" if "alpha_rolling" in g.columns else "alpha"
    extra = [c for c in ("tokens_per_call", "accepted_len") if c in g.columns]
    titles = {"tokens_per_call": "tokens per target call", "accepted_len": "accepted drafts per round"}
    fig = make_subplots(rows=1, cols=1 + len(extra),
                        subplot_titles=["acceptance rate α = Σ min(p, q)"] + [titles[c] for c in extra],
                        specs=[[{"secondary_y": True}] + [{}] * len(extra)])
    for i, (run, d) in enumerate(g.groupby("run", sort=False)):
        d = d.groupby("request")[[ycol] + extra].mean().reset_index()
        c = "#7f7f7f" if run == "frozen" else _color(i)
        fig.add_trace(go.Scatter(x=d["request"], y=d[ycol], mode="lines", name=str(run), legendgroup=str(run),
                                 line=dict(color=c, dash="dash" if run == "frozen" else None)), row=1, col=1)
        for j, col in enumerate(extra):
            fig.add_trace(go.Scatter(x=d["request"], y=d[col], mode="lines", name=str(run), legendgroup=str(run),
                                     showlegend=False, line=dict(color=c, dash="dash" if run == "frozen" else None)),
                          row=1, col=2 + j)
            fig.update_xaxes(title_text="request", row=1, col=2 + j)
    if "share_b" in g.columns:
        s = g.groupby("request")["share_b"].mean().reset_index()
        fig.add_trace(go.Scatter(x=s["request"], y=s["share_b"], mode="lines", name="share of B prompts",
                                 line=dict(color="black", width=1, dash="dot")), row=1, col=1, secondary_y=True)
        fig.update_yaxes(title_text="share of B", range=[0, 1.05], row=1, col=1, secondary_y=True)
    fig.update_xaxes(title_text="request", row=1, col=1)
    fig.update_layout(title=title, height=420)
    return fig


def side_by_side_figure(long: pd.DataFrame, title: str = "Next-token distributions: target vs draft") -> go.Figure:
    """Bars of the target's and the draft's next-token probabilities per token, one panel per moment (before /
    after the stream), titled with α = Σ min(p, q), from ``next_token_side_by_side()``."""
    _need(long, ("when", "token", "model", "prob"), "next_token_side_by_side()")
    whens = list(dict.fromkeys(long["when"]))
    names = [f"{w} (α = {long[long['when'] == w]['alpha'].iloc[0]:.3f})" if "alpha" in long.columns else str(w)
             for w in whens]
    fig = make_subplots(rows=1, cols=len(whens), subplot_titles=names, shared_yaxes=True)
    for j, w in enumerate(whens):
        for model, color in (("target", "#1f77b4"), ("draft", "#d62728")):
            d = long[(long["when"] == w) & (long["model"] == model)]
            fig.add_trace(go.Bar(x=d["token"], y=d["prob"], name=model, marker_color=color, legendgroup=model,
                                 showlegend=j == 0), row=1, col=j + 1)
        fig.update_xaxes(title_text="token", row=1, col=j + 1)
    fig.update_yaxes(title_text="probability", row=1, col=1)
    fig.update_layout(title=title, height=380, barmode="group")
    return fig
