"""Figures for image probes (drawn from probe data only): sample grids, the diffusion-target (x0)
view and the guidance-weight sweep.

A grid is drawn as ONE image per panel: images in [-1, 1] mapped to [0, 255] uint8, tiled with
1-pixel gaps, shown by ``px.imshow(..., binary_string=True)`` (a PNG ``go.Image``, drawn with
nearest-neighbour scaling, so 8x8 digits stay crisp and the figure stays small). Row and column
titles are the axis tick labels.
"""
from __future__ import annotations

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.errors import LabError

GAP = 255  # the gap between tiles (and empty cells): white


def to_uint8(images) -> np.ndarray:
    """[-1, 1] -> [0, 255] uint8 (clipped); NaN (an empty cell) -> the gap colour."""
    a = np.asarray(images, dtype=np.float32)
    out = np.clip(np.round((a + 1.0) * 127.5), 0, 255)
    return np.where(np.isnan(a), GAP, out).astype(np.uint8)


def tile(images, gap: int = 1) -> np.ndarray:
    """(R, n, C, H, W) in [-1, 1] -> one uint8 picture (R (H + gap) - gap, n (W + gap) - gap), or (..., 3)
    for RGB, with ``gap``-pixel white gaps between the cells."""
    a = to_uint8(images)
    if a.ndim != 5:
        raise LabError(f"images must be (rows, cols, C, H, W), got shape {a.shape}")
    r, n, c, h, w = a.shape
    a = a.transpose(0, 1, 3, 4, 2)  # (R, n, H, W, C)
    out = np.full((r * (h + gap) - gap, n * (w + gap) - gap, c), GAP, np.uint8)
    for i in range(r):
        for j in range(n):
            out[i * (h + gap): i * (h + gap) + h, j * (w + gap): j * (w + gap) + w] = a[i, j]
    return out[..., 0] if c == 1 else out


def _image_trace(images, name: str) -> go.Image:
    tr = px.imshow(tile(images), binary_string=True).data[0]
    tr.name, tr.hoverinfo = name, "skip"
    return tr


def _centres(count: int, size: int, gap: int = 1) -> list[float]:
    return [k * (size + gap) + (size - 1) / 2 for k in range(count)]


def _label_axes(fig, images, row_titles, col_titles, row=None, col=None):
    r, n, _, h, w = np.shape(images)
    kw = {} if row is None else {"row": row, "col": col}
    fig.update_yaxes(tickvals=_centres(r, h), ticktext=list(row_titles), autorange="reversed", showgrid=False,
                     zeroline=False, ticks="", scaleanchor=None, **kw)
    fig.update_xaxes(tickvals=_centres(n, w) if col_titles is not None else [], ticktext=list(col_titles or []),
                     side="top", showgrid=False, zeroline=False, ticks="", **kw)


def image_grid_figure(images, row_titles, col_titles=None, title: str | None = None, pixel: int = 6) -> go.Figure:
    """One tiled image of ``images`` (R, n, C, H, W) in [-1, 1]; ``row_titles`` (R) and ``col_titles`` (n)
    label the rows and columns; ``pixel`` screen pixels per image pixel."""
    images = np.asarray(images)
    if images.ndim != 5 or len(row_titles) != images.shape[0] or (col_titles is not None and len(col_titles) != images.shape[1]):
        raise LabError(f"images must be (R, n, C, H, W) with R row titles and n (or no) column titles; got shape "
                       f"{images.shape}, {len(row_titles)} row titles, "
                       f"{'no' if col_titles is None else len(col_titles)} column titles")
    fig = go.Figure(_image_trace(images, title or "grid"))
    _label_axes(fig, images, row_titles, col_titles)
    r, n, _, h, w = images.shape
    top = 70 if title else 30
    fig.update_layout(title=title, width=pixel * (n * (w + 1) - 1) + 190, height=pixel * (r * (h + 1) - 1) + top + 20,
                      margin=dict(l=170, r=20, t=top + (20 if col_titles is not None else 0), b=10))
    return fig


def _label_titles(labels):
    return None if labels is None else [f"label {int(k)}" for k in labels]


