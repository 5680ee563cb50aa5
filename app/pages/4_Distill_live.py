"""Distill live: watch a student being distilled, step by step, with the method's own field under its samples.

Everything shown is computed by ``lab.runs.live`` (the session: training on demand, samples, losses, distances)
and ``lab.probes.fields`` (the method's field), and drawn by ``lab.viz.live``; this page only picks settings,
keeps the session in ``st.session_state`` and displays. While playing, only the live fragment runs (a loop of
frames; see ``live_view``).
"""
from __future__ import annotations

import gc
import sys
import threading
import time
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for common), also under AppTest

import common  # noqa: E402
import state as urlstate  # noqa: E402
from lab import zoo  # noqa: E402
from lab.data import toy2d  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.methods import get_method  # noqa: E402
from lab.probes.fields import field_caption, field_kind, method_field  # noqa: E402
from lab.probes.particles import SIDE_BY_SIDE, score_distillation_side_by_side  # noqa: E402
from lab.runs import live  # noqa: E402
from lab.trainable import default_device  # noqa: E402
from lab.viz import live as liveviz  # noqa: E402
from lab.viz import particles as particleviz  # noqa: E402

st.set_page_config(page_title="Distill live · Distillation Lab", layout="wide")

LOOP_SECONDS = 2.0        # while playing, one fragment run draws frames for about this long (session_state
                          # "live_loop_seconds" overrides it: the AppTests set 0, one frame per run)
MIN_FRAME_SECONDS = 0.12  # at most about 8 frames a second
CURVES_SECONDS = 1.0      # the loss and distance curves while playing (they change slowly; each redraw costs)
AUTO_SECONDS = 0.08       # "auto" steps per frame: about this much training per frame
POINTS = 200              # samples per panel
FIELD_GRID = 11           # the field's grid side (coarse: it is computed and drawn every frame)
STEPS_PER_FRAME = ["auto", 1, 2, 4, 8, 16, 32]
DEFAULT_METHOD = "dmd"
ZOO, DRAW, UPLOAD = "zoo distribution", "draw points", "my points (.npy / .csv)"


@st.cache_resource
def freeze_long_lived_objects() -> bool:
    """Streamlit runs a full ``gc.collect()`` after every script run, fragment reruns included (its
    ``runner.postScriptGC``): with torch, pandas and plotly loaded that took about 150 ms of each frame. Freezing
    the objects alive now (modules, caches) once per process takes them out of the collector's scans, so a
    frame's collection only walks the frame's own objects (a fragment drawing a text and a figure went from 4.0 to
    5.8 updates a second; bench/RESULTS.md, Live distillation)."""
    gc.freeze()
    return True


freeze_long_lived_objects()
state = st.session_state
state.setdefault("live_playing", False)
state.setdefault("live_painted", set())   # canvas cells painted so far (indices into live.canvas_grid())
state.setdefault("live_canvas_gen", 0)    # bumped to give the canvas a fresh selection


@st.cache_resource(show_spinner="loading the teacher…")
def zoo_teacher(entry: str):
    return zoo.load(entry, default_device(), train_if_missing=False, progress=False)


@st.cache_resource(show_spinner=False, max_entries=4)
def upload_slot(name: str, raw: bytes) -> dict:
    """One upload's checked points and its teacher, trained once (outside, so that it can draw a progress bar)."""
    slot = {"lock": threading.Lock(), "teacher": None, "source": None, "error": ""}
    try:
        slot["source"] = live.points_from_upload(name, raw)
    except LabError as e:
        slot["error"] = str(e)
    return slot


def upload_teacher(slot: dict, what: str = "your points"):
    """The upload's (or drawing's) teacher (seed 0: the same teacher whatever the student's seed), trained on first
    use."""
    with slot["lock"]:
        if slot["teacher"] is None:
            bar = st.progress(0.0, text=f"training a teacher on {what}…")
            slot["teacher"] = live.train_points_teacher(
                slot["source"], seed=0, device=default_device(),
                progress=lambda f: bar.progress(f, text=f"training a teacher on {what}: {f:.0%}"))
            bar.empty()
    return slot["teacher"]


