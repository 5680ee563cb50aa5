"""Knowledge distillation: the divergence explorer, then any KD method trained live against scratch and plain kd
(digits or the language task), with start / pause / step / reset, the per-example view of where each student and
the teacher disagree, teacher-vs-student CKA, feature embeddings and reliability diagrams.

Everything shown is computed by ``lab.runs.live_kd`` (the session: the three runs in lockstep), ``lab.probes.kd``,
``lab.probes.embeddings`` and ``lab.probes.divergence``, and drawn by ``lab.viz``; this page only picks settings,
keeps the session in ``st.session_state`` (a rerun, a page switch and back, keep it) and displays. Nothing trains
until Start or Step. While playing only the live fragment runs (a loop of frames, several steps per frame); the
per-step views below it are computed for the current students when paused or done. Every setting lives in the URL
(``state.UrlState``): a link reopens the same comparison.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for state), also under AppTest

import state  # noqa: E402
import lab  # noqa: E402
import lab.kd  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.probes import divergence as divprobe  # noqa: E402
from lab.probes import embeddings as emb  # noqa: E402
from lab.probes import kd as probes  # noqa: E402
from lab.runs import live_kd  # noqa: E402
from lab.trainable import default_device  # noqa: E402
from lab.viz import divergence as divviz  # noqa: E402
from lab.viz import kd as viz  # noqa: E402
from lab.viz.calibration import reliability_figure  # noqa: E402

st.set_page_config(page_title="Knowledge distillation · Distillation Lab", layout="wide")

TASKS = ["digits", "language"]
DEFAULT_METHOD = {"digits": "dkd", "language": "taid"}
STEP_OPTIONS = [50, 100, 200, 300, 500, 1000, 2000]
N_TRAIN_OPTIONS = [0, 100, 200, 500]
WIDTHS = {"digits": [16, 32, 64, 128], "language": [8, 16, 32]}   # the student's hidden width / model dim
STEPS_PER_FRAME = [1, 2, 5, 10, 20, 50]
CKA_PROBE = 256
EXAMPLES = 12             # disagreeing examples shown
LOOP_SECONDS = 2.0        # while playing, one fragment run draws frames for about this long (session_state
                          # "kd_loop_seconds" overrides it: the AppTests set 0, one frame per run)
FRAME_SECONDS = 0.4       # at most one frame every this many seconds (a busy 2-core laptop)
METRICS = {"digits": ("acc", "agree", "ece"), "language": ("acc", "agree", "kl_truth")}

ss = st.session_state
ss.setdefault("kd_playing", False)


@st.cache_resource(show_spinner="loading the teacher…")
def teacher_net(task: str):
    return lab.kd.load_teacher(lab.zoo.entry_name("kd", task), device=default_device())


@st.cache_data(show_spinner="fitting students under each divergence…", max_entries=16)
def divergence_sweep(kind: str, left: float, steps: int, restarts: int):
    p = divprobe
    teacher = (p.two_mode_teacher(weights=(left, 1 - left)) if kind == "categorical"
               else p.two_gaussians(weights=(left, 1 - left)))
    return p.explore(kind=kind, teacher=teacher, steps=steps, restarts=restarts, return_fits=True)


def set_playing(on: bool):
    ss.kd_playing = on


def step_k():
    ss.kd_playing = False
    if "kd_session" in ss:
        ss.kd_session.advance(int(ss.kd_k))


def reset():
    ss.kd_playing = False
    if "kd_session" in ss:
        ss.kd_session.reset()


st.title("Knowledge distillation")
st.caption("A big teacher network's outputs train a small student. Which divergence pulls the student to the teacher "
           "decides where it lands; with the teacher's soft labels the student learns from every class's probability, "
           "not only the true label.")
url = state.UrlState("kd")

with st.sidebar:
    st.header("Live comparison")
    task = url.radio("Task", TASKS, key="kd_task", param="task", horizontal=True,
                     help="digits: 8x8 images, a CNN teacher; language: a synthetic hidden-Markov language, a tiny "
                          "transformer teacher (lab.kd.list_tasks()).")
    methods = [m for m in live_kd.methods_for(task) if m != "scratch"]
    method = url.selectbox("KD method", methods, key=f"kd_method_{task}", param="method",
                           default=DEFAULT_METHOD[task],
                           help=f"Every registered KD method that supports the {task} task (lab.kd.list_methods()).")
    st.caption(lab.kd.get(method).mechanism)
    steps = int(url.select_slider("Training steps", STEP_OPTIONS, key="kd_steps", param="steps", default=1000))
    n_train = 0
    if task == "digits":
        n_train = int(url.selectbox("Labelled training digits", N_TRAIN_OPTIONS, key="kd_n_train", param="n_train",
                                    default=200, format_func=lambda n: "all 1,437" if n == 0 else str(n),
                                    help="KD shines when labels are scarce: the teacher's soft labels carry the "
                                         "rest (the kd benchmark: 1000 steps, 200 labelled digits)."))
    _cls = lab.kd.get(method)
    bench_student = _cls.bench_config.get("student") if _cls.bench_task == task else None
    width_label = "Student hidden width" if task == "digits" else "Student model width (dim)"
    width = int(url.selectbox(width_label, WIDTHS[task], key=f"kd_width_{task}", param="width",
                              default=WIDTHS[task][1 if task == "digits" else 0], disabled=bench_student is not None,
                              help="The student's size (every run trains the same student)."))
    seed = url.integer("Seed", key="kd_seed", param="seed", default=0, lo=0, hi=2**31 - 1)
    k = int(url.select_slider("Steps per frame", STEPS_PER_FRAME, key="kd_k", param="k", default=20,
                              help=f"Training steps of each run per frame while playing (about one frame every "
                                   f"{FRAME_SECONDS:g} s), and per click of Step."))
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
                                  format_func=lambda n: f"{n} x {4 if n == 150 else 8}"))
div_df, fits = divergence_sweep(kind, round(left, 2), fit_steps, 4 if fit_steps == 150 else 8)
st.plotly_chart(divviz.explorer_figure(fits), key="kd_divergence")
st.plotly_chart(divviz.landing_figure(div_df), key="kd_divergence_landing")
st.dataframe(div_df, hide_index=True, key="kd_divergence_table")

# ---------------------------------------------------------------- (2) the live session
st.subheader(f"Live: {method} vs scratch and kd" if method != "kd" else "Live: kd vs scratch")
if bench_student is not None:
    student = dict(bench_student)
    student_name = f"{student.get('type')}, the student of {method}'s benchmark"
else:
    base = dict(lab.kd.get_task(task).student_net)
    student = {**base, "hidden": [width]} if task == "digits" else {**base, "dim": width}
    student_name = (f"an MLP [{width}]" if task == "digits" else f"a 1-block transformer of width {width}")
# the method's own settings of its benchmark (dkd's beta, fitnets' hint weight...); the shared setup stays shared
own = {k: v for k, v in _cls.bench_config.items() if k not in live_kd.SHARED} if _cls.bench_task == task else {}
config = {"steps": steps, "n_train": n_train, "student": student, **own}
settings = (task, method, steps, n_train, repr(sorted(student.items())), seed)
if ss.get("kd_key") != settings:
    try:
        sess = live_kd.KDLiveSession(
            method, task, config, seed=seed, teacher=teacher_net(task), device=default_device(),
            callbacks=lambda run: ([probes.CKATracker(every=max(1, steps // 5), n=CKA_PROBE, seed=0)]
                                   if run == method else []))
    except LabError as e:  # a method that cannot train this student on this task
        ss.pop("kd_session", None)
        ss.pop("kd_key", None)
        st.error(f"{method} cannot run here: {e}")
        st.stop()
    ss.kd_session, ss.kd_key, ss.kd_playing, ss.kd_memo = sess, settings, False, {}
sess = ss.kd_session
st.caption(f"The same student ({student_name}) with the same optimiser, steps, batch and seed, trained on {task}"
           f"{'' if task == 'language' else (' with all labels' if n_train == 0 else f' with {n_train} labelled digits')}"
           f": `scratch` sees the labels only, `kd` the teacher's softened outputs (Hinton), `{method}` "
           f"{_cls.mechanism}"
           f"{' (at its benchmark settings: ' + ', '.join(f'{k}={v}' for k, v in own.items()) + ')' if own else ''}. "
           f"Nothing trains until Start or Step.")
b1, b2, b3, b4 = st.columns(4)
b1.button("Start", key="kd_start", icon=":material/play_arrow:", on_click=set_playing, args=(True,),
          disabled=sess.done, width="stretch", help="Train (or go on training) while you watch.")
b2.button("Pause", key="kd_pause", icon=":material/pause:", on_click=set_playing, args=(False,), width="stretch")
b3.button(f"Step ({k})", key="kd_step", icon=":material/skip_next:", on_click=step_k, disabled=sess.done,
          width="stretch", help="Exactly the steps per frame, then pause.")
b4.button("Reset", key="kd_reset", icon=":material/replay:", on_click=reset, width="stretch",
          help="Back to step 0 with the same seed (replaying gives the same numbers).")


@st.fragment(run_every=LOOP_SECONDS if ss.kd_playing else None)
def live_view():
    """While playing, one run of this fragment draws frames (``k`` steps each) for about LOOP_SECONDS, one every
    FRAME_SECONDS at most; the timer then starts the next run. A click (Pause, Step) interrupts it at once."""
    s = ss.kd_session
    text, msg, chart = st.empty(), st.empty(), st.empty()
    t_end, drawn = time.monotonic() + ss.get("kd_loop_seconds", LOOP_SECONDS), 0
    while True:
        t0 = time.monotonic()
        playing = ss.kd_playing and not s.done
        if playing:
            s.advance(int(ss.kd_k))
        fr = s.frame()
        text.text(f"step {fr.it} of {fr.total} · {'playing' if playing else 'paused'}")
        if fr.error:
            msg.error(fr.error)
        elif fr.done:
            msg.success(f"Done: {fr.total} steps. Reset to replay, or change a setting.")
        chart.plotly_chart(viz.live_curves_figure(fr.history, METRICS[task]), key=f"kd_curves_{drawn}",
                           config={"displayModeBar": False})
        drawn += 1
        if not playing or time.monotonic() >= t_end:
            break
        time.sleep(max(0.0, FRAME_SECONDS - (time.monotonic() - t0)))
    if ss.kd_playing and s.done:  # the end of the runs: stop the timer; a full rerun draws the views below
        ss.kd_playing = False
        st.rerun()


live_view()
st.caption("Solid: the chosen method; dashed: the baselines. Agreement: the share of test predictions (digits; "
           "token positions on the language task) where the student's top-1 is the teacher's. Look for the method's "
           "agreement rising above scratch's: scratch never sees the teacher.")

if ss.kd_playing:
    st.info("Pause to see, for the current students, where they disagree with the teacher, CKA, features and "
            "reliability.")
    st.stop()
if sess.iteration == 0:
    st.info("Start or Step to train; the per-example views appear for the students at the current step.")
    st.stop()

memo = ss.setdefault("kd_memo", {})
now = (id(sess.method), sess.iteration)
if memo.get("at") != now:
    memo.clear()
    memo["at"] = now


def cached(name: str, fn):
    """A view's data for the current step (computed once per step and session; the runs are deterministic)."""
    if name not in memo:
        memo[name] = fn()
    return memo[name]


