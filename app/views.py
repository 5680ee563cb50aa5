"""Streamlit display helpers shared by the pages (no computation: the data comes from ``lab.probes``)."""
from __future__ import annotations

from typing import Callable

import streamlit as st

from lab.viz.inside import view_figure


@st.cache_resource(show_spinner=False, max_entries=256)
def figure(key: tuple, _build: Callable):
    """The figure ``_build()`` makes, built once per ``key`` for the whole server (every key names the data the
    figure draws). Building a plotly figure (validation) costs 10-200 ms, which every rerun of every session would
    otherwise pay again: with 20 visitors at once that is seconds of a 2-core server. Shared: never modify it."""
    return _build()


def inside_views(views, key: str, cache_key: tuple = (), per_row: int = 2) -> None:
    """The views of ``lab.probes.inside.inside_views``, ``per_row`` to a row, each figure with its caption under it
    (chart keys ``<key>_<view key>``; figures cached under ``cache_key``, which names the student and the seed)."""
    for i in range(0, len(views), per_row):
        for col, v in zip(st.columns(per_row), views[i:i + per_row]):
            col.plotly_chart(figure((key, *cache_key, v.key), lambda v=v: view_figure(v)), key=f"{key}_{v.key}")
            col.caption(v.caption)
