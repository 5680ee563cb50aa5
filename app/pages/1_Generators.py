"""Generators: a teacher and its distilled students, sampled from the same noise.

Everything shown is computed by ``lab.probes`` and drawn by ``lab.viz``; this page only
picks models and displays.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for common), also under AppTest

import common  # noqa: E402
from lab import probes, viz  # noqa: E402
from lab.data import toy2d  # noqa: E402

st.set_page_config(page_title="Generators · Distillation Lab", layout="wide")


@st.cache_resource(show_spinner="loading teacher…")
def teacher(name: str):
    return common.load_teacher(name)


@st.cache_resource(show_spinner="loading student…")
def student(source: str, ref: str, stamp: float):  # stamp: model.json mtime, so a rewritten run reloads
    return common.load_student(source, ref)


def _stamp(ref: common.StudentRef) -> float:
    p = Path(ref.ref) / "model.json"
    return p.stat().st_mtime if ref.source == "run" and p.exists() else 0.0


def _load(refs):
    return {r.label: student(r.source, r.ref, _stamp(r)) for r in refs}


@st.cache_data(show_spinner="sampling…", max_entries=32)
def panels(name: str, refs: tuple, n: int, teacher_nfe: int, seed: int):
    studs = _load([common.StudentRef(*r) for r in refs])
    return probes.sample_panels(teacher(name), studs, toy2d.get(name), n, teacher_nfe, common.STUDENT_NFE, seed)


@st.cache_data(show_spinner="tracing paths…", max_entries=32)
def paths(name: str, ref: tuple | None, teacher_nfe: int, student_nfe: int, seed: int):
    stud = _load([common.StudentRef(*ref)])[ref[0]] if ref else None
    return probes.trajectories(teacher(name), stud, n=64, teacher_nfe=teacher_nfe, student_nfe=student_nfe, seed=seed)


st.title("Generators")
st.caption("A teacher at many steps and its distilled students at 1, 2 and 4 steps, all starting from the same noise.")

names = common.distributions()
if not names:
    st.error("No teacher in the zoo yet. Build them with `lab zoo build` (or `make zoo`), then reload this page.")
    st.stop()

with st.sidebar:
    name = st.selectbox("Distribution", names, key="dist")
    st.caption(toy2d.get(name).description)
    available = common.students(name)
    by_label = {s.label: s for s in available}
    chosen = st.multiselect("Students", list(by_label), default=list(by_label)[:3], key=f"students_{name}",
                            help="Zoo students, then distilled run folders under $LAB_RUNS (default ./runs) for this distribution.")
    teacher_nfe = int(st.number_input("Teacher NFE", min_value=1, max_value=500, value=common.DEFAULT_TEACHER_NFE,
                                      step=1, key="teacher_nfe"))
    seed = int(st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="seed"))
    n = int(st.select_slider("Points", options=[250, 500, 1000, 2000, 4000], value=1000, key="n"))

if not available:
    st.info(f"No students are available for {name} yet: none in the zoo and no distilled run folder with a "
            f"model. Showing the teacher only. Distil one with "
            f"`lab distill --method consistency --teacher toy2d/{name}/teacher --out runs/{name}-consistency`.")
elif not chosen:
    st.info("No student selected: showing the teacher only.")

refs = tuple((by_label[c].label, by_label[c].source, by_label[c].ref) for c in chosen)

st.subheader("Teacher vs students (same noise)")
df = panels(name, refs, n, teacher_nfe, seed)
st.plotly_chart(viz.sample_panels_figure(df), key="sample_panels")
st.dataframe(common.summary_table(df), hide_index=True,
             column_config={"distance to data (SWD)": st.column_config.NumberColumn(format="%.4f"),
                            "noise floor": st.column_config.NumberColumn(format="%.4f"),
                            "wall-clock s": st.column_config.NumberColumn(format="%.3f")})
st.caption("Distance to data is the sliced Wasserstein distance to fresh data; the noise floor is that distance "
           "between two data samples of the same size, so values near it are as good as this n can tell.")

st.subheader("Trajectories")
c1, c2 = st.columns(2)
with c1:
    traj_label = st.selectbox("Student", chosen or ["(teacher only)"], key=f"traj_student_{name}",
                              disabled=not chosen)
with c2:
    student_nfe = int(st.selectbox("Student NFE", common.STUDENT_NFE, index=1, key="traj_nfe", disabled=not chosen))
traj_ref = next((r for r in refs if r[0] == traj_label), None)
p, summ = paths(name, traj_ref, teacher_nfe, student_nfe, seed)
st.plotly_chart(viz.trajectories_figure(p, summ), key="trajectories")
st.dataframe(summ, hide_index=True)