def sample_grid_figure(grid: dict, pixel: int = 6) -> go.Figure:
    """``lab.probes.images.sample_grid`` output: one row per (model, NFE), one column per noise sample."""
    rows = [f"{r['model']} @ {r['nfe']} NFE" for r in grid["rows"]]
    return image_grid_figure(grid["images"], rows, _label_titles(grid.get("labels")),
                             title="Same noise and labels: teacher vs few-step students", pixel=pixel)


def guidance_grid_figure(grid: dict, pixel: int = 6) -> go.Figure:
    """``lab.probes.images.guidance_grid`` output: one row per guidance weight w, same noise and labels."""
    names = {0.0: " (unconditional)", 1.0: " (conditional)"}
    rows = [f"w = {w:g}{names.get(float(w), '')}" for w in grid["ws"]]
    title = (f"Guidance sweep v_u + w (v_c - v_u): {grid['kind']}, {grid['steps']} steps, "
             f"{grid['passes']} network passes")
    return image_grid_figure(grid["images"], rows, _label_titles(grid.get("labels")), title=title, pixel=pixel)


def _view_cells(view: dict, max_samples: int):
    """(2 k, S + 1, C, H, W): for each of k samples a row of x_t (then the final sample at t = 0) and a row of
    the x0 predictions (the t = 0 cell empty)."""
    x_t, x0, final = np.asarray(view["x_t"]), np.asarray(view["x0"]), np.asarray(view["final"])
    k = min(max_samples, x_t.shape[1])
    blank = np.full_like(final[:1], np.nan)
    rows = []
    for i in range(k):
        rows.append(np.concatenate([x_t[:, i], final[i:i + 1]]))
        rows.append(np.concatenate([x0[:, i], blank]))
    return np.stack(rows), k


def x0_view_figure(views: dict, max_samples: int = 4, pixel: int = 6) -> go.Figure:
    """The diffusion-target view (``x0_view`` output, or a dict of them from ``x0_views``): one panel per
    model; per sample a row of noisy states x_t (ending with the final sample at t = 0) and a row of the
    model's x0 predictions; one column per sampling step, labelled by its time t."""
    if "x0" in views and not isinstance(views["x0"], dict):
        views = {views.get("model", views.get("kind", "model")): views}
    names = list(views)
    cells = {m: _view_cells(views[m], max_samples) for m in names}
    _, _, _, h, w = cells[names[0]][0].shape
    panel_px = [pixel * (c.shape[0] * (h + 1) - 1) for c, _ in cells.values()]
    gap_px, top, bottom = 80, 80, 40
    plot_h = sum(panel_px) + gap_px * (len(names) - 1)
    titles = [f"{m}: {views[m].get('kind', '')} @ {views[m].get('nfe', len(views[m]['times']))} NFE"
              + (f" ({views[m]['note']})" if views[m].get("note") else "") for m in names]
    fig = make_subplots(rows=len(names), cols=1, subplot_titles=titles, row_heights=panel_px,
                        vertical_spacing=gap_px / plot_h if len(names) > 1 else 0.0)
    for i, m in enumerate(names):
        c, k = cells[m]
        fig.add_trace(_image_trace(c, m), row=i + 1, col=1)
        row_titles = [f"{lab} #{j}" for j in range(k) for lab in ("x_t", "x̂0")]
        col_titles = [f"t={t:.2f}" for t in views[m]["times"]] + ["t=0 (final)"]
        _label_axes(fig, c, row_titles, col_titles, row=i + 1, col=1)
        fig.update_xaxes(side="bottom", tickangle=0, row=i + 1, col=1)
    widest = max(c.shape[1] for c, _ in cells.values())
    fig.update_layout(title="Diffusion targets: the x0 prediction at every sampling step",
                      width=max(520, pixel * (widest * (w + 1) - 1) + 140), height=plot_h + top + bottom,
                      margin=dict(l=80, r=60, t=top, b=bottom), showlegend=False)
    return fig


__all__ = ["to_uint8", "tile", "image_grid_figure", "sample_grid_figure", "guidance_grid_figure", "x0_view_figure"]
