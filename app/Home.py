"""Distillation Lab: landing page of the Streamlit explorer (``lab app``)."""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # app/ (for common)

import common  # noqa: E402

st.set_page_config(page_title="Distillation Lab", layout="wide")

st.title("Distillation Lab")
st.markdown(
    """
Explore, demonstrate and teach **distillation** at toy scale on a CPU.

A *teacher* is a flow/diffusion model that needs many steps (function evaluations, NFE) to turn
noise into samples. *Step distillation* trains a *student* that gets there in 1, 2 or 4 steps:
**progressive distillation** halves the step count round after round, **consistency distillation**
learns to jump from any point of the teacher's path to its end, **reflow** straightens the paths
so a few Euler steps suffice, and **distribution matching** (DMD, VSD, SiD) trains a one-step
generator with the difference between the teacher's score and a score fitted to the generator's own samples.

The 2D distributions show every sample and every path; the 8x8 digits show the same methods on a
class-conditional diffusers UNet, with few-step grids, the x̂0 ("diffusion target") at every step and FD-digits.
"""
)

st.page_link("pages/1_Generators.py", label="Generators: teacher vs students from the same noise", icon="🎯")
st.page_link("pages/2_Digits.py", label="Digits: few-step grids, the x̂0 view and guidance on a UNet teacher", icon="🔢")
st.page_link("pages/3_Knowledge_distillation.py",
             label="Knowledge distillation: divergences, KD vs scratch live, CKA, embeddings, calibration", icon="🧪")
if (Path(__file__).parent / "pages" / "4_Distill_live.py").exists():  # the live page ships with its own change
    st.page_link("pages/4_Distill_live.py", label="Distill live: watch a student being distilled", icon="▶️")
st.page_link("pages/5_Runs.py", label="Runs: every run folder, quality against NFE, curves and snapshots", icon="📁")
st.page_link("pages/6_Dataset_distillation.py",
             label="Dataset distillation: a few synthetic digits per class (DC, DM, MTT, FTD)", icon="🖼️")
st.page_link("pages/7_Language_models.py",
             label="Language models: on-policy distillation, teacher hacking, speculative decoding", icon="🗣️")
st.caption("Every page keeps its settings in its address: copy the link to share a view.")

st.subheader("Methods")
st.caption("Every method registered in `lab` (the same list as `lab methods`). Distil one with "
           "`lab distill --method METHOD --teacher toy2d/8gaussians/teacher --out runs/NAME`; its run folder then "
           "appears on the Runs page and, with its student, on the Generators page (Digits for `--teacher "
           "digits/teacher`).")
st.dataframe(common.methods_table(), width="stretch")

st.subheader("Knowledge-distillation methods")
st.caption("Classifiers and a tiny language model (`lab kd list`): `lab kd run --method kd --task digits --out runs/NAME`.")
st.dataframe(common.kd_methods_table(), width="stretch")

names = common.distributions()
if names:
    st.caption(f"Teachers in the zoo: {', '.join(names)}.")
else:
    st.warning("No teacher in the zoo yet: build them with `lab zoo build` (or `make zoo`).")
