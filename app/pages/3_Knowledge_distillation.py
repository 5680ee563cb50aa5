"""Knowledge distillation: the divergence explorer, a KD method vs scratch trained live on digits, teacher-vs-student
CKA, feature embeddings and reliability diagrams.

Everything shown is computed by ``lab.kd``, ``lab.probes.kd``, ``lab.probes.embeddings``, ``lab.probes.divergence``
and drawn by ``lab.viz``; this page only picks settings and displays. Trained runs are kept with
``st.cache_resource`` (same settings, same seed: the same run, trained once per server). Every setting lives in
the URL (``state.UrlState``): a link reopens the same comparison.
"""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for common), also under AppTest

import state  # noqa: E402
import lab  # noqa: E402
import lab.kd  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.probes import divergence as divprobe  # noqa: E402
from lab.probes import embeddings as emb  # noqa: E402
from lab.probes import kd as probes  # noqa: E402
from lab.viz import divergence as divviz  # noqa: E402
from lab.viz import kd as viz  # noqa: E402
from lab.viz.calibration import reliability_figure  # noqa: E402

st.set_page_config(page_title="Knowledge distillation · Distillation Lab", layout="wide")

TASK = "digits"
TEACHER = lab.zoo.entry_name("kd", TASK)
STEP_OPTIONS = [50, 100, 200, 300, 500, 1000]
N_TRAIN_OPTIONS = [0, 100, 200, 500]
CKA_PROBE = 256


@st.cache_resource(show_spinner="loading the teacher…")
def teacher_net():
    return lab.kd.load_teacher(TEACHER)


@st.cache_resource(show_spinner=False, max_entries=16)
def run_slot(method: str, steps: int, n_train: int, seed: int, student: str) -> dict:
    """The shared slot of one run's settings: filled once by :func:`trained` (a lock keeps two sessions from
    training it twice). Training happens outside the cached function so that it can drive a progress bar."""
    return {"lock": threading.Lock(), "run": None}