t = sess.teacher
evaluated = all(m.history for m in sess.runs.values())  # the tables of evaluations need one
first_eval = sess.method.eval_interval()
if evaluated:
    table = cached("compare", lambda: probes.compare_runs(sess.runs))
    st.dataframe(table, key="kd_compare",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns
                                if c.startswith(("best_", "last_")) and c != "best_it"})
else:
    st.caption(f"The table of best and last evaluations appears after the first evaluation (step {first_eval}).")
st.caption("best_: the evaluation with the highest test accuracy (lowest kl_truth on the language task; step "
           "best_it); last_: the latest. ECE: expected calibration error (15 bins); agree: top-1 agreement with the "
           "teacher.")

# ---------------------------------------------------------------- (3) disagreements
st.subheader("Where the students and the teacher disagree")
dis = cached("dis", lambda: probes.disagreements(t, sess.students(), sess.task))
st.dataframe(probes.disagreement_summary(dis), key="kd_dis_summary",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("rate", "mean_kl", "acc",
                                                                                      "teacher_acc")})
who = url.selectbox("Student", sess.names, key="kd_dis_student", param="dis_student", default=method)
ex = probes.disagreement_examples(dis, sess.task, who, k=EXAMPLES)
x1, x2 = st.columns([3, 2])
with x1:
    if task == "digits":
        st.plotly_chart(viz.disagreement_grid(ex), key="kd_dis_examples")
        st.caption("The test digits where this student's top-1 differs from the teacher's, largest KL(teacher || "
                   "student) first: T the teacher's prediction, S the student's (confidence), y the true label.")
    else:
        st.plotly_chart(viz.token_disagreement_figure(ex), key="kd_dis_examples")
        st.caption("Token positions where this student's next-token prediction differs from the teacher's, largest "
                   "KL first: the context (letters are tokens, ^ the start), the true next token, both predictions.")
