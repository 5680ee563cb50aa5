"""Figures of the live distillation view (data from ``lab.runs.live.LiveSession.frame`` and
``lab.probes.fields.method_field``). Nothing here computes: it only draws.

Two drawings of the same frame: :func:`live_figure` (plotly: zoom, hover; for a paused view) and
:func:`live_image` (a PNG drawn with Pillow; for playing). A browser redraws a changed plotly chart from scratch
(the Streamlit chart is remounted when its figure changes), which on a slow CPU takes longer than a frame, so a
playing chart would mostly show blank; an image is swapped in one step. Both put the teacher's and the student's
samples side by side on equal-scaled axes with the method's field under the student's samples.

Titles are short and on one line, and legends sit below the plots, so nothing overlaps at 1024x768.
"""
from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.viz import COLORS, PALETTE, square_axes

FIELD_COLORS = {"real - fake score": "#2ca02c", "discriminator": "#444444", "target": "#2ca02c",
                "student jump": "#ff7f0e", "teacher path": COLORS["teacher"], "particle force": "#9467bd",
                "pair target": "#2ca02c"}
FONT = dict(size=12)
#: the diverging colours of a logit (plotly's RdBu ends and middle): negative red, zero white, positive blue
RDBU = ((178, 24, 43), (247, 247, 247), (33, 102, 172))


def _spacing(x: np.ndarray, y: np.ndarray) -> float:
    """The grid spacing of a grid field; for scattered points the typical distance between them."""
    ux = np.unique(np.round(x, 6))
    if len(ux) > 1 and len(ux) ** 2 == len(x):
        return float(np.median(np.diff(ux)))
    span = float(max(np.ptp(x), np.ptp(y), 1e-6))
    return span / max(np.sqrt(len(x)), 1.0)


def field_layers(field: pd.DataFrame) -> dict:
    """What :func:`field_traces` and :func:`live_image` draw from a ``method_field`` frame, in data units:
    ``heat`` (xs, ys, z: a scalar on the grid, or None), ``arrows`` (one dict per kind: name, color, x, y, u, v,
    heads, width, opacity) and ``marks`` (name, color, x, y: where a grid's offset arrows land).

    "direction" arrows, and "offset" arrows from a grid (regression targets), are scaled together so the
    longest is about one grid spacing (full-length arrows from a grid cross each other); other "offset" arrows
    (jumps, pairs) keep their length."""
    out = {"heat": None, "arrows": [], "marks": []}
    disc = field[field["value"].notna()]
    if len(disc):
        xs, ys = np.unique(disc.x.values), np.unique(disc.y.values)
        z = disc.pivot_table(index="y", columns="x", values="value").reindex(index=ys, columns=xs).values
        out["heat"] = (xs, ys, z)
    for i, (kind, sub) in enumerate(field.groupby("kind", sort=False)):
        x, y, u, v = (sub[c].to_numpy(float) for c in ("x", "y", "u", "v"))
        color = FIELD_COLORS.get(kind, PALETTE[i % len(PALETTE)])
        on_grid = len(np.unique(np.round(x, 6))) ** 2 == len(sub)
        offset = sub.units.iloc[0] == "offset"
        if offset and on_grid:
            out["marks"].append({"name": f"{kind} (where it lands)", "color": color, "x": x + u, "y": y + v})
        if not offset or on_grid:
            longest = float(np.nanmax(np.hypot(u, v))) if len(u) else 0.0
            s = 0.9 * _spacing(x, y) / longest if longest > 0 else 0.0
            u, v = u * s, v * s
        paths = kind == "teacher path"
        out["arrows"].append({"name": "discriminator gradient" if kind == "discriminator" else kind, "color": color,
                              "x": x, "y": y, "u": u, "v": v, "heads": not paths, "width": 0.7 if paths else 1.0,
                              "opacity": 0.5 if paths else 0.8})
    return out


def _arrow_lines(x, y, u, v, heads: bool) -> tuple[np.ndarray, np.ndarray]:
    """(n, k, 2) polylines: a shaft and, with ``heads``, two head strokes per arrow."""
    x1, y1 = x + u, y + v
    lines = [np.stack([np.stack([x, y], -1), np.stack([x1, y1], -1)], 1)]
    if heads:
        ang, h = np.arctan2(v, u), 0.3 * np.hypot(u, v)
        for s in (np.pi - 0.45, -(np.pi - 0.45)):
            tip = np.stack([x1 + h * np.cos(ang + s), y1 + h * np.sin(ang + s)], -1)
            lines.append(np.stack([np.stack([x1, y1], -1), tip], 1))
    return np.concatenate(lines, 0)


