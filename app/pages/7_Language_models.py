"""Language models: on-policy distillation (gkd) against off-policy, teacher hacking, and online speculative
decoding (osd), on synthetic hidden-Markov languages whose next-token probabilities are exact.

The first render shows the curves ``bench/lm.py`` measured (shipped in assets/zoo/kd/lm_family/results.json,
read by ``lab.probes.lm.shipped_results``); each section's button recomputes its curves here with a progress bar
(``lab.probes.lm`` for the data, ``lab.kd.hacking`` for the study, ``lab.viz.lm`` for the figures). The page only
picks settings, keeps live results in ``st.session_state`` and displays. Every setting lives in the URL
(``state.UrlState``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for state), also under AppTest

import state  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.kd import hacking as H  # noqa: E402
from lab.kd.speculative import OSD_DIVERGENCES  # noqa: E402
from lab.probes import lm as probes  # noqa: E402
from lab.viz import lm as viz  # noqa: E402

st.set_page_config(page_title="Language models · Distillation Lab", layout="wide")

LAMBDAS = ["0", "0.5", "1"]  # as the URL writes them
GKD_SETTINGS = ["16 prompts, batch 16 (claim)", "32 prompts, batch 32", "all 16,384 sequences, batch 32"]
RUNS = ["frozen"] + list(OSD_DIVERGENCES)
ss = st.session_state


@st.cache_data(show_spinner="reading the shipped measurements…")
def shipped():
    return probes.shipped_results()


st.title("Language models")
st.caption("A synthetic hidden-Markov language gives the exact next-token distribution, so the distance of a student "
           "to the truth is measured, not estimated.")
url = state.UrlState("lm")
try:
    res = shipped()
except LabError as e:
    st.error(f"The shipped measurements are missing: {e}. Run `python bench/lm.py` to make them.")
    st.stop()

# ------------------------------------------------------------------------------------------------ gkd
st.subheader("On-policy vs off-policy distillation (gkd)")
st.caption("GKD (Agarwal et al. 2024): with probability λ a step trains on sequences the student samples itself "
           "(the teacher labels every position); λ = 0 trains on the dataset's sequences only. KL(true || student) "
           "per token on true test sequences and on the student's own samples (lower is better).")
g1, g2, g3 = st.columns(3)
with g1:
    lambdas = [float(v) for v in url.multiselect("λ (share of on-policy steps)", LAMBDAS, key="lm_lambdas",
                                                 param="lambdas", default=LAMBDAS)]
with g2:
    setting = url.radio("Shipped setting", GKD_SETTINGS, key="lm_setting", param="setting", default=GKD_SETTINGS[0])
with g3:
    seeds = url.integer("Seeds for a live run", key="lm_seeds", param="seeds", default=1, lo=1, hi=5)
if st.button("Run gkd here (16 prompts, 200 steps of batch 16 per student)", key="lm_run_gkd"):
    bar = st.progress(0.0, text="gkd…")
    ss.lm_gkd = probes.gkd_compare(lambdas or [float(v) for v in LAMBDAS], range(seeds),
                                   progress=lambda f, t: bar.progress(f, text=t))
    bar.empty()
if "lm_gkd" in ss:
    curves, where = ss.lm_gkd, "computed here"
else:
    curves = probes.shipped_gkd_curves(res, setting)
    where = f"shipped ({res['date']}, {setting})"
curves = curves[curves["lmbda"].isin(lambdas)] if lambdas else curves
st.plotly_chart(viz.gkd_figure(curves), key="lm_gkd_fig")
st.dataframe(probes.gkd_summary(curves), hide_index=True, key="lm_gkd_table")
st.caption(f"Source: {where}. Mean and std over seeds of the final KLs.")

# ------------------------------------------------------------------------------------------------ hacking
st.subheader("Teacher hacking")
st.caption("Tiapkin et al. 2025: an oracle (the true language), a teacher trained on a limited oracle sample (so it "
           "has flaws), a smaller student distilled from the teacher with forward KL. Proxy = KL(teacher || "
           "student), golden = KL(oracle || student). Offline: 64 teacher samples reused for many epochs; online: "
           "fresh teacher (or student) samples every step.")
regimes = url.multiselect("Regimes", list(H.REGIMES), key="lm_regimes", param="regimes", default=list(H.REGIMES))
if st.button("Run the study here (500 steps per student, seed 0)", key="lm_run_hacking"):
    bar = st.progress(0.0, text="teacher hacking…")
    ss.lm_hacking = H.teacher_hacking_study(seeds=(0,), regimes=regimes or list(H.REGIMES),
                                            on_run=lambda f, t: bar.progress(f, text=t))
    bar.empty()
hdf = ss.lm_hacking if "lm_hacking" in ss else res["hacking"]
hdf = hdf[hdf["regime"].isin(regimes)] if regimes else hdf
h1, h2 = st.columns(2)
with h1:
    st.plotly_chart(viz.hacking_figure(probes.hacking_curves(hdf)), key="lm_hacking_fig")
with h2:
    st.plotly_chart(viz.proxy_golden_figure(probes.proxy_golden(hdf)), key="lm_plane_fig")
st.plotly_chart(viz.loglog_figure(probes.hacking_loglog(hdf)), key="lm_loglog_fig")
st.dataframe(H.hacking_summary(hdf), hide_index=True, key="lm_hacking_table")

# ------------------------------------------------------------------------------------------------ osd
st.subheader("Online speculative decoding (osd)")
st.caption("A draft model proposes k = 4 tokens, the target verifies them in one call (accept with min(1, p/q), "
           "else resample from norm(max(0, p - q))): the output follows the target exactly. The query stream shifts "
           "from language A (where the draft was distilled) to B; the online draft is distilled on the stream every "
           "8 requests, the frozen one is not. α = Σ min(p, q) is the acceptance rate.")
o1, o2 = st.columns(2)
with o1:
    runs = url.multiselect("Drafts", RUNS, key="lm_runs", param="runs", default=["frozen", "forward_kl"])
with o2:
    window = url.integer("Rolling window (groups of 8 requests)", key="lm_window", param="window", default=4, lo=1,
                         hi=32)
if st.button("Run the streams here (128 requests, seed 0)", key="lm_run_osd"):
    bar = st.progress(0.0, text="osd…")
    out = probes.osd_compare([r for r in runs if r != "frozen"] or ["forward_kl"], seeds=(0,), requests=128,
                             progress=lambda f, t: bar.progress(f, text=t))
    ss.lm_osd = out
    bar.empty()
if "lm_osd" in ss:
    groups, dist = ss.lm_osd["groups"], ss.lm_osd["dist"]
else:
    groups, dist = res["osd_groups"], res["osd_dist"]
groups = groups[groups["run"].isin(runs)] if runs else groups
st.plotly_chart(viz.acceptance_figure(probes.rolling_acceptance(groups, window)), key="lm_osd_fig")
st.dataframe(probes.osd_summary(groups), hide_index=True, key="lm_osd_table")
online = [r for r in dict.fromkeys(dist["run"]) if r != "frozen"]
dist_run = url.selectbox("Draft shown side by side with the target", online or ["frozen"], key="lm_dist_run",
                         param="dist_run", default=(online or ["frozen"])[0])
st.plotly_chart(viz.side_by_side_figure(probes.next_token_side_by_side(dist, dist_run)), key="lm_dist_fig")
st.caption("The next-token distributions at the first generated position of a fixed prompt from language B, before "
           "and after the stream.")
