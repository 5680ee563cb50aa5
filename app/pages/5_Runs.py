"""Runs: every run folder under the runs root as a table, quality against NFE across runs with the Pareto front,
and one run opened: its config, its recorded training curves and its snapshots.

Every number comes from ``lab.runs.index`` (the table, the distances, the front, the snapshots) and ``Run``;
every figure from ``lab.viz``. This page only filters, picks and displays. Every setting lives in the URL
(``state.UrlState``): a link reopens the same filters and the same run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for common), also under AppTest

import common  # noqa: E402
import state  # noqa: E402
from lab import viz  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.runs import Run  # noqa: E402
from lab.runs import index  # noqa: E402
from lab.viz import runs as runviz  # noqa: E402

st.set_page_config(page_title="Runs · Distillation Lab", layout="wide")

st.title("Runs")
root = common.runs_root()
st.caption(f"Every run folder under `{root}` (the runs root: `$LAB_RUNS`, default `./runs`), newest first. Each "
           "model is measured here the same way (a fixed sample size and seed): sliced Wasserstein distance to data "
           f"for 2D (n = {index.N_POINTS}), FD-digits for digits (n = {index.N_IMAGES}); lower is better.")
url = state.UrlState("runs")

# the table; measuring a model takes up to a second the first time (then cached per model file)
bar = st.progress(0.0, text="reading the run folders…")
table = index.runs_table(root, progress=lambda i, n: bar.progress(i / n, text=f"measuring run {i} of {n}…"))
bar.empty()
if table.empty:
    st.info(f"No run folder under `{root}` yet. Distil one with `lab distill --method consistency --teacher "
            f"toy2d/8gaussians/teacher --out {root}/my-first-run` (or point `$LAB_RUNS` at your runs), then reload.")
    st.stop()

with st.sidebar:
    st.header("Filters")
    kinds = url.multiselect("Kind", sorted(table.kind.dropna().unique()), key="runs_kind", param="kind",
                            help="distill: a distilled student; teacher: a trained teacher; kd: knowledge "
                                 "distillation.")
    methods = url.multiselect("Method", sorted(table.method.dropna().unique()), key="runs_method", param="method")
    datas = url.multiselect("Data", sorted(table.data.dropna().unique()), key="runs_data", param="data")
    st.caption("No choice shows every run. Every setting is in the page's address: copy it to share this view.")

shown = index.filter_runs(table, kind=kinds, method=methods, data=datas)
st.subheader(f"Run folders ({len(shown)} of {len(table)})")
st.dataframe(shown.drop(columns=["run"]), hide_index=True, key="runs_table",
             column_config={"best_distance": st.column_config.NumberColumn("best distance", format="%.4f"),
                            "nfe": st.column_config.NumberColumn("NFE (at best)"),
                            "steps_done": st.column_config.NumberColumn("steps done"),
                            "seconds": st.column_config.NumberColumn("train s", format="%.1f"),
                            "native_nfe": "trained NFEs", "has_model": "model",
                            "modified": st.column_config.DatetimeColumn("modified", format="YYYY-MM-DD HH:mm")})

# ---------------------------------------------------------------- Pareto: quality against NFE across runs
st.subheader("Quality against NFE")
points = index.quality_points(shown, root)
if points.empty:
    st.caption("No shown run has a measured model yet (a run that is still training, a KD run, or data from a file "
               "outside the runs root has none).")
else:
    front = index.pareto(points)
    st.plotly_chart(runviz.pareto_figure(points, front), key="runs_pareto")
    st.caption("Each run at every step count it was trained for (a teacher at 1, 2, 4 and 50), one colour per "
               "method; the dashed line is the Pareto front: the runs that no other run beats on both NFE and "
               "distance (one front per data set; distances on different data do not compare).")
    st.dataframe(front, hide_index=True, key="runs_front",
                 column_config={"distance": st.column_config.NumberColumn(format="%.4f"),
                                "floor": st.column_config.NumberColumn("noise floor", format="%.4f")})

# ---------------------------------------------------------------- one run: config, curves, snapshots
st.subheader("Open a run")
if shown.empty:
    st.info("No run matches the filters.")
    st.stop()
by_name = dict(zip(shown.name, shown.run))
pick = url.selectbox("Run", list(by_name), key="runs_open", param="run")
try:
    folder = common.run_folder(by_name[pick], root)  # refused when it leaves the runs root (symlink, ..)
    run = Run.open(folder)
    config = run.config
    metrics = run.metrics()
except LabError as e:
    st.warning(f"{pick} cannot be opened: {e}")
    st.stop()
with st.expander("config.json", expanded=False):
    st.json(config)
q = index.measure(folder, root)
if len(q):
    st.dataframe(q, hide_index=True, key="runs_open_quality",
                 column_config={"distance": st.column_config.NumberColumn(format="%.4f"),
                                "floor": st.column_config.NumberColumn("noise floor", format="%.4f")})
c1, c2 = st.columns(2)
with c1:
    if metrics.empty or not any(c.startswith("loss/") for c in metrics.columns):
        st.caption("No training curves recorded (metrics.csv is missing or has no loss columns).")
    else:
        st.plotly_chart(viz.metrics_figure(metrics), key="runs_metrics")
with c2:
    steps = index.snapshot_steps(folder)
    if not steps:
        st.caption("No snapshot recorded.")
    else:
        step = url.select_slider("Snapshot at step", steps, key=f"runs_snap_{pick}", param="snap", default=steps[-1])
        try:
            st.plotly_chart(runviz.snapshot_figure(index.snapshot(folder, step)), key="runs_snapshot")
        except LabError as e:
            st.warning(str(e))
        st.caption("The student's samples from fixed noise at its smallest trained step count, as recorded during "
                   "training (the last snapshot by default).")