with x2:
    labels = None if task == "digits" else [probes.token_text([i], sess.task.n_classes - 1)
                                            for i in range(sess.task.n_classes)]
    st.plotly_chart(viz.confusion_heatmap(probes.confusion(dis, who), title=f"Teacher vs {who}", labels=labels),
                    key="kd_dis_confusion")
    st.caption("Which teacher predictions the student turns into which: a distilled student's mistakes cluster "
               "where the teacher itself puts probability.")

# ---------------------------------------------------------------- (4) CKA
st.subheader("CKA: teacher layers vs student layers")
st.caption(f"Linear CKA (Kornblith et al. 2019) between each teacher layer and each student layer on {CKA_PROBE} "
           f"test inputs at step {sess.iteration}: 1 means the same representation up to rotation and scale, "
           f"whatever the widths.")
probe_x = probes.probe_batch(sess.task, CKA_PROBE, 0)
for col, name in zip(st.columns(len(sess.names)), sess.names):
    with col:
        cka = cached(f"cka_{name}", lambda name=name: probes.layer_cka(t, sess.runs[name].student, probe_x))
        st.plotly_chart(viz.cka_heatmap(cka, title=f"{name}"), key=f"kd_cka_{name}")
tracker = sess.callbacks[method][0] if sess.callbacks.get(method) else None
if tracker is not None and tracker.frames:
    st.plotly_chart(viz.cka_over_training_figure(tracker.frames, title=f"{method}: CKA over training"),
                    key="kd_cka_training")

