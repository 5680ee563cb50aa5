"""The Knowledge distillation page of the Streamlit explorer (AppTest, headless): nothing trains before Start; Start,
Pause and Step move the live runs by exactly the steps they say; every section shows the numbers the probes compute
for the same runs trained directly (same settings, same seed: the same numbers); a link reopens the comparison."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import lab.kd
from conftest import ROOT
from lab.probes import divergence as divprobe
from lab.probes import kd as probes
from lab.runs.live_kd import KDLiveSession

PAGE = str(ROOT / "app" / "pages" / "3_Knowledge_distillation.py")
LIVE = ["Divergence explorer", "Live: dkd vs scratch and kd"]
PAUSED = LIVE + ["Where the students and the teacher disagree", "CKA: teacher layers vs student layers",
                 "Teacher and student features (PCA)", "Reliability diagrams"]


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _charts(at) -> dict:
    return {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def _arr(v) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return a.reshape([int(k) for k in str(v["shape"]).split(",")]) if "shape" in v else a
    return np.asarray(v, dtype=float)


def _step(at) -> int:
    texts = [t.value for t in at.text if t.value.startswith("step ")]
    assert len(texts) == 1, texts
    return int(texts[0].split()[1])


def _curves(at) -> dict:
    """The live curves' data: {run: {panel: y values}}, panels in order."""
    charts = [v for k, v in _charts(at).items() if k.startswith("kd_curves_")]
    assert len(charts) == 1
    out = {}
    for tr in charts[0]["data"]:
        out.setdefault(tr["name"], []).append(_arr(tr["y"]))
    return out


