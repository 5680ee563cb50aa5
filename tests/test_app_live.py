"""The Distill live page (AppTest, headless): step, play and pause move the counter and the figure by the steps
the session ran; a bad hyperparameter is one line and training goes on; a run is saved once, never overwritten."""
from __future__ import annotations

import base64
import json

import numpy as np
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from lab.runs import find_students

PAGE = str(ROOT / "app" / "pages" / "4_Distill_live.py")


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _step(at) -> int:
    texts = [t.value for t in at.text if t.value.startswith("step ")]
    assert len(texts) == 1, texts
    return int(texts[0].split()[1])


def _arr(v) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v, dtype=float)


def _student_x(at) -> np.ndarray:
    spec = json.loads(next(c for c in at.get("plotly_chart") if c.key == "live_fig").proto.spec)
    return _arr(next(t for t in spec["data"] if t.get("name") == "student samples")["x"])


def _page(method="consistency"):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["live_loop_seconds"] = 0  # one frame per run of the live fragment (the browser's loop: ~2 s)
    at.run()
    _ok(at)
    at.selectbox(key="live_method").set_value(method).run()
    _ok(at)
    return at


def test_step_advances_by_exactly_one():
    at = _page()
    assert [t.value for t in at.title] == ["Distill live"] and _step(at) == 0
    keys = {c.key for c in at.get("plotly_chart")}
    assert "live_fig" in keys and {"live_loss_0", "live_distance_0"} <= keys, keys
    x0 = _student_x(at)
    for want in (1, 2):
        at.button(key="live_step").click().run()
        _ok(at)
        assert _step(at) == want
        sess = at.session_state["live_session"]
        assert sess.iteration == want and len(sess.losses) == want
    assert not np.array_equal(_student_x(at), x0)  # the figure shows the trained student
    assert any("regression target" in c.value for c in at.caption)  # the field's caption (consistency: targets)


def test_play_then_pause_advances_and_slow_motion_runs_one_step_per_frame():
    at = _page()
    x0 = _student_x(at)
    at.select_slider(key="live_k").set_value(4).run()
    at.button(key="live_play").click().run()  # the fragment runs once per script run here: one frame
    _ok(at)
    assert at.session_state["live_playing"] and _step(at) == 4
    # while playing the frame is an image (a plotly chart is redrawn from scratch each frame); paused: the figure
    imgs = at.get("image")
    assert len(imgs) == 1 and imgs[0].proto.imgs[0].url.startswith("data:image/png;base64,")
    assert "live_fig" not in {c.key for c in at.get("plotly_chart")}
    at.button(key="live_pause").click().run()
    _ok(at)
    assert not at.session_state["live_playing"] and _step(at) == 4
    assert not np.array_equal(_student_x(at), x0)
    at.run()
    assert _step(at) == 4  # paused: nothing moves
    at.radio(key="live_slow_mode").set_value("slow motion (one step per frame)").run()
    at.button(key="live_play").click().run()
    assert _step(at) == 5
    at.radio(key="live_slow_mode").set_value("normal").run()
    at.select_slider(key="live_k").set_value("auto").run()  # auto: whole steps for about 80 ms, at least one
    assert _step(at) > 5
    at.button(key="live_reset").click().run()
    _ok(at)
    assert _step(at) == 0 and not at.session_state["live_playing"]


def test_bad_hyperparameter_is_one_line_and_training_goes_on():
    at = _page()
    box = lambda: at.text_input(key="hp_consistency_batch")  # noqa: E731
    box().set_value("1").run()
    assert not at.exception and not at.error
    assert [w.value for w in at.warning] == [
        "batch: 1 is refused; allowed: an integer >= 2, at most 8_192 here. Using 512."]  # the Config's words
    at.button(key="live_step").click().run()
    assert _step(at) == 1 and at.session_state["live_session"].method.config.batch == 512  # the last valid value
    box().set_value("64").run()  # a valid change: a new session, applied, and in the link
    _ok(at)
    assert _step(at) == 0 and at.session_state["live_session"].method.config.batch == 64
    assert at.query_params["hp.batch"] == "64"
    box().set_value("1e9").run()  # the Config allows it, the live view not
    assert len(at.warning) == 1 and "at most 8_192" in at.warning[0].value
    assert at.session_state["live_session"].method.config.batch == 64


def test_a_shared_link_reopens_the_same_session_and_a_bad_parameter_falls_back_with_a_note():
    at = AppTest.from_file(PAGE, default_timeout=120)
    for k, v in {"dist": "moons", "method": "reflow", "seed": "7", "hp.batch": "128", "k": "2"}.items():
        at.query_params[k] = v
    at.run()
    _ok(at)
    sess = at.session_state["live_session"]
    assert (sess.method_name, sess.seed, sess.method.config.batch, sess.source.spec) == ("reflow", 7, 128,
                                                                                         "toy2d:moons")
    assert at.select_slider(key="live_k").value == 2
    bad = AppTest.from_file(PAGE, default_timeout=120)
    bad.query_params["method"] = "nope"
    bad.query_params["seed"] = "-3"
    bad.run()
    assert not bad.exception
    notes = " ".join(w.value for w in bad.warning)
    assert "method=nope" in notes and "seed=-3" in notes
    assert (bad.session_state["live_session"].method_name, bad.session_state["live_session"].seed) == ("dmd", 0)


def test_a_drawing_becomes_the_data_and_travels_in_the_link():
    from lab.runs import live

    cells = list(range(440, 452)) + list(range(1040, 1052))  # two horizontal strokes
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["data"] = "draw points"
    at.query_params["cells"] = live.cells_to_text(cells)
    at.query_params["method"] = "consistency"
    at.query_params["hp.steps"] = "200"
    at.run()
    _ok(at)
    sess = at.session_state["live_session"]
    pts = sess.source.points.numpy()
    assert sess.source.spec == "drawn:24-cells" and len(pts) == 24 * live.CANVAS_PER_CELL
    assert f"data: drawn:24-cells · {len(pts):,} points" in [c.value for c in at.caption]
    grid = live.canvas_grid()
    side = 2 * live.CANVAS_LIM / live.CANVAS_CELLS
    near = np.abs(pts[:, None, :] - grid[cells][None]).max(-1).min(1)  # every point lies in a painted cell
    assert (near <= side / 2 + 1e-6).all()
    assert set(at.session_state["live_painted"]) == set(cells)
    at.button(key="live_step").click().run()
    _ok(at)
    assert _step(at) == 1
    at.button(key="live_clear").click().run()  # the canvas is cleared; the session on the drawing stays
    assert at.session_state["live_painted"] == set() and _step(at) == 1


def test_a_method_that_cannot_run_on_this_data_says_why():
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.selectbox(key="live_dist").set_value("moons").run()
    at.selectbox(key="live_method").set_value("guidance").run()
    assert not at.exception and len(at.error) == 1 and "class-conditional teacher" in at.error[0].value


def test_save_once_then_refuse(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS", str(tmp_path))
    at = _page()
    at.button(key="live_step").click().run()
    at.text_input(key="live_run_name").set_value("my-live").run()
    at.button(key="live_save").click().run()
    _ok(at)
    assert at.success and str(tmp_path / "my-live") in at.success[0].value
    assert find_students("toy2d:8gaussians", tmp_path).run.tolist() == [str(tmp_path / "my-live")]
    at.button(key="live_save").click().run()
    assert len(at.error) == 1 and "already exists" in at.error[0].value
    at.text_input(key="live_run_name").set_value("../escape").run()
    at.button(key="live_save").click().run()
    assert len(at.error) == 1 and "invalid run name" in at.error[0].value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-live"]