# ---------------------------------------------------------------- (5) embeddings
st.subheader("Teacher and student features (PCA)")
if task != "digits":
    st.caption("Shown for digits (each test image has one label to colour it by); the language task's rows are "
               "token positions.")
else:
    e1, e2, e3 = st.columns(3)
    with e3:
        which = url.selectbox("Student", sess.names, key="kd_emb_student", param="emb_student", default=method)
    student_net = sess.runs[which].student
    with e1:
        t_layers = list(t.feature_layers)
        layer_t = url.selectbox("Teacher layer", t_layers, key="kd_emb_teacher_layer", param="emb_teacher",
                                default="pool" if "pool" in t_layers else t_layers[0])
    with e2:
        s_layers = list(student_net.feature_layers)
        layer_s = url.selectbox("Student layer", s_layers, key="kd_emb_student_layer", param="emb_layer",
                                default=s_layers[max(0, len(s_layers) - 2)])
    df_emb = cached(f"emb_{which}_{layer_t}_{layer_s}", lambda: emb.teacher_student_embeddings(
        t, student_net, sess.task.x_test, sess.task.y_test, layer_t, layer_s, method="pca", seed=seed))
    st.plotly_chart(viz.embedding_figure(df_emb, title=f"Test digits: teacher {layer_t} vs {which} student {layer_s}"),
                    key="kd_embeddings")
    st.caption("Each panel: the layer's features of the 360 test digits projected on their first two principal "
               "components; the student's panel rotated onto the teacher's (orthogonal Procrustes).")

# ---------------------------------------------------------------- (6) reliability
st.subheader("Reliability diagrams")
if evaluated:
    st.plotly_chart(reliability_figure(cached("rel", lambda: probes.reliability_tables(sess.runs)),
                                       title="Reliability on the test split"), key="kd_reliability")
else:
    st.caption(f"Drawn from the first evaluation on (step {first_eval}).")
st.caption("Bin accuracy against bin confidence (top-1 probability) on the test split: bars on the diagonal are "
           "calibrated, bars below it over-confident, above it under-confident. Measured here (digits, 3 seeds, 200 "
           "steps, all labels): the kd student's ECE is about 0.08 against scratch's 0.20, at a few points lower "
           "accuracy.")
