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
learns to jump from any point of the teacher's path to its end, and **reflow** straightens the paths
so a few Euler steps suffice.

Everything runs on 2D distributions, so every sample and every path can be drawn.
"""
)

st.page_link("pages/1_Generators.py", label="Generators: teacher vs students from the same noise", icon="🎯")

names = common.distributions()
if names:
    st.caption(f"Teachers in the zoo: {', '.join(names)}.")
else:
    st.warning("No teacher in the zoo yet: build them with `lab zoo build` (or `make zoo`).")
