"""Figures for the dataset-distillation probes (``lab.probes.dd``). They only draw."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.errors import LabError
from lab.viz.images import image_grid_figure

PALETTE = {"dc": "#1f77b4", "dm": "#ff7f0e", "mtt": "#2ca02c", "ftd": "#d62728", "random real": "#7f7f7f",
           "full data": "#000000"}


def _need(df, cols: set, what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise LabError(f"expected a DataFrame ({what}), got {type(df).__name__}")
    missing = cols - set(df.columns)
    if missing:
        raise LabError(f"table lacks columns {sorted(missing)}; allowed: the output of {what}")


def synthetic_set_figure(grid, title: str | None = None, pixel: int = 6) -> go.Figure:
    """A distilled set as (classes, ipc, 1, 8, 8) (``lab.probes.dd.class_grid``): one row per class."""
    grid = np.asarray(grid)
    return image_grid_figure(grid, [f"class {c}" for c in range(len(grid))],
                             [f"#{i}" for i in range(grid.shape[1])], title=title, pixel=pixel)


def evolution_figure(frames: dict, image: int = 0, title: str | None = None, pixel: int = 6) -> go.Figure:
    """The synthetic images over the iterations (``lab.probes.dd.image_frames``): one row per recorded
    iteration, one column per class (image number ``image`` of each class)."""
    imgs, its, ipc = np.asarray(frames["images"]), list(frames["its"]), int(frames["ipc"])
    if imgs.ndim != 5 or len(imgs) != len(its):
        raise LabError(f"frames must hold (F, n, C, H, W) images and F iterations; got {imgs.shape}, {len(its)}")
    if not 0 <= image < ipc:
        raise LabError(f"invalid image={image}; allowed: 0..{ipc - 1}")
    sel = imgs[:, image::ipc][:, :10]
    return image_grid_figure(sel, [f"it {i}" for i in its], [f"class {c}" for c in range(sel.shape[1])],
                             title=title, pixel=pixel)


def parameter_paths_figure(df: pd.DataFrame, title: str = "expert and student parameters (PCA)") -> go.Figure:
    """Expert trajectories (thin grey) and student paths (coloured) in the plane of the first two PCs."""
    _need(df, {"path", "kind", "epoch", "pc1", "pc2"}, "lab.probes.dd.parameter_paths")
    fig = go.Figure()
    for name, g in df.groupby("path", sort=False):
        expert = g["kind"].iloc[0] == "expert"
        color = "#9e9e9e" if expert else PALETTE.get(str(name).split()[0], "#9467bd")
        fig.add_trace(go.Scatter(x=g["pc1"], y=g["pc2"], mode="lines+markers", name=str(name),
                                 line=dict(color=color, width=1 if expert else 3),
                                 marker=dict(size=5 if expert else 8), text=[f"epoch {e}" for e in g["epoch"]],
                                 hovertemplate="%{text}<extra>" + str(name) + "</extra>"))
    ex = df.attrs.get("explained")
    fig.update_layout(title=title, xaxis_title=f"PC1{f' ({ex[0]:.0%})' if ex else ''}",
                      yaxis_title=f"PC2{f' ({ex[1]:.0%})' if ex else ''}", height=420)
    return fig


def trajectory_error_figure(df: pd.DataFrame, key: str = "loss_gap") -> go.Figure:
    """The accumulated trajectory error against the expert epoch, mean over experts, per method."""
    _need(df, {"method", "epoch", key}, "lab.probes.dd.trajectory_error_table")
    fig = go.Figure()
    for m, g in df.groupby("method", sort=False):
        s = g.groupby("epoch")[key].agg(["mean", "std"]).reset_index()
        fig.add_trace(go.Scatter(x=s["epoch"], y=s["mean"], mode="lines+markers", name=str(m),
                                 line=dict(color=PALETTE.get(str(m))),
                                 error_y=dict(type="data", array=s["std"].fillna(0), visible=True)))
    label = {"loss_gap": "test loss(student) - test loss(expert)", "rel_dist": "||θ - θ*|| / ||θ* - θ*_0||",
             "dist": "||θ - θ*||"}.get(key, key)
    fig.update_layout(title="accumulated trajectory error", xaxis_title="expert epoch", yaxis_title=label,
                      height=380)
    return fig


def accuracy_vs_ipc_figure(df: pd.DataFrame) -> go.Figure:
    """Test accuracy of fresh nets against images per class (mean +- std over seeds); the full data as a line."""
    _need(df, {"method", "ipc", "acc", "acc_std"}, "lab.probes.dd.accuracy_table")
    fig = go.Figure()
    per = df[df["ipc"].astype(str) != "all"]
    for m, g in per.groupby("method", sort=False):
        g = g.assign(ipc=g["ipc"].astype(int)).sort_values("ipc")
        fig.add_trace(go.Scatter(x=g["ipc"], y=g["acc"], mode="lines+markers", name=str(m),
                                 line=dict(color=PALETTE.get(str(m)), dash="dot" if m == "random real" else None),
                                 error_y=dict(type="data", array=g["acc_std"], visible=True)))
    full = df[df["ipc"].astype(str) == "all"]
    for k, (_, r) in enumerate(full.iterrows()):
        fig.add_hline(y=float(r["acc"]), line_dash="dash" if k == 0 else "dot", line_color="black",
                      annotation_text=f"{r['method']} {float(r['acc']):.3f}",
                      annotation_position="top left" if k == 0 else "bottom left")
    fig.update_layout(title="test accuracy of a fresh net trained only on the set", xaxis_title="images per class",
                      yaxis_title="test accuracy", xaxis_type="log", height=380)
    return fig


__all__ = ["synthetic_set_figure", "evolution_figure", "parameter_paths_figure", "trajectory_error_figure",
           "accuracy_vs_ipc_figure"]
