"""Streamlit display helpers shared by the pages (no computation: the data comes from ``lab.probes``)."""
from __future__ import annotations

import streamlit as st

from lab.viz.inside import view_figure


def inside_views(views, key: str, per_row: int = 2) -> None:
    """The views of ``lab.probes.inside.inside_views``, ``per_row`` to a row, each figure with its caption under it
    (chart keys ``<key>_<view key>``)."""
    for i in range(0, len(views), per_row):
        for col, v in zip(st.columns(per_row), views[i:i + per_row]):
            col.plotly_chart(view_figure(v), key=f"{key}_{v.key}")
            col.caption(v.caption)