def live_field(method):
    return method_field(method, n=FIELD_GRID, points=POINTS // 2)


def drawn_slot(cells: tuple) -> dict:
    return _drawn_slot(cells)


@st.cache_resource(show_spinner=False, max_entries=4)
def _drawn_slot(cells: tuple) -> dict:
    """One drawing's points and its teacher, trained once (outside, so that it can draw a progress bar)."""
    slot = {"lock": threading.Lock(), "teacher": None, "source": None, "error": ""}
    try:
        slot["source"] = live.points_from_cells(cells)
    except LabError as e:
        slot["error"] = str(e)
    return slot


def paint(key: str, erase: bool):
    """A lasso or box selection on the canvas: its cells are painted (or erased); the canvas then gets a fresh key,
    so the next stroke starts from an empty selection."""
    ev = state.get(key)
    idx = set(ev.selection.point_indices) if ev is not None and ev.selection else set()
    state.live_painted = (state.live_painted - idx) if erase else (state.live_painted | idx)
    state.live_canvas_gen += 1


def clear_canvas():
    state.live_painted = set()
    state.live_canvas_gen += 1


def use_drawing():
    state.live_drawn = live.cells_to_text(sorted(state.live_painted))


def set_playing(on: bool):
    state.live_playing = on


def step_once():
    state.live_playing = False
    if "live_session" in state:
        state.live_session.advance(1)


def reset():
    state.live_playing = False
    if "live_session" in state:
        state.live_session.reset()


st.title("Distill live")
st.caption("A student distilled from its teacher while you watch: its samples against the teacher's from the same "
           "noise, with the method's own field under them, the losses and the distance to data.")

# ---------------------------------------------------------------- settings
url = urlstate.UrlState("live")
with st.sidebar:
    kind = url.radio("Data", [ZOO, DRAW, UPLOAD], key="live_data_kind", param="data")
    if kind == ZOO:
        names = common.distributions()
        if not names:
            st.error("No teacher in the zoo yet. Build them with `lab zoo build`, then reload this page.")
            st.stop()
        dist = url.selectbox("Distribution", names, key="live_dist", param="dist")
        st.caption(toy2d.get(dist).description)
    elif kind == UPLOAD:
        up = st.file_uploader("Points: an (N, 2) array", type=["npy", "csv"], key="live_upload",
                              max_upload_size=live.MAX_UPLOAD_BYTES // 2**20,  # the browser refuses bigger files
                              help=f"At most {live.MAX_UPLOAD_BYTES // 2**20} MB, {live.MIN_POINTS} to "
                                   f"{live.MAX_POINTS:_} finite points; centred and scaled to the zoo's range.")
    methods = live.methods_2d()
    method = url.selectbox("Method", methods, key="live_method", param="method", default=DEFAULT_METHOD,
                           help="Every registered method that trains on 2D points.")
    st.caption(get_method(method).mechanism)
    st.markdown("**Hyperparameters**")
    config = {}
    for row in live.hyperparameters(method).itertuples():
        is_int = row.kind == "int"
        conv = (lambda v: urlstate.parse_int(v, -2**63, 2**63 - 1)) if is_int else float
        default = int(row.default) if is_int else float(row.default)

        def check(text, name=row.name, conv=conv):  # the method's Config decides, with its own message
            live.check_config(method, {name: conv(text)})

        text = url.text(row.name, key=f"hp_{method}_{row.name}", default=f"{default:g}" if not is_int else str(default),
                        check=check, allowed=row.allowed, param=f"hp.{row.name}", help=f"allowed: {row.allowed}")
        if conv(text) != default:
            config[row.name] = conv(text)
    seed = url.integer("Seed", key="live_seed", default=0, lo=0, hi=2**31 - 1, param="seed")
    slow = url.radio("Speed", ["normal", "slow motion (one step per frame)"], key="live_slow_mode",
                     param="speed", horizontal=True) != "normal"
    k = url.select_slider("Steps per frame", STEPS_PER_FRAME, key="live_k", param="k", default="auto",
                          disabled=slow,
                          help=f"Training steps between two frames while playing; auto: as many as fit in about "
                               f"{1000 * AUTO_SECONDS:.0f} ms. More steps: faster training, fewer frames per second.")
    st.caption("Every setting is in the page's address (a drawing too): copy it to share this view.")
state.live_slow = slow

# ---------------------------------------------------------------- the session (rebuilt when a setting changes)
if kind != DRAW and "cells" in st.query_params:  # a drawing's link parameter belongs to the draw mode only
    del st.query_params["cells"]
if kind == ZOO:
    entry = zoo.student_teacher(dist, method)  # the analytic mixture for methods that need a conditional teacher
    data_key = ("zoo", entry)
elif kind == DRAW:
    st.subheader("Draw your points")
    if "live_drawn" not in state:  # a shared link's drawing (read once)
        state.live_drawn = st.query_params.get("cells", "")
        try:  # its drawing is painted on the canvas too
            state.live_painted = set(live.cells_from_text(state.live_drawn)) if state.live_drawn else set()
        except LabError as e:
            st.warning(f"URL parameter **cells** is not valid ({e}); starting with an empty canvas.", icon="🔗")
            state.live_drawn = ""
    drawn = state.live_drawn
    if drawn:
        st.query_params["cells"] = drawn
    d1, d2 = st.columns([3, 1])
    with d2:
        st.toggle("Erase", key="live_erase", help="Strokes erase cells instead of painting them.")
        st.button("Clear", key="live_clear", on_click=clear_canvas, width="stretch")
        st.button("Distil on this drawing", key="live_use", on_click=use_drawing, type="primary", width="stretch",
                  disabled=not state.live_painted,
                  help="A teacher is trained on the painted cells' points (a few seconds), then the student.")
        st.caption(f"{len(state.live_painted)} cells painted ({len(state.live_painted) * live.CANVAS_PER_CELL} points).")
    with d1:
        ckey = f"live_canvas_{state.live_canvas_gen}"
        st.plotly_chart(liveviz.canvas_figure(live.canvas_grid(), state.live_painted, live.CANVAS_LIM), key=ckey,
                        on_select=lambda: paint(ckey, state.live_erase), selection_mode=("lasso", "box"),
                        config={"displayModeBar": True, "modeBarButtonsToRemove": ["toImage"]})
    if not drawn:
        st.info("Paint cells with the lasso or box tool (drag over the dots), then press **Distil on this drawing**.")
        st.stop()
    slot = drawn_slot(tuple(live.cells_from_text(drawn)))
    if slot["error"]:
        st.error(slot["error"])
        st.stop()
    st.caption(f"data: {slot['source'].spec} · {len(slot['source'].points):,} points")
    data_key = ("drawn", drawn)
else:
    if up is None:
        st.info("Upload a .npy or .csv file of (N, 2) points to distil on your own data.")
        st.stop()
    raw = up.getvalue()
    slot = upload_slot(up.name, raw)
    if slot["error"]:
        st.error(slot["error"])
        st.stop()
    st.caption(f"data: {slot['source'].spec} · {len(slot['source'].points):,} points (centred, scaled to ±2)")
    data_key = ("upload", up.name, len(raw), up.file_id)
settings = (data_key, method, tuple(sorted(config.items())), seed)
if state.get("live_key") != settings:
    try:
        if kind == ZOO:
            sess = live.LiveSession(method, zoo_teacher(entry), f"toy2d:{dist}", config, seed, field=live_field,
                                    n=POINTS, teacher_ref=entry, device=default_device())
        elif kind == DRAW:
            sess = live.LiveSession(method, upload_teacher(slot, "your drawing"), slot["source"], config, seed,
                                    field=live_field, n=POINTS, device=default_device())
        else:
            sess = live.LiveSession(method, upload_teacher(slot), slot["source"], config, seed,
                                    field=live_field, n=POINTS, device=default_device())
    except LabError as e:
        state.pop("live_session", None)
        state.pop("live_key", None)
        st.error(str(e))
        st.stop()
    state.live_session, state.live_key, state.live_playing = sess, settings, False
sess = state.live_session

c1, c2, c3, c4 = st.columns(4)
c1.button("Play", key="live_play", icon=":material/play_arrow:", on_click=set_playing, args=(True,),
          disabled=sess.done, width="stretch")
c2.button("Pause", key="live_pause", icon=":material/pause:", on_click=set_playing, args=(False,), width="stretch")
c3.button("Step", key="live_step", icon=":material/skip_next:", on_click=step_once, disabled=sess.done,
          width="stretch", help="Exactly one training step.")
c4.button("Reset", key="live_reset", icon=":material/replay:", on_click=reset, width="stretch",
          help="Back to step 0 with the same seed.")
st.caption(f"{'playing' if state.live_playing else 'paused'} · {1 if slow else k} step(s) per frame · "
           f"teacher: {sess.teacher_ref or 'trained here on your points'}")


def advance(s):
    if state.live_slow:
        s.advance(1)
    elif state.live_k == "auto":
        s.advance_for(AUTO_SECONDS)
    else:
        s.advance(int(state.live_k))


@st.fragment(run_every=LOOP_SECONDS if state.live_playing else None)
def live_view():
    """While playing, one run of this fragment draws frames into placeholders for about LOOP_SECONDS (a rerun per
    frame would cost Streamlit's per-run overhead, and a timer faster than a frame preempts runs before they
    draw); the timer then starts the next run. A click anywhere (Pause, Step) interrupts the loop at once."""
    s = state.live_session
    text, msg, fig, caption = st.empty(), st.empty(), st.empty(), st.empty()
    left, right = st.columns(2)
    loss_ph, dist_ph = left.empty(), right.empty()
    t_end, curves_at, drawn = time.monotonic() + state.get("live_loop_seconds", LOOP_SECONDS), 0.0, 0
    while True:
        t0 = time.monotonic()
        playing = state.live_playing and not s.done
        if playing and s.iteration == 0:
            with st.spinner("first steps (some methods first draw their teacher's ODE pairs)…"):
                advance(s)
        elif playing:
            advance(s)
        fr = s.frame()
        text.text(f"step {fr.it}")
        if fr.error:
            msg.error(fr.error)
        elif fr.done:
            msg.success(f"Done: {fr.total} steps (the method's `steps`). Save the run below, or Reset.")
        if playing:  # an image: swapped in one step (a changed plotly chart is redrawn from scratch)
            fig.image(liveviz.png_data_uri(liveviz.live_image(fr)), width="stretch")
        else:  # paused: the same frame as an interactive figure (zoom, hover)
            fig.plotly_chart(liveviz.live_figure(fr), key="live_fig", config={"displayModeBar": False})
        caption.caption(field_caption(s.method))
        if not playing or t0 - curves_at >= CURVES_SECONDS:  # the curves change slowly; each redraw costs
            cfg = {"displayModeBar": False}  # keys: unique within the run (the curves are redrawn in it)
            loss_ph.plotly_chart(liveviz.loss_figure(fr.losses), key=f"live_loss_{drawn}", config=cfg)
            dist_ph.plotly_chart(liveviz.distance_figure(fr.distance), key=f"live_distance_{drawn}", config=cfg)
            curves_at, drawn = t0, drawn + 1
        if not playing or time.monotonic() >= t_end:
            break
        time.sleep(max(0.0, MIN_FRAME_SECONDS - (time.monotonic() - t0)))
    if state.live_playing and s.done:  # the end of the run: stop the timer (a full rerun re-reads live_playing)
        state.live_playing = False
        st.rerun()


live_view()

# ---------------------------------------------------------------- save
st.subheader("Save the run")
root = common.runs_root()
n1, n2 = st.columns([3, 1])
run_name = n1.text_input("Run name", value=f"live-{method}-{seed}", key="live_run_name",
                         help=f"A new folder under the runs root ({root}); an existing one is never overwritten.")
if n2.button("Save", key="live_save", width="stretch"):
    try:
        folder = sess.save(live.check_run_name(run_name, root))
        where = ("it is listed on the Generators page" if kind == ZOO else
                 f"the Generators page lists it under the distribution **{common.CUSTOM}{folder.name}**")
        st.success(f"Saved step {sess.iteration} to {folder}: {where}; `lab distill --resume {folder}` finishes it.")
    except LabError as e:
        st.error(str(e))

# ---------------------------------------------------------------- score distillation side by side (particle methods)
SIDE_PARTICLES, SIDE_STEPS = 128, 300  # lab.probes.particles.score_distillation_side_by_side (about 4 s, cached)


@st.cache_data(show_spinner=False, max_entries=8)
def side_by_side(teacher: str, dist: str, seed: int) -> dict:
    return score_distillation_side_by_side(teacher, dist, n_particles=SIDE_PARTICLES, steps=SIDE_STEPS, seed=seed)


if kind == ZOO and field_kind(method) == "particles":
    st.subheader("Score distillation side by side")
    gmm = toy2d.get(dist).gmm
    side_teacher = zoo.entry_name("toy2d", dist, "analytic") if gmm is not None else zoo.student_teacher(dist, method)
    with st.spinner(f"training {', '.join(SIDE_BY_SIDE)} from the same particles…"):
        side = side_by_side(side_teacher, dist, int(seed))
    st.plotly_chart(particleviz.side_by_side_figure(side, toy2d.get(dist).sample(1000, 0).numpy()),
                    key="side_by_side", config={"displayModeBar": False})
    st.caption(f"Panels: {', '.join(SIDE_BY_SIDE)} trained for {SIDE_STEPS} steps from the same {SIDE_PARTICLES} "
               f"particles (seed {seed}, teacher {side_teacher}); lines are the paths, arrows the final force on "
               f"each particle. Look at sds collapsing onto the mode centres, vsd_particles and esd keeping a spread "
               f"(esd between the two), and dsd's particles crossing the plane to their own seeds' teacher samples "
               f"instead of the nearest mode.")
    st.dataframe(side["metrics"].round(3), key="side_by_side_metrics", hide_index=True)
