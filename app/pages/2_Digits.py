"""Digits: the class-conditional digits teacher and its distilled students, from the same noise and labels.

Everything shown is computed by ``lab.probes.images`` and drawn by ``lab.viz.images``; the metrics come from
the model cards. This page only picks models and displays.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for common), also under AppTest

import common  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.probes import images as probes  # noqa: E402
from lab.viz import images as viz  # noqa: E402

st.set_page_config(page_title="Digits · Distillation Lab", layout="wide")


@st.cache_resource(show_spinner="loading model…", max_entries=16)
def model(name: str, stamp: float):  # stamp: model.json mtime, so a rebuilt zoo entry reloads
    return common.load_digits(name)


def _gen(name: str):
    return model(name, common.digits_stamp(name))


@st.cache_data(show_spinner="sampling…", max_entries=32)
def grid(students: tuple, teacher_nfe: int, labels: tuple, seed: int, stamps: tuple):
    return probes.sample_grid(_gen("teacher"), {s: _gen(s) for s in students}, teacher_nfe=teacher_nfe,
                              student_nfe=common.DIGITS_STUDENT_NFE, labels=list(labels), n=len(labels), seed=seed)


@st.cache_data(show_spinner="tracing the x0 predictions…", max_entries=32)
def views(student: str | None, nfe_teacher: int, nfe_student: int, labels: tuple, seed: int, stamps: tuple):
    studs = {student: _gen(student)} if student else {}
    return probes.x0_views(_gen("teacher"), studs, nfe_teacher=nfe_teacher, nfe_student=nfe_student,
                           labels=list(labels), n=len(labels), seed=seed)


@st.cache_data(show_spinner="sweeping guidance weights…", max_entries=32)
def guidance(name: str, ws: tuple, nfe: int, labels: tuple, seed: int, stamp: float):
    return probes.guidance_grid(_gen(name), ws=list(ws), labels=list(labels), nfe=nfe, n=len(labels), seed=seed)


st.title("Digits")
st.caption("A class-conditional UNet teacher on 8x8 digits and its distilled students, all from the same noise "
           "and labels.")

if not common.digits_teacher_present():
    st.error(f"No digits teacher in the zoo yet (`{common.DIGITS_TEACHER}`). Build it and its students with "
             f"{common.DIGITS_BUILD_HINT}, then reload this page.")
    st.stop()

present = common.digits_students()
missing = common.digits_missing_students()

with st.sidebar:
    chosen = st.multiselect("Students", present, default=present, key="digits_students",
                            help="Digits students in the zoo (shipped in assets/ or cached).")
    teacher_nfe = int(st.select_slider("Teacher NFE", options=[8, 10, 16, 20, 25, 32, 40, 50],
                                       value=50, key="digits_teacher_nfe"))
    seed = int(st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="digits_seed"))
    label_text = st.text_input("Labels (one sample per label)", value="0 1 2 3 4 5 6 7 8 9", key="digits_labels",
                               help="Digits 0..9 separated by spaces; repeat a digit to see the variety "
                                    "within a class.")

try:
    labels = tuple(common.digits_labels(label_text))
except LabError as e:
    st.error(str(e))
    st.stop()

if missing:
    st.info(common.digits_missing_message(missing))
if present and not chosen:
    st.info("No student selected: showing the teacher only.")

stamps = tuple(common.digits_stamp(m) for m in ("teacher", *chosen))

# ---------------------------------------------------------------- (1) few-step sample grid
st.subheader("Few-step samples (same noise and labels)")
st.caption(f"The teacher at {teacher_nfe} steps, the same teacher at 1, 2 and 4 steps (what the network gives "
           "without distillation), then each student at the step counts it serves.")
st.plotly_chart(viz.sample_grid_figure(grid(tuple(chosen), teacher_nfe, labels, seed, stamps)), key="digits_grid")

# ---------------------------------------------------------------- (2) diffusion-target view
st.subheader("Diffusion targets: the x0 prediction at every step")
st.caption("At each sampling step: the noisy state x_t and the model's prediction of the clean sample x̂0 there "
           "(the diffusion-target view of Gandikota & Bau, *Distilling Diversity and Control in Diffusion Models*, "
           "2025). The teacher settles the digit's identity and layout in its first steps and only refines it later; "
           "a few-step student has to commit in one to four predictions.")
c1, c2, c3 = st.columns(3)
with c1:
    view_student = st.selectbox("Student", chosen or ["(teacher only)"], key="digits_view_student",
                                disabled=not chosen)
with c2:
    view_teacher_nfe = int(st.selectbox("Teacher steps shown", [4, 8, 16], index=1, key="digits_view_teacher_nfe"))
with c3:
    view_nfe = int(st.selectbox("Student NFE", common.DIGITS_STUDENT_NFE, index=2, key="digits_view_nfe",
                                disabled=not chosen))
view_labels = labels[:4]
vs = views(view_student if chosen else None, view_teacher_nfe, view_nfe, view_labels, seed, stamps)
st.plotly_chart(viz.x0_view_figure(vs), key="digits_x0_view")

# ---------------------------------------------------------------- (3) guidance sweep
st.subheader("Guidance-weight sweep")
st.caption("Classifier-free guidance v = v_u + w (v_c − v_u) from the same noise and labels: w = 0 is the "
           "unconditional model, w = 1 the conditional one, larger w trades variety for class fidelity. The teacher "
           "pays two network passes per step; a guidance-distilled student takes w as an input and pays one.")
g1, g2, g3 = st.columns(3)
with g1:
    ws = st.multiselect("Guidance weights w", [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0], default=[0.0, 1.0, 2.0, 4.0],
                        key="digits_ws")
with g2:
    guide_steps = int(st.selectbox("Teacher steps", [4, 8, 16, 25], index=1, key="digits_guide_steps"))
with g3:
    guide_student_nfe = int(st.selectbox("Guidance student steps", [1, 2, 4, 8], index=2,
                                         key="digits_guide_student_nfe", disabled="guidance" not in present))
if not ws:
    st.info("Pick at least one guidance weight.")
else:
    ws_t = tuple(sorted(ws))
    st.plotly_chart(viz.guidance_grid_figure(guidance("teacher", ws_t, guide_steps, labels, seed,
                                                      common.digits_stamp("teacher"))), key="digits_guidance_teacher")
    if "guidance" in present:
        st.plotly_chart(viz.guidance_grid_figure(guidance("guidance", ws_t, guide_student_nfe, labels, seed,
                                                          common.digits_stamp("guidance"))),
                        key="digits_guidance_student")
    else:
        st.caption(f"No guidance student in the zoo: build `digits/guidance` with {common.DIGITS_BUILD_HINT}.")

# ---------------------------------------------------------------- (4) metrics from the model cards
st.subheader("Metrics (from the model cards)")
table = common.digits_metrics_table(["teacher", *chosen])
if table.empty:
    st.caption("The model cards hold no metrics yet (entries written by `lab zoo build` or "
               "`python bench/digits.py --zoo` carry them).")
st.dataframe(table, hide_index=True, key="digits_metrics", height="content",
             column_config={k: st.column_config.NumberColumn(format="%.3f") for k in common.DIGITS_METRICS})
st.caption("Measured when each model was built, on class-conditional samples (labels 0..9 cycled) against the "
           "test split: FD-digits and KID on the features of a local digits net (lower is better), class accuracy "
           "by a separate classifier, precision/recall, and within-class diversity. The noise floor scores the "
           "train split as if it were samples: values near it are as good as this sample size can tell.")
