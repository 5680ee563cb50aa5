"""Gradio demo: a distilled student beside its teacher, sampled from the same noise, each timed warm.

    python app/demo.py                 # http://127.0.0.1:7860

Pick any zoo student (2D distributions and digits) or a distilled run folder under ``$LAB_RUNS`` (default
``runs``); the student is offered only the NFEs it was trained for (tick "off its grid" to try others: the
result then says so). Wall-clock times are per model, warm: one untimed call, then the median of up to
``REPEATS`` calls. One sampling job runs at a time (``CONCURRENCY``), so no visitor's timing shares the CPU with
another's; the others wait in the queue.

API (``gradio_client``)::

    from gradio_client import Client
    r = Client("http://127.0.0.1:7860/").predict(
        "toy2d/8gaussians/consistency",  # model: a label of the picker (a zoo entry, or "run:<folder>")
        50,      # teacher_nfe: 1..200 (even for a guided model: the teacher pays 2 passes per step)
        2,       # student_nfe: one the model was trained for (None: the smallest), any 1..200 with off_grid
        7,       # seed: a whole number in 0..2**31-1
        "any",   # label: "any" (labels 0, 1, ... cycling) or a class 0..k-1 for class-conditional models
        None,    # w: guidance weight for guided models (None: the model's own), within the trained range
        500,     # n: points 10..4000, or images 1..32
        False,   # off_grid: allow a student NFE it was not trained for
        api_name="/sample")

``r`` is a dict: model, data, teacher, seed, n, label, labels, w, repeats and ``samples``, one entry per model
(teacher first) with model, nfe, native_nfe, off_grid, seconds (warm median), times (each timed call), swd and
swd_floor (2D, over all classes; else None) and ``points`` (n x 2) or ``images`` (n x C x H x W, data range
[-1, 1]). Bad input is a one-line error naming the allowed values. Everything is computed by
``lab.probes.demo`` and drawn by ``lab.viz``; this file only wires widgets.
"""
from __future__ import annotations

import math
import sys
from functools import lru_cache
from pathlib import Path

import gradio as gr

sys.path.insert(0, str(Path(__file__).resolve().parent))  # app/ (for common)

import common  # noqa: E402
from lab import viz  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.probes import demo as probe  # noqa: E402
from lab.viz.images import image_grid_figure  # noqa: E402

SEED_MAX = 2**31 - 1
NFE_MAX = 200
N_LIMITS = {"points": (10, 4000, 1000), "images": (1, 32, 10)}  # (lo, hi, default) samples per model
REPEATS, BUDGET = 5, 1.5  # timed calls per model; stop after three once they took BUDGET seconds
CONCURRENCY = 1           # sampling jobs at a time (honest wall-clock numbers on a shared 2-core laptop)
OFF_GRID_CHOICES = (1, 2, 3, 4, 6, 8, 16, 32, 50)
ANY = "any"

_catalogue: dict[str, probe.DemoModel] = {}  # label -> model; replaced whole (never mutated) by refresh_models


def refresh_models() -> list[str]:
    """Rescan the zoo and the runs root; returns the picker's labels."""
    global _catalogue
    _catalogue = {m.label: m for m in probe.demo_models(common.runs_root())}
    return list(_catalogue)


def _error(message: str) -> gr.Error:
    """A one-line message for the visitor; bad input is not a server fault, so no traceback in the log."""
    return gr.Error(message, print_exception=False)


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _model(label) -> probe.DemoModel:
    if isinstance(label, str) and label not in _catalogue:
        refresh_models()  # a run folder saved since the page loaded
    m = _catalogue.get(label) if isinstance(label, str) else None
    if m is None:
        raise _error(f"unknown model {_short(label)}; available: {', '.join(_catalogue) or 'none (build the zoo)'}")
    return m


@lru_cache(maxsize=8)
def _load(m: probe.DemoModel, stamp: float):  # stamp: model.json mtime, so a rebuilt entry or re-saved run reloads
    teacher, student = m.load()
    return teacher, student, probe.model_options(teacher, student)


def _loaded(m: probe.DemoModel):
    try:
        return _load(m, m.stamp())
    except LabError as e:
        raise _error(str(e)) from None


def _whole(value, name: str, lo: int, hi: int, allowed: str | None = None) -> int:
    """A number as an int within lo..hi (Gradio and JSON send floats; text is parsed), else a one-line gr.Error."""
    v = value
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            v = None
    ok = v is not None and not isinstance(v, bool) and isinstance(v, (int, float))
    try:
        ok = ok and math.isfinite(v) and float(v) == int(v) and lo <= int(v) <= hi
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise _error(f"{name} must be {allowed or f'a whole number in {lo}..{hi}'}, got {_short(value)}")
    return int(v)


def _kind(m: probe.DemoModel) -> str:
    return "points" if m.data.startswith("toy2d:") else "images"


