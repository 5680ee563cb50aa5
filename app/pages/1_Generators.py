"""Generators: a teacher and its distilled students, sampled from the same noise.

Everything shown is computed by ``lab.probes`` and drawn by ``lab.viz``; this page only
picks models and displays. Every setting lives in the URL (``state.UrlState``): a link reopens the same view.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for common), also under AppTest

import common  # noqa: E402
import state  # noqa: E402
import views as show  # noqa: E402
from lab import probes, viz  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.probes.inside import inside_views  # noqa: E402
from lab.probes.quality import quality_curves  # noqa: E402
from lab.viz.animation import trajectory_animation  # noqa: E402
from lab.viz.quality import quality_vs_latency_figure, quality_vs_nfe_figure  # noqa: E402

st.set_page_config(page_title="Generators · Distillation Lab", layout="wide")


@st.cache_resource(show_spinner="loading teacher…")
def teacher(name: str):
    return common.load_teacher(name)


@st.cache_resource(show_spinner="loading student…", max_entries=64)
def student(source: str, ref: str, stamp: float):  # stamp: model.json mtime, so a rewritten run reloads
    return common.load_student(source, ref)


def _load(refs):
    return {r.label: student(r.source, r.ref, common.stamp(r)) for r in refs}


@st.cache_data(show_spinner="sampling…", max_entries=32)
def panels(name: str, refs: tuple, n: int, teacher_nfe: int, seed: int):
    studs = _load([common.StudentRef(*r) for r in refs])
    return probes.sample_panels(teacher(name), studs, common.data_source(name), n, teacher_nfe, common.STUDENT_NFE,
                                seed)


@st.cache_data(show_spinner="tracing paths…", max_entries=32)
def paths(name: str, ref: tuple | None, teacher_nfe: int, student_nfe: int, seed: int):
    stud = _load([common.StudentRef(*ref)])[ref[0]] if ref else None
    return probes.trajectories(teacher(name), stud, n=64, teacher_nfe=teacher_nfe, student_nfe=student_nfe, seed=seed)


@st.cache_data(show_spinner="measuring quality at each NFE (same noise, warm timings)…", max_entries=16)
def curves(name: str, refs: tuple, n: int, seed: int, stamps: tuple):
    studs = _load([common.StudentRef(*r) for r in refs])
    return quality_curves(teacher(name), studs, common.data_source(name), n=n, seed=seed)


@st.cache_data(show_spinner="rebuilding the student's method and fitting its own networks against it…",
               max_entries=24)
def inside(source: str, ref: str, stamp: float, seed: int):
    return inside_views(student(source, ref, stamp), seed=seed)


#: the quality curves and the inside views describe the models, not this view's noise: they use a fixed seed, so
#: every visitor shares them (with a seed of its own, each visitor would refit the method's networks)
PROBE_SEED = 0


st.title("Generators")
st.caption("A teacher at many steps and its distilled students at 1, 2 and 4 steps, all starting from the same noise.")
url = state.UrlState("generators")

names = common.distributions() + list(common.custom_datasets())
if not names:
    st.error("No teacher in the zoo yet. Build them with `lab zoo build` (or `make zoo`), then reload this page.")
    st.stop()

with st.sidebar:
    name = url.selectbox("Distribution", names, key="dist")
    st.caption(common.data_description(name))
    available = common.students(name)
    by_label = {s.label: s for s in available}
    chosen = url.multiselect("Students", list(by_label), key=f"students_{name}", param="students",
                             default=list(by_label)[:3],
                             help="Zoo students, then distilled run folders under $LAB_RUNS (default ./runs) for "
                                  "this distribution. Any number: the panels wrap into rows (Panels per row).")
    teacher_nfe = url.integer("Teacher NFE", key="teacher_nfe", param="tnfe", default=common.DEFAULT_TEACHER_NFE,
                              lo=1, hi=500)
    seed = url.integer("Seed", key="seed", default=0, lo=0, hi=2**31 - 1)
    n = int(url.select_slider("Points", [250, 500, 1000, 2000, 4000], key="n", default=1000))
    per_row = int(url.select_slider("Panels per row", [2, 3, 4], key="per_row", param="cols",
                                    default=common.PANELS_PER_ROW,
                                    help="Fewer on a narrow screen or a projector: the panels wrap into more rows."))
    st.caption("Every setting is in the page's address: copy it to share this view.")

if not available:
    st.info(f"No students are available for {name} yet: none in the zoo and no distilled run folder with a "
            f"model. Showing the teacher only. Distil one with "
            f"`lab distill --method consistency --teacher toy2d/{name}/teacher --out runs/{name}-consistency`.")
elif not chosen:
    st.info("No student selected: showing the teacher only.")

try:
    teacher(name)
except LabError as e:
    st.error(f"The {name} teacher cannot be loaded: {e}")
    st.stop()
refs, broken = common.loadable(chosen, by_label, lambda r: student(r.source, r.ref, common.stamp(r)))
if broken:
    st.warning(f"Left out, cannot be loaded: {'; '.join(broken)}")
shown = [r[0] for r in refs]
stamps = tuple(common.stamp(common.StudentRef(*r)) for r in refs)  # a rewritten run folder: new figures too

st.subheader("Teacher vs students (same noise)")
df = panels(name, refs, n, teacher_nfe, seed)
# a fixed panel size however many students: one figure per row of `per_row` panels, on one shared scale, a fixed
# height per row; a short last row keeps the panel width (it fills only its share of the page)
lim = float(max(df.x.abs().quantile(0.99), df.y.abs().quantile(0.99)) * 1.15)
for i, row in enumerate(common.panel_rows(df, per_row)):
    k = len(row.groupby(["model", "nfe"], sort=False))
    box = st.container() if k == per_row else st.columns([k, per_row - k])[0]
    fig = show.figure(("panels", name, refs, stamps, n, teacher_nfe, seed, per_row, i), lambda row=row, i=i: (
        viz.sample_panels_figure(row, lim=lim).update_layout(
            title=None if i else "Same noise: teacher vs students", height=common.PANEL_HEIGHT + (50 if i == 0 else 0),
            margin=dict(l=40, r=20, t=80 + (50 if i == 0 else 0))).update_annotations(font_size=11)))
    box.plotly_chart(fig, key="sample_panels" if i == 0 else f"sample_panels_{i}")
st.dataframe(common.summary_table(df), hide_index=True,
             column_config={"distance to data (SWD)": st.column_config.NumberColumn(format="%.4f"),
                            "noise floor": st.column_config.NumberColumn(format="%.4f"),
                            "wall-clock s": st.column_config.NumberColumn(format="%.3f")})
st.caption("Distance to data is the sliced Wasserstein distance to fresh data; the noise floor is that distance "
           "between two data samples of the same size, so values near it are as good as this n can tell.")

st.subheader("Trajectories")
c1, c2, c3 = st.columns(3)
with c1:
    traj_label = url.selectbox("Student", shown or ["(teacher only)"], key=f"traj_student_{name}",
                               param="traj", disabled=not shown)
traj_ref = next((r for r in refs if r[0] == traj_label), None)
# the NFEs the student was trained for (a one-step student is not run at 4 steps behind the viewer's back)
nfe_options = (probes.panel_nfes(_load([common.StudentRef(*traj_ref)])[traj_ref[0]], (1, 2, 4, 8))
               if traj_ref else common.STUDENT_NFE)
with c2:
    student_nfe = int(url.selectbox("Student NFE", nfe_options, key=f"traj_nfe_{traj_label}", param="traj_nfe",
                                    default=2 if 2 in nfe_options else nfe_options[0], disabled=not shown,
                                    help="Only the step counts this student was trained for."))
with c3:
    animate = url.radio("View", ["animated", "paths"], key="traj_view", param="traj_view", horizontal=True,
                        help="Animated: particles move from noise (t = 1) to data (t = 0); the teacher glides along "
                             "its ODE while the student jumps. Paths: every path at once.") == "animated"
p, summ = paths(name, traj_ref, teacher_nfe, student_nfe, seed)
st.plotly_chart(show.figure(("trajectories", name, traj_ref, stamps, teacher_nfe, student_nfe, seed, animate),
                            lambda: trajectory_animation(p, summ) if animate else viz.trajectories_figure(p, summ)),
                key="trajectories")
st.caption("The same 64 noise points through the teacher's ODE and through the student. Straightness 0 means a "
           "straight path: a student that jumps straight to where the teacher's curved path ends has learnt the "
           "teacher's map, not its route.")
st.dataframe(summ, hide_index=True)

# ---------------------------------------------------------------- quality against NFE and latency
st.subheader("Quality against NFE and against latency")
st.caption("Each model at each step count it serves (the teacher at 1 to 50), from the same noise (seed 0, whatever "
           "the seed above): distance to data "
           "against the number of network evaluations, and against the measured wall-clock time (warm median). A "
           "distilled student should sit left of and below the teacher's curve: as good, for fewer steps.")
qc = curves(name, refs, n, PROBE_SEED, stamps)
q1, q2 = st.columns(2)
q1.plotly_chart(show.figure(("quality_nfe", name, refs, n, PROBE_SEED, stamps), lambda: quality_vs_nfe_figure(qc)),
                key="quality_nfe")
q2.plotly_chart(show.figure(("quality_latency", name, refs, n, PROBE_SEED, stamps), lambda: quality_vs_latency_figure(qc)),
                key="quality_latency")

# ---------------------------------------------------------------- inside the method
st.subheader("Inside the student's method")
if not shown:
    st.info("Choose a student to look inside its method.")
else:
    in_label = url.selectbox("Student", shown, key=f"inside_student_{name}", param="inside",
                             help="The method is rebuilt from the student's recipe around its saved weights; the "
                                  "networks it trains besides the student (a fake score, a discriminator) are fitted "
                                  "against the frozen student for 200 steps.")
    in_ref = next(r for r in refs if r[0] == in_label)
    in_stamp = common.stamp(common.StudentRef(*in_ref))
    try:
        views = inside(in_ref[1], in_ref[2], in_stamp, PROBE_SEED)
    except LabError as e:
        views = []
        st.warning(f"No view inside {in_label}: {e}")
    show.inside_views(views, "inside", (in_ref, in_stamp, PROBE_SEED))