def trained(method: str, steps: int, n_train: int, seed: int, student: str = "null", progress=None):
    """A trained run (the method, its CKA-over-training frames), trained on first use. Every run gets the
    teacher, so a teacher-free baseline (scratch) also reports its agreement with the teacher and its CKA to it."""
    slot = run_slot(method, steps, n_train, seed, student)
    with slot["lock"]:
        if slot["run"] is None:
            cfg = {"steps": steps, "n_train": n_train, "student": json.loads(student)}
            m = lab.kd.get(method)(teacher_net(), TASK, cfg, seed=seed)
            tracker = probes.CKATracker(every=max(1, steps // 5), n=CKA_PROBE, seed=0)
            for state in lab.train(m, callbacks=[tracker]):
                if progress is not None and (state.it % 10 == 0 or state.it == state.total):
                    progress(state.it / state.total)
            slot["run"] = (m, tracker.frames)
    return slot["run"]


@st.cache_data(show_spinner="fitting students under each divergence…", max_entries=16)
def divergence_sweep(kind: str, left: float, steps: int, restarts: int):
    p = divprobe
    teacher = (p.two_mode_teacher(weights=(left, 1 - left)) if kind == "categorical"
               else p.two_gaussians(weights=(left, 1 - left)))
    return p.explore(kind=kind, teacher=teacher, steps=steps, restarts=restarts, return_fits=True)


st.title("Knowledge distillation")
st.caption("A big teacher network's outputs train a small student. Which divergence pulls the student to the teacher "
           "decides where it lands; with the teacher's soft labels the student learns from every class's probability, "
           "not only the true label.")
url = state.UrlState("kd")

methods = [m for m in lab.kd.list_methods() if m != "scratch" and "classify" in lab.kd.get(m).kinds]
with st.sidebar:
    st.header("Run comparison")
    method = url.selectbox("KD method", methods, key="kd_method", param="method",
                           default="kd" if "kd" in methods else methods[0],
                           help="Every registered KD method for classifiers (lab.kd.list_methods()).")
    steps = int(url.select_slider("Training steps", STEP_OPTIONS, key="kd_steps", param="steps", default=200))
    n_train = int(url.selectbox("Labelled training digits", N_TRAIN_OPTIONS, key="kd_n_train", param="n_train",
                                format_func=lambda n: "all 1,437" if n == 0 else str(n),
                                help="KD shines when labels are scarce: the teacher's soft labels carry the rest. "
                                     "The kd benchmark (1000 steps, 200 labelled digits) is where kd beats scratch on "
                                     "accuracy; short runs favour scratch's accuracy and kd's calibration."))
    seed = url.integer("Seed", key="kd_seed", param="seed", default=0, lo=0, hi=2**31 - 1)
    st.caption("Every setting is in the page's address: copy it to share this comparison.")

# ---------------------------------------------------------------- (1) divergence explorer
st.subheader("Divergence explorer")
st.caption("One one-mode student fitted to a two-mode teacher under each divergence (student first, teacher "
           "second): forward KL covers both modes, reverse KL picks one; JSD and the skew KLs sit in between.")
d1, d2, d3 = st.columns(3)
with d1:
    kind = url.radio("Setting", ["categorical", "gaussian"], key="kd_div_kind", param="div", horizontal=True,
                     help="categorical: a distribution over 24 ordered classes; gaussian: a 1D mixture.")
with d2:
    left = url.number("Teacher weight of the left mode", key="kd_div_left", param="div_left", default=0.5, lo=0.1,
                      hi=0.9, step=0.1)
with d3:
    fit_steps = int(url.selectbox("Fit steps (x restarts)", [150, 400, 800], key="kd_div_steps", param="div_steps",
                                  format_func=lambda k: f"{k} x {4 if k == 150 else 8}"))
div_df, fits = divergence_sweep(kind, round(left, 2), fit_steps, 4 if fit_steps == 150 else 8)
st.plotly_chart(divviz.explorer_figure(fits), key="kd_divergence")
st.plotly_chart(divviz.landing_figure(div_df), key="kd_divergence_landing")
st.dataframe(div_df, hide_index=True, key="kd_divergence_table")

# ---------------------------------------------------------------- (2) run comparison
st.subheader(f"Run comparison: {method} vs scratch")
# a method whose benchmark names its own student (attention transfer needs a CNN one): both runs use that student
_cls = lab.kd.get(method)
student_spec = _cls.bench_config.get("student") if _cls.bench_task == TASK else None
student_json = json.dumps(student_spec, sort_keys=True)
student_name = ("the task's default MLP [32]" if student_spec is None else
                f"{student_spec.get('type')} {student_spec.get('channels') or student_spec.get('hidden') or ''}, "
                f"the student of {method}'s benchmark")
st.caption(f"The same student ({student_name}) with the same optimiser, steps, batch and seed, trained on {TASK} "
           f"{'with all labels' if n_train == 0 else f'with {n_train} labelled digits'}: `scratch` sees the labels "
           f"only, `{method}` also the CNN teacher ({lab.kd.get(method).mechanism}).")
try:
    teacher_net()
except LabError as e:
    st.error(f"No KD teacher for {TASK} ({TEACHER}): {e}")
    st.stop()
bar = st.progress(0.0, text=f"training scratch and {method} ({steps} steps each)…")
runs, frames = {}, {}
try:
    for i, name in enumerate(("scratch", method)):
        runs[name], frames[name] = trained(name, steps, n_train, seed, student_json,
                                           progress=lambda f, i=i, name=name: bar.progress(
                                               (i + f) / 2, text=f"training {name}: {f:.0%}"))
except (LabError, RuntimeError, ValueError) as e:  # a method that cannot train this student on this task
    bar.empty()
    st.error(f"{method} cannot run here: {e}")
    st.stop()
bar.empty()

st.plotly_chart(viz.run_comparison_figure(probes.history_table(runs), title="Test metrics during training"),
                key="kd_history")
table = probes.compare_runs(runs)
st.dataframe(table, key="kd_compare",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns
                            if c.startswith(("best_", "last_")) and c != "best_it"})
st.caption("best_: the evaluation with the highest test accuracy (step best_it); last_: the final one. ECE: expected "
           "calibration error (15 bins); agree: top-1 agreement with the teacher.")

# ---------------------------------------------------------------- (3) CKA
st.subheader("CKA: teacher layers vs student layers")
st.caption(f"Linear CKA (Kornblith et al. 2019) between each CNN-teacher layer and each student layer on "
           f"{CKA_PROBE} test digits: 1 means the same representation up to rotation and scale, whatever the widths.")
c1, c2 = st.columns(2)
for col, name in zip((c1, c2), ("scratch", method)):
    with col:
        final = frames[name][-1].drop(columns="step")
        st.plotly_chart(viz.cka_heatmap(final, title=f"{name} student after {steps} steps"), key=f"kd_cka_{name}")
st.plotly_chart(viz.cka_over_training_figure(frames[method], title=f"{method}: CKA over training"),
                key="kd_cka_training")

# ---------------------------------------------------------------- (4) embeddings
st.subheader("Teacher and student features (PCA)")
teacher = teacher_net()
student_net = runs[method].student
e1, e2, e3 = st.columns(3)
with e1:
    t_layers = list(teacher.feature_layers)
    layer_t = url.selectbox("Teacher layer", t_layers, key="kd_emb_teacher_layer", param="emb_teacher",
                            default="pool" if "pool" in t_layers else t_layers[0])
with e2:
    s_layers = list(student_net.feature_layers)
    layer_s = url.selectbox("Student layer", s_layers, key="kd_emb_student_layer", param="emb_layer",
                            default=s_layers[max(0, len(s_layers) - 2)])
with e3:
    which = url.selectbox("Student", ["scratch", method], key="kd_emb_student", param="emb_student",
                          default=method)
task = runs[method].task
df_emb = emb.teacher_student_embeddings(teacher, runs[which].student, task.x_test, task.y_test, layer_t, layer_s,
                                        method="pca", seed=seed)
st.plotly_chart(viz.embedding_figure(df_emb, title=f"Test digits: teacher {layer_t} vs {which} student {layer_s}"),
                key="kd_embeddings")
st.caption("Each panel: the layer's features of the 360 test digits projected on their first two principal "
           "components; the student's panel rotated onto the teacher's (orthogonal Procrustes).")

# ---------------------------------------------------------------- (5) reliability
st.subheader("Reliability diagrams")
st.plotly_chart(reliability_figure(probes.reliability_tables(runs), title="Reliability on the test split"),
                key="kd_reliability")
st.caption("Bin accuracy against bin confidence (top-1 probability) on the test digits: bars on the diagonal are "
           "calibrated, bars below it over-confident, above it under-confident. Measured here (3 seeds, 200 steps): "
           "the kd student's ECE is about 0.08 against scratch's 0.20, at a few points lower accuracy.")