def sample(model: str, teacher_nfe=50, student_nfe=None, seed=0, label=ANY, w=None, n=None, off_grid=False) -> dict:
    """The teacher and the student ``model`` from the same noise, each timed warm -> the samples as a JSON-able
    dict (see the module docstring)."""
    m = _model(model)
    teacher, student, opts = _loaded(m)
    guided_teacher = opts["teacher_guided"]
    teacher_nfe = _whole(teacher_nfe, "teacher_nfe", 1, NFE_MAX, f"an even whole number in 2..{NFE_MAX} (the "
                         f"guided teacher pays 2 passes per step)" if guided_teacher else None)
    if guided_teacher and teacher_nfe % 2:
        raise _error(f"teacher_nfe must be an even whole number in 2..{NFE_MAX} (the guided teacher pays 2 "
                     f"passes per step), got {teacher_nfe}")
    if not isinstance(off_grid, bool):
        raise _error(f"off_grid must be true or false, got {_short(off_grid)}")
    native = opts["native_nfe"]
    if student_nfe is not None:
        allowed = (f"one of {', '.join(map(str, native))} (the NFEs {m.label} was trained for; set off_grid to "
                   f"try others in 1..{NFE_MAX})") if native and not off_grid else None
        student_nfe = _whole(student_nfe, "student_nfe", 1, NFE_MAX, allowed)
        if allowed and student_nfe not in native:
            raise _error(f"student_nfe must be {allowed}, got {student_nfe}")
    seed = _whole(seed, "seed", 0, SEED_MAX)
    k = opts["classes"]
    if label in (None, "", ANY):
        label = None
    else:
        label = _whole(label, "label", 0, max(k - 1, 0), f"'{ANY}' or a class in 0..{k - 1}" if k else
                       f"'{ANY}' ({m.label} takes no class label)")
        if not k:
            raise _error(f"label must be '{ANY}' ({m.label} takes no class label), got {label}")
    if w in (None, ""):
        w = None
    elif not opts["guided"]:
        raise _error(f"w must be empty: {m.label} takes no guidance weight (only guided models do), got {_short(w)}")
    else:
        lo, hi = m.w_range
        ok = isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and lo <= w <= hi
        if not ok:
            raise _error(f"w must be a number in {lo:g}..{hi:g} (the weights {m.label} was trained on), "
                         f"got {_short(w)}")
        w = float(w)
    lo, hi, default = N_LIMITS[_kind(m)]
    n = default if n is None else _whole(n, "n", lo, hi)
    try:
        res = probe.side_by_side(teacher, student, teacher_nfe, student_nfe, n, seed, label, w, REPEATS, off_grid,
                                 data=m.data.split(":", 1)[1] if _kind(m) == "points" else None, budget=BUDGET)
    except LabError as e:
        raise _error(str(e)) from None
    return probe.to_json(res, m.label, m.data, m.teacher)


def _row_title(js: dict, s: dict) -> str:
    name = "teacher" if s["model"] == "teacher" else js["model"].rsplit("/", 1)[-1]
    grid = " (off its grid)" if s["off_grid"] else ""
    return f"{name} @ {s['nfe']} NFE{grid}<br>{1000 * s['seconds']:.1f} ms"


def render(js: dict):
    """The figure and the summary table of a ``sample`` result (drawn by lab.viz)."""
    if not js:
        return None, ""
    student = js["samples"][1]
    if "points" in student:
        fig = viz.sample_panels_figure(probe.points_frame(js))
        fig.for_each_yaxis(lambda ax: ax.update(scaleanchor=ax.anchor, scaleratio=1))  # equal x and y scales
        fig.update_layout(title=f"Same noise: teacher vs {js['model']} (seed {js['seed']})", height=480)
    else:
        labels = js["labels"]
        fig = image_grid_figure(probe.image_rows(js), [_row_title(js, s) for s in js["samples"]],
                                None if labels is None else [f"label {v}" for v in labels],
                                title=f"Same noise and labels: teacher vs {js['model']} (seed {js['seed']})", pixel=8)
    rows = ["| model | NFE | wall-clock, warm median (ms) | timed calls (ms) | distance to data (SWD) | noise floor |",
            "|---|---|---|---|---|---|"]
    for s in js["samples"]:
        name = js["teacher"] if s["model"] == "teacher" else js["model"]
        nfe = f"{s['nfe']} (off its trained grid {', '.join(map(str, s['native_nfe']))})" if s["off_grid"] else s["nfe"]
        swd = "–" if s["swd"] is None else f"{s['swd']:.4f}"
        floor = "–" if s["swd_floor"] is None else f"{s['swd_floor']:.4f}"
        rows.append(f"| {name} | {nfe} | {1000 * s['seconds']:.2f} | "
                    f"{', '.join(f'{1000 * t:.2f}' for t in s['times'])} | {swd} | {floor} |")
    notes = [f"{js['n']} samples per model from the same noise (seed {js['seed']}). Times: one untimed call, then "
             f"the median of the timed calls (until the samples are on the host)."]
    if js["w"] is not None:
        notes.append(f"Guidance weight w = {js['w']:g}: the student takes w as an input (one pass per step); the "
                     f"teacher uses classifier-free guidance at the same w (two passes per step).")
    if js["label"] is not None:
        notes.append(f"Every sample has label {js['label']}; the distance to data needs all classes, so it is not "
                     f"shown.")
    return fig, "\n".join(rows) + "\n\n" + "\n\n".join(notes)


