"""Digits: the class-conditional digits teacher and its distilled students, from the same noise and labels.

Everything shown is computed by ``lab.probes.images`` and drawn by ``lab.viz.images``; the metrics come from
the model cards. This page only picks models and displays. The students are the zoo's and the digits run folders
under the runs root; every setting lives in the URL (``state.UrlState``): a link reopens the same view.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for common), also under AppTest

import common  # noqa: E402
import state  # noqa: E402
import views as show  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.probes import panel_nfes  # noqa: E402
from lab.probes import images as probes  # noqa: E402
from lab.probes.inside import inside_views  # noqa: E402
from lab.probes.quality import quality_curves  # noqa: E402
from lab.viz import images as viz  # noqa: E402
from lab.viz.quality import quality_vs_latency_figure, quality_vs_nfe_figure  # noqa: E402

st.set_page_config(page_title="Digits · Distillation Lab", layout="wide")


@st.cache_resource(show_spinner="loading model…", max_entries=32)
def model(source: str, ref: str, stamp: float):  # stamp: model.json mtime: a rebuilt entry or rewritten run reloads
    return common.load_digits("teacher") if ref == common.DIGITS_TEACHER else common.load_student(source, ref)


TEACHER = ("teacher", "zoo", common.DIGITS_TEACHER)  # (label, source, ref), like the students


def _gen(ref: tuple):
    r = common.StudentRef(*ref)
    return model(r.source, r.ref, common.stamp(r))


@st.cache_data(show_spinner="sampling…", max_entries=32)
def grid(students: tuple, teacher_nfe: int, labels: tuple, seed: int, stamps: tuple):
    return probes.sample_grid(_gen(TEACHER), {s[0]: _gen(s) for s in students}, teacher_nfe=teacher_nfe,
                              student_nfe=common.DIGITS_STUDENT_NFE, labels=list(labels), n=len(labels), seed=seed)


@st.cache_data(show_spinner="tracing the x0 predictions…", max_entries=32)
def views(student: tuple | None, nfe_teacher: int, nfe_student: int, labels: tuple, seed: int, stamps: tuple):
    studs = {student[0]: _gen(student)} if student else {}
    return probes.x0_views(_gen(TEACHER), studs, nfe_teacher=nfe_teacher, nfe_student=nfe_student,
                           labels=list(labels), n=len(labels), seed=seed)


@st.cache_data(show_spinner="sweeping guidance weights…", max_entries=32)
def guidance(ref: tuple, ws: tuple, nfe: int, labels: tuple, seed: int, stamp: float):
    return probes.guidance_grid(_gen(ref), ws=list(ws), labels=list(labels), nfe=nfe, n=len(labels), seed=seed)


#: the quality curves on this page: the teacher up to 16 steps, and this many samples (the digits UNet is slow on a
#: CPU: 500 samples at 50 steps alone take about 10 s)
CURVE_TEACHER_NFES, CURVE_N = (1, 2, 4, 8, 16), 256
#: the quality curves and the inside views describe the models, not this view's noise: a fixed seed, shared by
#: every visitor
PROBE_SEED = 0


@st.cache_data(show_spinner=False, max_entries=8)
def curves(students: tuple, seed: int, stamps: tuple):
    bar = st.progress(0.0, text="measuring FD-digits at each step count…")
    out = quality_curves(_gen(TEACHER), {s[0]: _gen(s) for s in students}, "digits", teacher_nfes=CURVE_TEACHER_NFES,
                         n=CURVE_N, seed=seed,
                         progress=lambda done, total: bar.progress(done / total, text=f"measuring FD-digits: "
                                                                                     f"{done} of {total} models x NFEs"))
    bar.empty()
    return out


@st.cache_data(show_spinner="looking inside the student's method…", max_entries=16)
def inside(ref: tuple, seed: int, stamp: float):
    return inside_views(_gen(ref), seed=seed)


st.title("Digits")
st.caption("A class-conditional UNet teacher on 8x8 digits and its distilled students, all from the same noise "
           "and labels.")
url = state.UrlState("digits")

if not common.digits_teacher_present():
    st.error(f"No digits teacher in the zoo yet (`{common.DIGITS_TEACHER}`). Build it and its students with "
             f"{common.DIGITS_BUILD_HINT}, then reload this page.")
    st.stop()

available = common.digits_student_refs()
by_label = {r.label: r for r in available}
present = common.digits_students()
missing = common.digits_missing_students()

with st.sidebar:
    chosen = url.multiselect("Students", list(by_label), key="digits_students", param="students",
                             default=[r.label for r in available if r.source == "zoo"],
                             help="Digits students in the zoo (shipped in assets/ or cached), then digits run folders "
                                  "under $LAB_RUNS (default ./runs) with a saved model.")
    teacher_nfe = int(url.select_slider("Teacher NFE", [8, 10, 16, 20, 25, 32, 40, 50], key="digits_teacher_nfe",
                                        param="tnfe", default=50))
    seed = url.integer("Seed", key="digits_seed", param="seed", default=0, lo=0, hi=2**31 - 1)
    label_text = url.text("Labels (one sample per label)", key="digits_labels", param="labels",
                          default="0 1 2 3 4 5 6 7 8 9", check=common.digits_labels,
                          allowed="1 to 32 digits 0..9 separated by spaces or commas",
                          help="Digits 0..9 separated by spaces; repeat a digit to see the variety within a class.")
    st.caption("Every setting is in the page's address: copy it to share this view.")

labels = tuple(common.digits_labels(label_text))  # a refused text was replaced by the last valid one above

if missing:
    st.info(common.digits_missing_message(missing))
if available and not chosen:
    st.info("No student selected: showing the teacher only.")

try:
    _gen(TEACHER)
except LabError as e:
    st.error(f"The digits teacher cannot be loaded: {e}")
    st.stop()
refs, broken = common.loadable(chosen, by_label, lambda r: _gen((r.label, r.source, r.ref)))
if broken:
    st.warning(f"Left out, cannot be loaded: {'; '.join(broken)}")
shown = [r[0] for r in refs]
stamps = tuple(common.stamp(common.StudentRef(*r)) for r in (TEACHER, *refs))

# ---------------------------------------------------------------- (1) few-step sample grid
st.subheader("Few-step samples (same noise and labels)")
st.caption(f"The teacher at {teacher_nfe} steps, the same teacher at 1, 2 and 4 steps (what the network gives "
           "without distillation), then each student at the step counts it serves: one row per model and step "
           "count, one column per label, drawn at a fixed size however many students (scroll when it is wider "
           "than the page).")
st.plotly_chart(viz.sample_grid_figure(grid(refs, teacher_nfe, labels, seed, stamps),
                                       pixel=common.digits_pixel(len(labels))),
                key="digits_grid", width="content")

# ---------------------------------------------------------------- (2) diffusion-target view
st.subheader("Diffusion targets: the x0 prediction at every step")
st.caption("At each sampling step: the noisy state x_t and the model's prediction of the clean sample x̂0 there "
           "(the diffusion-target view of Gandikota & Bau, *Distilling Diversity and Control in Diffusion Models*, "
           "2025). The teacher settles the digit's identity and layout in its first steps and only refines it later; "
           "a few-step student has to commit in one to four predictions.")
c1, c2, c3 = st.columns(3)
with c1:
    view_student = url.selectbox("Student", shown or ["(teacher only)"], key="digits_view_student",
                                 param="view", disabled=not shown)
view_ref = next((r for r in refs if r[0] == view_student), None)
with c2:
    view_teacher_nfe = int(url.selectbox("Teacher steps shown", [4, 8, 16], key="digits_view_teacher_nfe",
                                         param="view_tnfe", default=8))
# the step counts the student was trained for (a one-step student is not run at 4 steps without a word)
view_nfes = panel_nfes(_gen(view_ref), (1, 2, 4, 8)) if view_ref else common.DIGITS_STUDENT_NFE
with c3:
    view_nfe = int(url.selectbox("Student NFE", view_nfes, key=f"digits_view_nfe_{view_student}", param="view_nfe",
                                 default=4 if 4 in view_nfes else view_nfes[-1], disabled=not shown,
                                 help="Only the step counts this student was trained for."))
view_labels = labels[:4]
vs = views(view_ref, view_teacher_nfe, view_nfe, view_labels, seed, stamps)
st.plotly_chart(viz.x0_view_figure(vs), key="digits_x0_view")

# ---------------------------------------------------------------- (3) guidance sweep
st.subheader("Guidance-weight sweep")
st.caption("Classifier-free guidance v = v_u + w (v_c − v_u) from the same noise and labels: w = 0 is the "
           "unconditional model, w = 1 the conditional one, larger w trades variety for class fidelity. The teacher "
           "pays two network passes per step; a guidance-distilled student takes w as an input and pays one.")
guided = "guidance" in present
guide_ref = ("guidance", "zoo", common.digits_entry("guidance"))
g1, g2, g3 = st.columns(3)
with g1:
    ws = url.multiselect("Guidance weights w", [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0], key="digits_ws", param="w",
                         default=[0.0, 1.0, 2.0, 4.0])
with g2:
    guide_steps = int(url.selectbox("Teacher steps", [4, 8, 16, 25], key="digits_guide_steps", param="w_tnfe",
                                    default=8))
guide_nfes = panel_nfes(_gen(guide_ref), (1, 2, 4, 8)) if guided else (1, 2, 4, 8)
with g3:
    guide_student_nfe = int(url.selectbox("Guidance student steps", guide_nfes, key="digits_guide_student_nfe",
                                          param="w_nfe", default=guide_nfes[-1], disabled=not guided,
                                          help="Only the step counts the guidance student was trained for."))
if not ws:
    st.info("Pick at least one guidance weight.")
else:
    ws_t = tuple(sorted(ws))
    st.plotly_chart(viz.guidance_grid_figure(guidance(TEACHER, ws_t, guide_steps, labels, seed, stamps[0]),
                                             pixel=common.digits_pixel(len(labels))),
                    key="digits_guidance_teacher", width="content")
    if guided:
        st.plotly_chart(viz.guidance_grid_figure(guidance(guide_ref, ws_t, guide_student_nfe, labels, seed,
                                                          common.stamp(common.StudentRef(*guide_ref))),
                                                 pixel=common.digits_pixel(len(labels))),
                        key="digits_guidance_student", width="content")
    else:
        st.caption(f"No guidance student in the zoo: build `digits/guidance` with {common.DIGITS_BUILD_HINT}.")

# ---------------------------------------------------------------- (4) inside the student's method
st.subheader("Inside the student's method")
if not shown:
    st.info("Choose a student to look inside its method.")
else:
    in_label = url.selectbox("Student", shown, key="digits_inside_student", param="inside")
    in_ref = next(r for r in refs if r[0] == in_label)
    in_stamp = common.stamp(common.StudentRef(*in_ref))
    try:
        in_views = inside(in_ref, PROBE_SEED, in_stamp)
    except LabError as e:
        in_views = []
        st.warning(f"No view inside {in_label}: {e}")
    show.inside_views(in_views, "digits_inside", (in_ref, in_stamp, PROBE_SEED))

# ---------------------------------------------------------------- (5) quality against NFE and latency
st.subheader("Quality against NFE and against latency")
st.caption(f"FD-digits ({CURVE_N} samples, labels 0..9 cycled, the same noise for every model) at each step count "
           "each model serves, against the number of network evaluations and against the measured wall-clock time "
           "(warm median). A distilled student should sit left of and below the teacher's curve.")
measure = url.radio("Measure", ["off", "on"], key="digits_curves", param="curves", horizontal=True,
                    help=f"About half a minute on a busy 2-core laptop the first time (the teacher at up to "
                         f"{CURVE_TEACHER_NFES[-1]} steps); then cached for everyone.")
if measure == "on":
    qc = curves(refs, PROBE_SEED, stamps)
    q1, q2 = st.columns(2)
    q1.plotly_chart(quality_vs_nfe_figure(qc), key="digits_quality_nfe")
    q2.plotly_chart(quality_vs_latency_figure(qc), key="digits_quality_latency")

# ---------------------------------------------------------------- (6) metrics from the model cards
st.subheader("Metrics (from the model cards)")
table = common.digits_metrics_table(["teacher", *(by_label[c] for c in shown)])
if table.empty:
    st.caption("The model cards hold no metrics yet (entries written by `lab zoo build` or "
               "`python bench/digits.py --zoo` carry them).")
st.dataframe(table, hide_index=True, key="digits_metrics", height="content",
             column_config={k: st.column_config.NumberColumn(format="%.3f") for k in common.DIGITS_METRICS})
st.caption("Measured when each model was built, on class-conditional samples (labels 0..9 cycled) against the "
           "test split: FD-digits and KID on the features of a local digits net (lower is better), class accuracy "
           "by a separate classifier, precision/recall, and within-class diversity. The noise floor scores the "
           "train split as if it were samples: values near it are as good as this sample size can tell. A run "
           "folder's card holds no metrics (only its training seconds); the Runs page measures every run the same "
           "way.")
