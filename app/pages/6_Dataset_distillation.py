"""Dataset distillation: a few synthetic digits per class that train a fresh network almost as well as the whole
training set (DC, DM, MTT, FTD).

The first view comes from the shipped sets (``assets/zoo/dd/showcase.*``, written by ``bench/dd.py``): the
distilled images per class, how they changed over the iterations, test accuracy against images per class next to
random real images and the full data, and, for MTT and FTD, the expert and student parameter trajectories (PCA)
and the accumulated trajectory error. "Distil live" runs a short distillation with a progress bar. Everything is
computed by ``lab.dd`` and ``lab.probes.dd`` and drawn by ``lab.viz.dd``; settings live in the URL.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for state), also under AppTest

import state  # noqa: E402
import lab  # noqa: E402
import lab.dd  # noqa: E402
from lab.dd.experts import load_experts  # noqa: E402
from lab.probes import dd as probes  # noqa: E402
from lab.viz import dd as viz  # noqa: E402

st.set_page_config(page_title="Dataset distillation · Distillation Lab", layout="wide")

METHODS = ["dc", "dm", "mtt", "ftd"]
IPCS = [1, 10]
LIVE_STEPS = [10, 20, 50, 100]
EXPERT_KIND = {"mtt": "sgd", "ftd": "sam"}


@st.cache_resource(show_spinner="loading the shipped distilled sets…")
def showcase():
    return probes.showcase()


@st.cache_resource(show_spinner=False)
def experts(kind: str):
    return load_experts(kind, build=False)[0]


@st.cache_data(show_spinner="tracing the student's path…", max_entries=16)
def paths_table(method: str, ipc: int):
    s = showcase()["sets"][f"{method}/ipc{ipc}"]
    ex = experts(EXPERT_KIND[method])
    path = probes.student_path(s["images"], s["labels"], s["lr"], ex, expert=0)
    return probes.parameter_paths(ex, {f"{method} student (from expert 0's init)": path})


st.title("Dataset distillation")
st.caption("Condense the 1,437 training digits into a few synthetic images per class; a fresh ConvNet trained "
           "only on them is judged on the 360 test digits.")
url = state.UrlState("dd")
c1, c2 = st.columns(2)
with c1:
    method = url.selectbox("Method", METHODS, key="dd_method", param="method", default="dm")
with c2:
    ipc = int(url.radio("Images per class", IPCS, key="dd_ipc", param="ipc", default=10, horizontal=True))

cls = lab.dd.get(method)
st.markdown(f"**{method}**: {cls.mechanism}. *{cls.paper}*")
sc = showcase()
card, entry = sc["card"], sc["sets"][f"{method}/ipc{ipc}"]
acc_df = probes.accuracy_table(card)

st.subheader("Synthetic images per class")
row = acc_df[(acc_df["method"] == method) & (acc_df["ipc"].astype(str) == str(ipc))]
rr = acc_df[(acc_df["method"] == "random real") & (acc_df["ipc"].astype(str) == str(ipc))]
st.markdown(f"Test accuracy of a fresh net trained on this set (seed 0): **{entry['acc_seed0']:.3f}**; "
            f"mean over seeds {float(row['acc'].iloc[0]):.3f} ± {float(row['acc_std'].iloc[0]):.3f}, random real "
            f"images {float(rr['acc'].iloc[0]):.3f} ± {float(rr['acc_std'].iloc[0]):.3f}.")
st.plotly_chart(viz.synthetic_set_figure(probes.class_grid(entry["images"]), pixel=8 if ipc == 1 else 5),
                key="dd_set")

st.subheader("Over the iterations")
frames = {"its": entry["its"], "images": entry["frames"].numpy(), "ipc": ipc}
st.plotly_chart(viz.evolution_figure(frames), key="dd_frames")

st.subheader("Accuracy against images per class")
st.plotly_chart(viz.accuracy_vs_ipc_figure(acc_df), key="dd_acc")
st.dataframe(acc_df, hide_index=True)

if method in EXPERT_KIND:
    st.subheader("Expert and student trajectories (PCA of the parameters)")
    st.plotly_chart(viz.parameter_paths_figure(paths_table(method, ipc)), key="dd_paths")
    st.subheader("Accumulated trajectory error: MTT against FTD")
    st.plotly_chart(viz.trajectory_error_figure(probes.shipped_trajectory_error(card, ipc)), key="dd_ate")
    st.caption("A net trained on the distilled set from each expert's initialisation, against the expert at the same "
               "epoch (test loss gap; each method against its own experts: SGD for MTT, SAM for FTD).")

st.subheader("Distil live")
steps = int(url.select_slider("Iterations", LIVE_STEPS, key="dd_live_steps", param="steps", default=20))
if st.button("Distil live", key="dd_live"):
    m = cls({"ipc": ipc, "steps": steps}, seed=0)
    bar = st.progress(0.0, text="distilling…")
    for s in lab.distill(m):
        bar.progress(s.it / s.total, text=f"iteration {s.it} / {s.total}")
    ev = m.history[-1]
    st.markdown(f"Live set after {steps} iterations: test accuracy **{ev['acc']:.3f}**")
    st.plotly_chart(viz.synthetic_set_figure(probes.class_grid(m.images())), key="dd_live_set")