def model_changed(label: str, off_grid: bool):
    """The widgets for ``label``: its NFEs, classes, guidance weight, sample count; and a line about it."""
    m = _model(label)
    _, _, opts = _loaded(m)
    native = opts["native_nfe"]
    nfes = sorted(set(OFF_GRID_CHOICES if off_grid or not native else ()) | set(native))
    k, guided_teacher = opts["classes"], opts["teacher_guided"]
    lo, hi, default = N_LIMITS[_kind(m)]
    grid = (f"trained for NFE {', '.join(map(str, native))}" if native else "no trained grid: any NFE")
    info = (f"**{m.label}** ({opts['kind']}, data {m.data}, {m.source}): {grid}; compared with the teacher "
            f"`{m.teacher}`.")
    if guided_teacher:
        info += " The teacher is sampled with classifier-free guidance (two passes per step: even NFEs)."
    return (gr.Dropdown(choices=nfes, value=min(native) if native else 1),
            gr.Slider(minimum=2 if guided_teacher else 1, maximum=NFE_MAX, step=2 if guided_teacher else 1,
                      value=2 * (common.DEFAULT_TEACHER_NFE // 2) if guided_teacher else common.DEFAULT_TEACHER_NFE),
            gr.Dropdown(choices=[ANY] + [str(i) for i in range(k)], value=ANY, visible=bool(k)),
            gr.Number(value=opts["w"], visible=opts["guided"], minimum=m.w_range[0], maximum=m.w_range[1],
                      label=f"Guidance weight w ({m.w_range[0]:g}..{m.w_range[1]:g})"),
            gr.Slider(minimum=lo, maximum=hi, value=default, step=1,
                      label="Points per model" if _kind(m) == "points" else "Images per model"),
            info)


def build_demo() -> gr.Blocks:
    labels = refresh_models()
    first = labels[0] if labels else None
    with gr.Blocks(title="Distillation Lab demo") as demo:
        gr.Markdown("# Distillation Lab\nA distilled student beside its teacher, from the same noise, with the "
                    "wall-clock time of each (warm: one untimed call, then the median of several). Distance to data "
                    "is the sliced Wasserstein distance; the noise floor is the distance between two data samples "
                    "of the same size.")
        if not labels:
            gr.Markdown("**No model in the zoo yet.** Build them with `lab zoo build`.")
        with gr.Row():
            model = gr.Dropdown(labels, value=first, label="Model (zoo entries, then run folders)", scale=3)
            off_grid = gr.Checkbox(False, label="Allow student NFEs off its trained grid")
        info = gr.Markdown()
        with gr.Row():
            teacher_nfe = gr.Slider(1, NFE_MAX, value=common.DEFAULT_TEACHER_NFE, step=1, label="Teacher NFE")
            student_nfe = gr.Dropdown([1], value=1, label="Student NFE", allow_custom_value=True)
            seed = gr.Number(0, label=f"Seed (0..{SEED_MAX})")
        with gr.Row():
            label = gr.Dropdown([ANY], value=ANY, label="Class", visible=False, allow_custom_value=True)
            w = gr.Number(None, label="Guidance weight w", visible=False)
            n = gr.Slider(N_LIMITS["points"][0], N_LIMITS["points"][1], value=N_LIMITS["points"][2], step=1,
                          label="Points per model")
        btn = gr.Button("Sample", variant="primary")
        plot = gr.Plot(label="Teacher vs student (same noise)")
        table = gr.Markdown()
        with gr.Accordion("The samples as data (what the API /sample returns)", open=False):
            data = gr.JSON(label="samples")
        widgets = [student_nfe, teacher_nfe, label, w, n, info]
        # one queue for everything that loads or samples models (CONCURRENCY jobs at a time); drawing is cheap
        private = dict(api_visibility="private", concurrency_id="models")
        model.change(model_changed, [model, off_grid], widgets, **private)
        off_grid.change(model_changed, [model, off_grid], widgets, **private)
        # raw payloads (preprocess=False): every value reaches sample()'s own checks and their one-line messages
        btn.click(sample, [model, teacher_nfe, student_nfe, seed, label, w, n, off_grid], data, api_name="sample",
                  concurrency_id="models", preprocess=False,
                  api_description="The teacher and a distilled student from the same noise, timed warm; returns the "
                                  "samples as data (see app/demo.py's docstring)").success(
            render, data, [plot, table], api_visibility="private", concurrency_limit=None)

        def page_load(current):  # a run folder saved since the server started joins the picker
            names = refresh_models()
            value = current if current in names else (names[0] if names else None)
            rest = model_changed(value, False) if value else (gr.update(),) * len(widgets)
            return (gr.Dropdown(choices=names, value=value),) + rest
        demo.load(page_load, model, [model] + widgets, **private)
    return demo.queue(default_concurrency_limit=CONCURRENCY, max_size=64)


if __name__ == "__main__":
    build_demo().launch(server_name="127.0.0.1")