def _quiver(a: dict) -> go.Scatter:
    """Arrows as one line trace, None-separated segments."""
    seg = _arrow_lines(a["x"], a["y"], a["u"], a["v"], a["heads"])
    gap = np.full((seg.shape[0], 1), np.nan)
    xs = np.concatenate([seg[:, :, 0], gap], 1).ravel()
    ys = np.concatenate([seg[:, :, 1], gap], 1).ravel()
    return go.Scatter(x=xs, y=ys, mode="lines", name=a["name"], line=dict(color=a["color"], width=a["width"]),
                      opacity=a["opacity"], hoverinfo="skip", connectgaps=False)


def field_traces(field: pd.DataFrame) -> list:
    """Plotly traces of a ``method_field`` frame (:func:`field_layers`): a heatmap of a scalar (the
    discriminator's logit), the arrows, the marks where a grid's offset arrows land."""
    layers, out = field_layers(field), []
    if layers["heat"] is not None:
        xs, ys, z = layers["heat"]
        m = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
        out.append(go.Heatmap(x=xs, y=ys, z=z, colorscale="RdBu", zmid=0.0, zmin=-m, zmax=m, showscale=False,
                              opacity=0.55, name="discriminator logit", hoverinfo="skip"))
    for mk in layers["marks"]:
        out.append(go.Scatter(x=mk["x"], y=mk["y"], mode="markers", name=mk["name"], hoverinfo="skip",
                              marker=dict(color=mk["color"], size=4, symbol="x-thin",
                                          line=dict(width=1, color=mk["color"]))))
    out += [_quiver(a) for a in layers["arrows"]]
    return out


def _lim(samples: pd.DataFrame) -> float:
    teacher = samples[samples.model == "teacher"]
    lim = float(max(teacher.x.abs().quantile(0.995), teacher.y.abs().quantile(0.995)) * 1.25)
    return max(lim, 1.0)


def _titles(frame) -> list[str]:
    return [f"teacher · {frame.nfe['teacher']} NFE",
            f"student · step {frame.it}/{frame.total} · {frame.nfe['student']} NFE"]


def live_figure(frame, max_points: int = 1000, lim: float | None = None, height: int = 430) -> go.Figure:
    """Teacher and student samples from the same noise, side by side on equal-scaled axes, with the method's
    field under the student's samples. ``frame``: a ``LiveFrame`` (samples, nfe, field, it, total).

    Two panels laid out by hand (``make_subplots`` costs ten times more)."""
    s = frame.samples
    lim = lim or _lim(s)
    traces = []
    if frame.field is not None and len(frame.field):
        traces += [tr.update(xaxis="x2", yaxis="y2") for tr in field_traces(frame.field)]
    for axes, model in ((("x", "y"), "teacher"), (("x2", "y2"), "student")):
        sub = s[s.model == model].head(max_points)
        traces.append(go.Scatter(x=sub.x, y=sub.y, mode="markers", name=f"{model} samples", xaxis=axes[0],
                                 yaxis=axes[1], marker=dict(color=COLORS[model], size=3.5, opacity=0.7)))
    axis = dict(range=[-lim, lim], zeroline=False)
    fig = go.Figure(traces, layout=dict(
        xaxis=dict(domain=[0.0, 0.47], **axis), yaxis=dict(anchor="x", **axis),
        xaxis2=dict(domain=[0.53, 1.0], **axis), yaxis2=dict(anchor="x2", **axis),
        annotations=[dict(text=t, x=x, y=1.0, xref="paper", yref="paper", xanchor="center", yanchor="bottom",
                          showarrow=False, font=FONT) for t, x in zip(_titles(frame), (0.235, 0.765))],
        height=height, margin=dict(t=36, b=20, l=10, r=10), uirevision="live",
        legend=dict(orientation="h", y=-0.1, yanchor="top", x=0, font=FONT)))
    square_axes(fig)  # equal scales: every y axis on x ...
    fig.layout.yaxis2.scaleanchor = "x2"  # ... and the student's panel on its own x (it zooms on its own)
    return fig


def _rgb(hex_color: str, alpha: float = 1.0) -> tuple:
    h = hex_color.lstrip("#")
    return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4)) + (int(round(255 * alpha)),)


def _rdbu(z: np.ndarray) -> np.ndarray:
    """Logits -> RGB (n, m, 3) uint8 on RdBu, symmetric around 0 (NaN: white)."""
    m = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    t = np.clip(np.nan_to_num(z / (m or 1.0)), -1, 1)[..., None]
    red, mid, blue = (np.array(c, float) for c in RDBU)
    rgb = np.where(t < 0, mid + (red - mid) * -t, mid + (blue - mid) * t)
    return rgb.astype(np.uint8)


