"""The animated trajectory view: particles gliding along the teacher's ODE against the student's jumps, with a
time slider and play/pause (positions from :func:`lab.probes.animation.trajectory_frames`; this module only draws).

What to look for: the teacher's particles (blue) move a little at every frame, the student's (red) stay put and
then jump; a good student lands where the teacher's glide ends. The faint lines underneath are the full paths.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.probes.animation import trajectory_frames
from lab.viz import COLORS, PALETTE, square_axes


def _color(model: str, i: int) -> str:
    return COLORS["teacher"] if model == "teacher" else (COLORS["student"] if i == 0 else PALETTE[i % len(PALETTE)])


def _label(model: str, summary: pd.DataFrame | None) -> str:
    if summary is not None and "model" in summary and (summary.model == model).any():
        r = summary[summary.model == model].iloc[0]
        return f"{model} ({int(r.nfe)} NFE)"
    return str(model)


def trajectory_animation(paths: pd.DataFrame, summary: pd.DataFrame | None = None, frames: int = 25) -> go.Figure:
    """Animate ``lab.probes.trajectories``' paths (and its summary, for the NFE in the legend) over ``frames``
    times from t = 1 (noise) to t = 0 (data): a slider labelled by t, play and pause buttons, equal-scaled axes
    with ranges fixed across frames."""
    pos = trajectory_frames(paths, frames)
    models = list(dict.fromkeys(paths["model"]))
    colors = {m: _color(m, i) for i, m in enumerate(x for x in models if x != "teacher")}
    colors["teacher"] = COLORS["teacher"]
    fig = go.Figure()
    for m in models:  # faint full paths underneath (traces 0 .. M-1, never animated)
        xs, ys = [], []
        for _, p in paths[paths.model == m].sort_values("k").groupby("path", sort=True):
            xs += list(p.x) + [None]
            ys += list(p.y) + [None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines" if m == "teacher" else "lines+markers", opacity=0.25,
                                 line=dict(color=colors[m], width=0.8), marker=dict(size=3), hoverinfo="skip",
                                 showlegend=False, name=f"{m} path"))

    def particles(f: int) -> list[go.Scatter]:
        sub = pos[pos.frame == f]
        return [go.Scatter(x=sub.x[sub.model == m].to_numpy(), y=sub.y[sub.model == m].to_numpy(), mode="markers",
                           name=_label(m, summary), marker=dict(size=10 if m == "teacher" else 7, color=colors[m],
                                                                 symbol="circle" if m == "teacher" else "diamond",
                                                                 line=dict(width=0.5, color="white")))
                for m in models]

    fig.add_traces(particles(0))
    moving = list(range(len(models), 2 * len(models)))
    ts = pos.groupby("frame")["t"].first()
    fig.frames = [go.Frame(data=particles(f), traces=moving, name=str(f)) for f in ts.index]
    anim = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}
    steps = [{"method": "animate", "label": f"{t:.2f}", "args": [[str(f)], anim]} for f, t in ts.items()]
    play = {"frame": {"duration": 200, "redraw": False}, "fromcurrent": True, "transition": {"duration": 0}}
    fig.update_layout(
        title=dict(text="Teacher's ODE vs student's jumps", x=0.02), height=600, margin=dict(t=70, b=40),
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.02, yanchor="bottom"),
        updatemenus=[{"type": "buttons", "direction": "left", "x": 0.0, "y": 0.0, "xanchor": "left", "yanchor": "top",
                      "pad": {"t": 60, "r": 10}, "showactive": False,
                      "buttons": [{"label": "▶", "method": "animate", "args": [None, play]},
                                  {"label": "❚❚", "method": "animate", "args": [[None], anim]}]}],
        sliders=[{"active": 0, "steps": steps, "x": 0.12, "len": 0.88, "y": 0.0, "yanchor": "top",
                  "currentvalue": {"prefix": "t = ", "font": {"size": 13}}, "pad": {"t": 40}}])
    lim = float(np.nanmax(np.abs(paths[["x", "y"]].to_numpy(float)))) * 1.05 or 1.0
    fig.update_xaxes(range=[-lim, lim], autorange=False)
    fig.update_yaxes(range=[-lim, lim], autorange=False)
    return square_axes(fig)


__all__ = ["trajectory_animation"]