def _page(params: dict | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["kd_loop_seconds"] = 0  # one frame per run of the live fragment (the browser's loop: ~2 s)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    at.run()
    _ok(at)
    return at


def test_nothing_trains_before_start_then_start_pause_and_step_move_by_their_steps():
    at = _page({"steps": "100", "k": "10"})
    assert [t.value for t in at.title] == ["Knowledge distillation"]
    assert [s.value for s in at.subheader] == LIVE
    sess = at.session_state["kd_session"]
    assert _step(at) == 0 and sess.iteration == 0 and sess.names == ["dkd", "scratch", "kd"]
    at.run()
    assert _step(at) == 0 and at.session_state["kd_session"].iteration == 0  # reruns do not train
    curves = _curves(at)
    assert set(curves) == {"dkd", "scratch", "kd"} and all(len(y) == 1 for ys in curves.values() for y in ys)

    at.button(key="kd_start").click().run()  # one frame: exactly the steps per frame
    _ok(at)
    assert at.session_state["kd_playing"] and _step(at) == 10
    at.run()
    assert _step(at) == 20
    assert [s.value for s in at.subheader] == LIVE  # while playing only the live view runs
    at.button(key="kd_pause").click().run()
    _ok(at)
    assert not at.session_state["kd_playing"] and _step(at) == 20
    at.run()
    assert _step(at) == 20  # paused: nothing moves
    at.button(key="kd_step").click().run()
    _ok(at)
    assert _step(at) == 30 and not at.session_state["kd_playing"]
    sess = at.session_state["kd_session"]
    assert {n: m.it for n, m in sess.runs.items()} == {"dkd": 30, "scratch": 30, "kd": 30}

    # the same runs trained here: the page's curves and tables hold their numbers
    direct = KDLiveSession("dkd", "digits", {"steps": 100, "n_train": 200,
                                             "student": dict(lab.kd.get_task("digits").student_net), "beta": 2.0},
                           seed=0)
    direct.advance(30)
    h = direct.frame().history
    curves = _curves(at)
    assert set(curves) == {"dkd", "scratch", "kd"}
    for run in ("dkd", "scratch", "kd"):
        acc, agree = curves[run][0], curves[run][1]  # panels: accuracy, agreement, ECE
        assert np.allclose(acc, h[h.run == run].acc) and np.allclose(agree, h[h.run == run].agree)
    assert [s.value for s in at.subheader] == PAUSED
    table = next(d.value for d in at.dataframe if "best_acc" in d.value.columns)
    assert list(table.index) == ["dkd", "scratch", "kd"]
    assert np.allclose(table.last_agree.to_numpy(dtype=float),
                       probes.compare_runs(direct.runs).last_agree.to_numpy(dtype=float))

    # disagreements: the summary and the examples of the direct runs' students
    dis = probes.disagreements(direct.teacher, direct.students(), "digits")
    summary = next(d.value for d in at.dataframe if "disagree" in d.value.columns)
    assert summary.equals(probes.disagreement_summary(dis))
    charts = _charts(at)
    ex = probes.disagreement_examples(dis, "digits", "dkd", k=12)
    grid = charts["kd_dis_examples"]
    assert [a["text"] for a in grid["layout"]["annotations"]][:len(ex["rows"])] == [
        f"T {r.teacher_pred} ({r.teacher_conf:.2f})<br>S {r.student_pred} ({r.student_conf:.2f}) · y {r.label}"
        for r in ex["rows"].itertuples()]
    conf = probes.confusion(dis, "dkd").to_numpy(dtype=float).copy()
    np.fill_diagonal(conf, np.nan)
    assert np.allclose(_arr(charts["kd_dis_confusion"]["data"][0]["z"]), conf, equal_nan=True)
    at.selectbox(key="kd_dis_student").set_value("scratch").run()
    _ok(at)
    assert _step(at) == 30  # a view's setting does not train
    conf = probes.confusion(dis, "scratch").to_numpy(dtype=float).copy()
    np.fill_diagonal(conf, np.nan)
    assert np.allclose(_arr(_charts(at)["kd_dis_confusion"]["data"][0]["z"]), conf, equal_nan=True)

    # CKA, embeddings and reliability of the current students
    x = probes.probe_batch(direct.task, 256, 0)
    heat = charts["kd_cka_kd"]["data"][0]
    m = probes.layer_cka(direct.teacher, direct.runs["kd"].student, x).pivot(
        index="teacher_layer", columns="student_layer", values="cka").loc[heat["y"], heat["x"]]
    assert np.allclose(_arr(heat["z"]), m.to_numpy())
    steps = [s["label"] for s in charts["kd_cka_training"]["layout"]["sliders"][0]["steps"]]
    assert steps == ["0", "20"]  # CKA tracked every 100 // 5 steps so far
    names = [tr["name"].split(" (ECE")[0] for tr in charts["kd_reliability"]["data"]]
    assert names == ["teacher", "dkd", "scratch", "kd", "perfect calibration"]
    assert sum(len(_arr(tr["x"])) for tr in charts["kd_embeddings"]["data"]) == 2 * 360

    at.button(key="kd_reset").click().run()
    _ok(at)
    assert _step(at) == 0 and [s.value for s in at.subheader] == LIVE


def test_url_round_trip_and_the_language_task():
    params = {"task": "language", "method": "rkl", "steps": "50", "width": "16", "seed": "3", "k": "5",
              "div": "gaussian", "div_left": "0.3"}
    at = _page(params)
    assert not at.warning, [w.value for w in at.warning]
    assert at.radio(key="kd_task").value == "language" and at.selectbox(key="kd_method_language").value == "rkl"
    assert at.select_slider(key="kd_steps").value == 50 and at.selectbox(key="kd_width_language").value == 16
    assert at.text_input(key="kd_seed").value == "3" and at.select_slider(key="kd_k").value == 5
    sess = at.session_state["kd_session"]
    assert sess.names == ["rkl", "scratch", "kd"] and sess.seed == 3 and sess.total == 50
    assert all(m.student_spec()["dim"] == 16 for m in sess.runs.values())
    div = next(d.value for d in at.dataframe if "divergence" in getattr(d.value, "columns", []))
    direct = divprobe.explore(kind="gaussian", teacher=divprobe.two_gaussians(weights=(0.3, 0.7)), steps=150,
                              restarts=4)
    assert np.allclose(div.select_dtypes("number").to_numpy(dtype=float),
                       direct.select_dtypes("number").to_numpy(dtype=float))
    assert {k: at.query_params[k] for k in params} == params  # the widgets wrote the same link back
    at.text_input(key="kd_seed").set_value("4").run()
    assert at.query_params["seed"] == "4" and at.query_params["method"] == "rkl" and at.query_params["k"] == "5"
    assert at.session_state["kd_session"].seed == 4 and _step(at) == 0  # a new setting: a new, unstarted session

    at.button(key="kd_step").click().run()  # the language task: a step of 5, then the token view
    _ok(at)
    assert _step(at) == 5
    curves = _curves(at)
    assert set(curves) == {"rkl", "scratch", "kd"} and len(curves["rkl"]) == 3  # acc, agree, kl_truth
    table = _charts(at)["kd_dis_examples"]["data"][0]
    assert table["type"] == "table" and table["header"]["values"][0] == "context"
    assert "kd_embeddings" not in _charts(at)

    bad = _page({"task": "nope", "k": "7", "steps": "1e9"})
    assert len(bad.warning) == 1
    note = bad.warning[0].value
    for text in ("task=nope", "one of digits, language", "k=7", "one of 1, 2, 5, 10, 20, 50", "steps=1e9"):
        assert text in note, (text, note)
    assert bad.radio(key="kd_task").value == "digits" and bad.select_slider(key="kd_k").value == 20
    assert _step(bad) == 0
