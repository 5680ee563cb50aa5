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
    at.toggle(key="live_slow").set_value(True).run()
    at.button(key="live_play").click().run()
    assert _step(at) == 5
    at.toggle(key="live_slow").set_value(False).run()
    at.select_slider(key="live_k").set_value("auto").run()  # auto: whole steps for about 80 ms, at least one
    assert _step(at) > 5
    at.button(key="live_reset").click().run()
    _ok(at)
    assert _step(at) == 0 and not at.session_state["live_playing"]


def test_bad_hyperparameter_is_one_line_and_training_goes_on():
    at = _page()
    at.number_input(key="hp_consistency_batch").set_value(1).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["invalid batch=1; allowed: an integer >= 2"]
    assert at.number_input(key="hp_consistency_batch").value == 512  # the previous valid value stays
    at.button(key="live_step").click().run()
    assert _step(at) == 1 and at.session_state["live_session"].method.config.batch == 512
    at.number_input(key="hp_consistency_batch").set_value(64).run()  # a valid change: a new session, applied
    _ok(at)
    assert _step(at) == 0 and at.session_state["live_session"].method.config.batch == 64
    at.number_input(key="hp_consistency_batch").set_value(10**9).run()  # the Config allows it, the live view not
    assert len(at.error) == 1 and "at most 8_192" in at.error[0].value
    assert at.session_state["live_session"].method.config.batch == 64


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
