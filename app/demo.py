"""Gradio demo: one teacher and one distilled student, sampled from the same noise.

    python app/demo.py                 # http://127.0.0.1:7860

Everything is computed by ``lab.probes`` and drawn by ``lab.viz``; this file only wires widgets.
"""
from __future__ import annotations

import math
import sys
from functools import lru_cache
from pathlib import Path

import gradio as gr

sys.path.insert(0, str(Path(__file__).resolve().parent))  # app/ (for common)

import common  # noqa: E402
from lab import probes, viz  # noqa: E402
from lab.data import toy2d  # noqa: E402
from lab.errors import LabError  # noqa: E402

TEACHER_ONLY = "(none: teacher only)"
#: the ranges the callbacks accept (the widgets' ranges, with room for API callers); anything else is a gr.Error
LIMITS = {"teacher_nfe": (1, 200), "student_nfe": (1, 8), "seed": (0, 2**63 - 1), "n": (2, 10_000),
          "digits_teacher_nfe": (1, 200), "label": (0, 9), "digits_n": (1, 64)}


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _whole(value, name: str, key: str | None = None) -> int:
    """A callback's number (Gradio sends floats) as an int within ``LIMITS``, else a one-line gr.Error."""
    lo, hi = LIMITS[key or name]
    v = value
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            v = None
    ok = v is not None and not isinstance(v, bool)
    try:
        ok = ok and math.isfinite(v) and float(v) == int(v) and lo <= int(v) <= hi
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise gr.Error(f"{name} must be a whole number in {lo}..{hi}, got {_short(value)}")
    return int(v)


