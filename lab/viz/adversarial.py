"""Figures for adversarial probes (``lab.probes.adversarial``). Nothing here computes: it only draws."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.viz import COLORS, square_axes


def decision_field_figure(field: pd.DataFrame, samples: pd.DataFrame | None = None, title: str | None = None,
                          max_points: int = 1000) -> go.Figure:
    """Heatmap of the discriminator's logit (``decision_field``), with real and student samples on top
    (``real_and_student`` output: columns x, y, kind)."""
    xs = np.unique(field["x"].values)
    ys = np.unique(field["y"].values)
    z = field.pivot_table(index="y", columns="x", values="logit").reindex(index=ys, columns=xs).values
    m = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig = go.Figure(go.Heatmap(x=xs, y=ys, z=z, colorscale="RdBu", zmid=0.0, zmin=-m, zmax=m,
                               colorbar=dict(title="logit"), name="discriminator"))
    if samples is not None:
        for kind, color in (("real", "#222222"), ("student", COLORS["student"])):
            sub = samples[samples["kind"] == kind].head(max_points)
            if not sub.empty:
                fig.add_trace(go.Scatter(x=sub["x"], y=sub["y"], mode="markers", name=kind,
                                         marker=dict(color=color, size=3, opacity=0.6)))
    t = field["t"].iloc[0]
    fig.update_layout(title=title or f"{field['method'].iloc[0]}: discriminator logit at t = {t:.2f} (red = fake, blue = real)",
                      height=520, legend=dict(orientation="h"))
    lim = float(max(np.abs(xs).max(), np.abs(ys).max()))
    return square_axes(fig, lim)