def live_image(frame, width: int = 800, height: int = 400, lim: float | None = None, point_radius: float = 2.6,
               font_size: int = 15):
    """The :func:`live_figure` drawn as a Pillow image (RGB): two square panels with a grid at whole numbers,
    titles, the field under the student's samples and a legend under them (wrapped to the width). Cheap to draw
    (about 20 ms) and to show."""
    from PIL import Image, ImageDraw, ImageFont  # inside: Pillow only for the live image (start-up cost)

    s = frame.samples
    lim = lim or _lim(s)
    font = ImageFont.load_default(size=font_size)
    layers = field_layers(frame.field) if frame.field is not None and len(frame.field) else None
    legend = [("teacher samples", COLORS["teacher"]), ("student samples", COLORS["student"])]
    if layers is not None:
        legend += [("discriminator logit (blue: real)", "#2166ac")] if layers["heat"] is not None else []
        legend += [(a["name"], a["color"]) for a in layers["arrows"]]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows, x = [[]], 0.0  # the legend, wrapped to the width
    for name, color in legend:
        w = 14 + probe.textlength(name, font=font) + 18
        if rows[-1] and x + w > width - font_size:
            rows.append([])
            x = 0.0
        rows[-1].append((name, color))
        x += w
    line = font_size + 6
    top, bottom, left, gap = font_size + 12, font_size + 10 + line * len(rows), 2 * font_size, 2 * font_size + 6
    side = int(min((width - 2 * left - gap) / 2, height - top - bottom))
    origins = [(left, top), (2 * left + side + gap, top)]
    grid_color, text_color = (225, 225, 225, 255), (90, 90, 90)

    def to_px(x, y):  # data -> pixels of a panel (equal scales by construction)
        return (np.asarray(x) + lim) / (2 * lim) * side, (lim - np.asarray(y)) / (2 * lim) * side

    ticks = range(int(np.ceil(-lim)), int(np.floor(lim)) + 1)
    panels = []
    for model in ("teacher", "student"):
        panel = Image.new("RGBA", (side, side), (255, 255, 255, 255))  # drawn in its own image: clipped to it
        draw = ImageDraw.Draw(panel)
        for k in ticks:
            px, py = to_px(k, k)
            draw.line([(float(px), 0), (float(px), side)], fill=grid_color)
            draw.line([(0, float(py)), (side, float(py))], fill=grid_color)
        over = Image.new("RGBA", (side, side), (255, 255, 255, 0))
        odraw = ImageDraw.Draw(over)
        if model == "student" and layers is not None:
            if layers["heat"] is not None:
                xs, ys, z = layers["heat"]
                x0, y0 = to_px(xs.min(), ys.max())
                x1, y1 = to_px(xs.max(), ys.min())
                heat = Image.fromarray(_rdbu(z[::-1])).convert("RGBA")  # rows from the top: y descending
                heat = heat.resize((max(1, int(round(x1 - x0))), max(1, int(round(y1 - y0)))), Image.BILINEAR)
                heat.putalpha(140)
                ox, oy = int(round(x0)), int(round(y0))  # the grid may reach past the panel: cropped to it
                cx, cy = max(0, -ox), max(0, -oy)
                panel.alpha_composite(heat.crop((cx, cy, min(heat.width, side - ox), min(heat.height, side - oy))),
                                      (ox + cx, oy + cy))
            for mk in layers["marks"]:
                color = _rgb(mk["color"], 0.8)
                for a, b in zip(*to_px(mk["x"], mk["y"])):
                    odraw.line([(a - 2, b - 2), (a + 2, b + 2)], fill=color)
                    odraw.line([(a - 2, b + 2), (a + 2, b - 2)], fill=color)
            for a in layers["arrows"]:
                seg = _arrow_lines(a["x"], a["y"], a["u"], a["v"], a["heads"])
                px, py = to_px(seg[..., 0], seg[..., 1])
                color = _rgb(a["color"], a["opacity"])
                for (xa, xb), (ya, yb) in zip(px, py):
                    odraw.line([(xa, ya), (xb, yb)], fill=color, width=1)
        sub = s[s.model == model]
        color, r = _rgb(COLORS[model], 0.85), point_radius
        for a, b in zip(*to_px(sub.x.to_numpy(), sub.y.to_numpy())):  # samples on top of the field
            odraw.ellipse([a - r, b - r, a + r, b + r], fill=color)
        panels.append(Image.alpha_composite(panel, over).convert("RGB"))
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for o, panel, title in zip(origins, panels, _titles(frame)):
        img.paste(panel, o)
        draw.rectangle([o[0], o[1], o[0] + side, o[1] + side], outline=(200, 200, 200))
        for k in ticks:
            px, py = to_px(k, k)
            draw.text((o[0] + float(px), o[1] + side + 3), str(k), fill=text_color, font=font, anchor="mt")
            draw.text((o[0] - 4, o[1] + float(py)), str(k), fill=text_color, font=font, anchor="rm")
        draw.text((o[0] + side / 2, o[1] - 6), title, fill=(60, 60, 60), font=font, anchor="mb")
    for r, row in enumerate(rows):  # under the panels
        x, y = left, top + side + font_size + 10 + line * r + line // 2
        for name, color in row:
            draw.rectangle([x, y - 4, x + 10, y + 4], fill=_rgb(color)[:3])
            draw.text((x + 14, y), name, fill=text_color, font=font, anchor="lm")
            x += 14 + int(draw.textlength(name, font=font)) + 18
    return img