def _choice(value, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise gr.Error(f"{name} must be a name (text), got {_short(value)}")
    return value


@lru_cache(maxsize=16)
def _teacher(name: str):
    return common.load_teacher(name)


@lru_cache(maxsize=32)
def _student(source: str, ref: str):
    return common.load_student(source, ref)


def student_choices(name: str | None) -> list[str]:
    return [s.label for s in common.students(name)] + [TEACHER_ONLY] if name else [TEACHER_ONLY]


def update_students(name: str):
    choices = student_choices(name)
    return gr.Dropdown(choices=choices, value=choices[0])


def generate(name: str, student: str, teacher_nfe: float, student_nfe: float, seed: float, n: float = 1000):
    """Teacher at ``teacher_nfe`` and the student at ``student_nfe`` from the same noise -> (figure, markdown)."""
    name, student = _choice(name, "distribution"), _choice(student, "student")
    teacher_nfe, student_nfe = _whole(teacher_nfe, "teacher_nfe"), _whole(student_nfe, "student_nfe")
    seed, n = _whole(seed, "seed"), _whole(n, "n")
    if name not in common.distributions():
        raise gr.Error(f"unknown distribution {name!r}; available: {', '.join(common.distributions()) or 'none'}")
    refs = {s.label: s for s in common.students(name)}
    if student not in (TEACHER_ONLY, None, "") and student not in refs:
        raise gr.Error(f"no student {student!r} for {name}; available: {', '.join(refs) or 'none'}")
    studs = {} if student in (TEACHER_ONLY, None, "") else {student: _student(refs[student].source, refs[student].ref)}
    try:
        panels = probes.sample_panels(_teacher(name), studs, toy2d.get(name), n, teacher_nfe, (student_nfe,), seed)
    except LabError as e:
        raise gr.Error(str(e)) from None
    summ = probes.panel_summary(panels)
    lines = [f"**{name}**, seed {seed}, {n} points from the same noise.", "",
             "| model | NFE | distance to data (SWD) | noise floor | wall-clock (ms) |", "|---|---|---|---|---|"]
    lines += [f"| {r.model} | {int(r.nfe)} | {r.swd:.4f} | {r.swd_floor:.4f} | {1000 * r.seconds:.1f} |"
              for r in summ.itertuples()]
    if not studs:
        lines += ["", "No student selected (or none available yet): teacher only."]
    return viz.sample_panels_figure(panels), "\n".join(lines)


DIGITS_CSS = "#digits_grid img { image-rendering: pixelated; }"  # for launch(): 8x8 digits stay crisp scaled up


def digits_student_choices() -> list[str]:
    return common.digits_students() + [TEACHER_ONLY]


@lru_cache(maxsize=16)
def _digits(name: str, stamp: float):  # stamp: model.json mtime, so a rebuilt zoo entry reloads
    return common.load_digits(name)


def digits_generate(student: str, label: float, seed: float, teacher_nfe: float = 50, n: float = 10):
    """Digits teacher at ``teacher_nfe`` and at 1, 2, 4 steps, then the student at the step counts it serves, all
    from the same noise and label -> (tiled uint8 image, markdown naming the rows top to bottom)."""
    from lab.probes.images import sample_grid
    from lab.viz.images import tile

    student = _choice(student, "student")
    label, seed = _whole(label, "label"), _whole(seed, "seed")
    teacher_nfe, n = _whole(teacher_nfe, "teacher_nfe", "digits_teacher_nfe"), _whole(n, "n", "digits_n")
    if not common.digits_teacher_present():
        raise gr.Error(f"no digits teacher in the zoo; build it with {common.DIGITS_BUILD_HINT}")
    present = common.digits_students()
    if student not in (TEACHER_ONLY, None, "") and student not in present:
        raise gr.Error(f"no digits student {student!r}; available: {', '.join(present) or 'none'}")
    studs = {} if student in (TEACHER_ONLY, None, "") else {student: _digits(student, common.digits_stamp(student))}
    try:
        grid = sample_grid(_digits("teacher", common.digits_stamp("teacher")), studs, teacher_nfe=teacher_nfe,
                           student_nfe=common.DIGITS_STUDENT_NFE, labels=[label] * n, n=n, seed=seed)
    except LabError as e:
        raise gr.Error(str(e)) from None
    rows = ", ".join(f"{r['model']} @ {r['nfe']}" for r in grid["rows"])
    text = [f"Label **{label}**, seed {seed}, {n} samples from the same noise. Rows, top to bottom "
            f"(model @ NFE): {rows}."]
    missing = common.digits_missing_message()
    if missing:
        text += ["", missing]
    return tile(grid["images"]), "\n".join(text)


def build_digits_tab() -> None:
    if not common.digits_teacher_present():
        gr.Markdown(f"**No digits teacher in the zoo yet.** Build it with {common.DIGITS_BUILD_HINT}.")
    choices = digits_student_choices()
    gr.Markdown("The class-conditional digits teacher at many steps and at 1, 2, 4 steps, then a distilled student at "
                "the step counts it serves: every row starts from the same noise, every column has the chosen label.")
    with gr.Row():
        student = gr.Dropdown(choices, value=choices[0], label="Student")
        label = gr.Dropdown(list(range(10)), value=3, label="Label")
        seed = gr.Number(0, precision=0, label="Seed")
        teacher_nfe = gr.Slider(8, 50, value=50, step=1, label="Teacher NFE")
    btn = gr.Button("Generate digits", variant="primary")
    image = gr.Image(label="Teacher vs student (same noise)", type="numpy", image_mode="L", format="png",
                     elem_id="digits_grid", height=420)
    text = gr.Markdown()
    btn.click(digits_generate, [student, label, seed, teacher_nfe], [image, text], api_name="digits")


def build_demo() -> gr.Blocks:
    names = common.distributions()
    first = names[0] if names else None
    choices = student_choices(first)
    with gr.Blocks(title="Distillation Lab demo") as demo:
        gr.Markdown("# Distillation Lab\nA teacher at many steps vs a distilled student at a few, "
                    "from the same noise. Distance to data is the sliced Wasserstein distance; the noise floor "
                    "is the distance between two data samples of the same size.")
        with gr.Tab("2D distributions"):
            if not names:
                gr.Markdown("**No teacher in the zoo yet.** Build them with `lab zoo build`.")
            with gr.Row():
                dist = gr.Dropdown(names, value=first, label="Distribution")
                student = gr.Dropdown(choices, value=choices[0], label="Student")
            with gr.Row():
                teacher_nfe = gr.Slider(1, 200, value=common.DEFAULT_TEACHER_NFE, step=1, label="Teacher NFE")
                student_nfe = gr.Slider(1, 8, value=2, step=1, label="Student NFE")
                seed = gr.Number(0, precision=0, label="Seed")
                n = gr.Slider(100, 4000, value=1000, step=100, label="Points")
            btn = gr.Button("Generate", variant="primary")
            plot = gr.Plot(label="Teacher vs student (same noise)")
            text = gr.Markdown()
            dist.change(update_students, dist, student, api_name="students")
            btn.click(generate, [dist, student, teacher_nfe, student_nfe, seed, n], [plot, text], api_name="generate")
        with gr.Tab("Digits"):
            build_digits_tab()
    return demo


if __name__ == "__main__":
    build_demo().launch(server_name="127.0.0.1", css=DIGITS_CSS)