def png_data_uri(img, compress_level: int = 1) -> str:
    """A Pillow image as a ``data:image/png;base64,...`` URI (shown as it is: no file for the browser to fetch)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _stride(df: pd.DataFrame, max_points: int) -> pd.DataFrame:
    return df.iloc[:: max(1, len(df) // max_points)] if len(df) > max_points else df


def loss_figure(losses: pd.DataFrame, max_points: int = 800, height: int = 300) -> go.Figure:
    """Every ``loss/...`` column of the losses against the step (log scale when all are positive)."""
    fig = go.Figure()
    cols = [c for c in losses.columns if c.startswith("loss/")]
    d = _stride(losses, max_points)
    for i, c in enumerate(cols):
        fig.add_trace(go.Scatter(x=d["step"], y=d[c], mode="lines", name=c.split("/", 1)[1],
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=1.2)))
    positive = bool(cols) and bool((losses[cols].dropna() > 0).all().all())
    fig.update_layout(title=dict(text="Loss terms", font=FONT), height=height, xaxis_title="step",
                      yaxis_type="log" if positive else "linear", margin=dict(t=36, b=10, l=10, r=10),
                      legend=dict(orientation="h", y=-0.25, yanchor="top", x=0, font=FONT), uirevision="loss")
    return fig


def distance_figure(distance: pd.DataFrame, height: int = 300) -> go.Figure:
    """The student's sliced Wasserstein distance to data over training, with the teacher's (same noise) and the
    noise floor (two data draws of the same size) as reference lines."""
    fig = go.Figure()
    if len(distance):
        x = [float(distance.step.min()), float(max(distance.step.max(), 1))]
        fig.add_trace(go.Scatter(x=distance.step, y=distance.student, mode="lines+markers", name="student",
                                 line=dict(color=COLORS["student"]), marker=dict(size=4)))
        fig.add_trace(go.Scatter(x=x, y=[float(distance.teacher.iloc[-1])] * 2, mode="lines", name="teacher",
                                 line=dict(color=COLORS["teacher"], dash="dash")))
        fig.add_trace(go.Scatter(x=x, y=[float(distance.floor.iloc[-1])] * 2, mode="lines", name="noise floor",
                                 line=dict(color=COLORS["data"], dash="dot")))
    fig.update_layout(title=dict(text="Distance to data (sliced Wasserstein)", font=FONT), height=height,
                      xaxis_title="step", yaxis_type="log", margin=dict(t=36, b=10, l=10, r=10),
                      legend=dict(orientation="h", y=-0.25, yanchor="top", x=0, font=FONT), uirevision="distance")
    return fig


__all__ = ["live_figure", "live_image", "png_data_uri", "loss_figure", "distance_figure", "field_traces",
           "field_layers", "FIELD_COLORS"]


def canvas_figure(grid: np.ndarray, painted, lim: float, height: int = 420) -> go.Figure:
    """The drawing canvas: the grid's cells as faint dots, the painted ones filled. Lasso or box selections on
    it (a page's ``on_select``) are the strokes; ``grid`` is ``lab.runs.live.canvas_grid()``."""
    painted = np.zeros(len(grid), bool) if painted is None else np.isin(np.arange(len(grid)), list(painted))
    fig = go.Figure(go.Scatter(x=grid[:, 0], y=grid[:, 1], mode="markers", hoverinfo="none",
                               marker=dict(size=np.where(painted, 9, 5),
                                           color=np.where(painted, COLORS["student"], "rgba(120,120,120,0.25)")),
                               selected=dict(marker=dict(color=COLORS["student"])), name="canvas"))
    fig.update_layout(height=height, dragmode="lasso", showlegend=False, margin=dict(l=10, r=10, t=30, b=10),
                      title=f"{int(painted.sum())} cells painted: lasso or box over the dots to paint more")
    return square_axes(fig, lim * 1.02)
