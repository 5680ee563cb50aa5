"""The Knowledge distillation page of the Streamlit explorer (AppTest, headless): it renders every section and
shows the numbers the probes compute for the same runs trained directly (same method, steps, seed: same numbers)."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import lab
import lab.kd
import lab.nets.classifiers
from conftest import ROOT
from lab.probes import kd as probes

PAGE = str(ROOT / "app" / "pages" / "3_Knowledge_distillation.py")
SECTIONS = ["Divergence explorer", "Run comparison: kd vs scratch", "CKA: teacher layers vs student layers",
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


def _compare(at):
    """The run comparison table (the one with best_/last_ metric columns)."""
    tables = [d.value for d in at.dataframe if "best_acc" in d.value.columns]
    assert len(tables) == 1, [list(d.value.columns) for d in at.dataframe]
    return tables[0]


def _direct(steps: int, n_train: int = 0, seed: int = 0) -> dict:
    teacher = lab.kd.load_teacher("kd/digits/teacher")
    out = {}
    for name in ("scratch", "kd"):
        m = lab.kd.get(name)(teacher, "digits", {"steps": steps, "n_train": n_train}, seed=seed)
        for _ in lab.train(m):
            pass
        out[name] = m
    return out


@pytest.fixture(scope="module")
def page():
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    _ok(at)
    return at


def test_kd_page_renders_every_section_with_the_probes_numbers(page):
    at = page
    assert [t.value for t in at.title] == ["Knowledge distillation"]
    assert [s.value for s in at.subheader] == SECTIONS
    charts = _charts(at)
    expected = {"kd_history", "kd_cka_scratch", "kd_cka_kd", "kd_cka_training", "kd_embeddings", "kd_reliability"}
    assert expected <= set(charts)
    assert {"kd_divergence", "kd_divergence_landing"} <= set(charts)
    # the explorer's table: forward KL covers both modes, reverse KL sits on one (as lab.probes.divergence fits them)
    div = next(d.value for d in at.dataframe if "divergence" in getattr(d.value, "columns", []))
    rows = div.set_index("divergence")
    assert not rows.loc["forward_kl", "mode_seeking"] and rows.loc["reverse_kl", "mode_seeking"]

    # the comparison table: the same numbers as the same runs trained here (200 steps, all labels, seed 0)
    runs = _direct(200)
    table = _compare(at)
    ref = probes.compare_runs(runs)
    assert list(table.index) == ["scratch", "kd"] and list(table.method) == ["scratch", "kd"]
    for col in ("best_acc", "last_acc", "last_nll", "last_ece", "last_agree"):
        assert np.allclose(table[col].to_numpy(dtype=float), ref[col].to_numpy(dtype=float)), col
    assert (table.steps == 200).all()

    # the CKA heatmap of the kd student after training = layer_cka on the page's probe batch
    teacher = runs["kd"].teacher
    cka = probes.layer_cka(teacher, runs["kd"].student, probes.probe_batch(runs["kd"].task, 256, 0))
    heat = charts["kd_cka_kd"]["data"][0]
    assert heat["y"] == list(teacher.feature_layers) and heat["x"] == list(runs["kd"].student.feature_layers)
    m = cka.pivot(index="teacher_layer", columns="student_layer", values="cka").loc[heat["y"], heat["x"]]
    assert np.allclose(_arr(heat["z"]), m.to_numpy())
    steps = [s["label"] for s in charts["kd_cka_training"]["layout"]["sliders"][0]["steps"]]
    assert steps == ["0", "40", "80", "120", "160", "200"]

    # history curves: scratch and kd over 10 evaluations; reliability: teacher, scratch, kd (+ the diagonal)
    hist = charts["kd_history"]["data"]
    assert {tr["name"] for tr in hist} == {"scratch", "kd"}
    kd_acc = [tr for tr in hist if tr["name"] == "kd"][0]
    assert np.allclose(_arr(kd_acc["y"]), [r["acc"] for r in runs["kd"].history])
    names = [tr["name"].split(" (ECE")[0] for tr in charts["kd_reliability"]["data"]]
    assert names == ["teacher", "scratch", "kd", "perfect calibration"]
    ece_kd = [tr["name"] for tr in charts["kd_reliability"]["data"] if tr["name"].startswith("kd ")][0]
    assert f"ECE {runs['kd'].history[-1]['ece']:.3f}" in ece_kd
    emb = charts["kd_embeddings"]
    assert len(emb["data"]) == 20 and sum(len(_arr(tr["x"])) for tr in emb["data"]) == 2 * 360  # 10 labels x 2 panels


def test_kd_page_widgets_retrain_and_redraw(page):
    at = page
    at.select_slider(key="kd_steps").set_value(50).run()
    _ok(at)
    table = _compare(at)
    assert (table.steps == 50).all()
    ref = probes.compare_runs(_direct(50))
    assert np.allclose(table.last_acc.to_numpy(dtype=float), ref.last_acc.to_numpy(dtype=float))
    at.selectbox(key="kd_emb_teacher_layer").set_value("conv1").run()
    _ok(at)
    assert _charts(at)["kd_embeddings"]["layout"]["annotations"][0]["text"] == "teacher · conv1"
    at.selectbox(key="kd_n_train").set_value(200).run()
    _ok(at)
    assert "with 200 labelled digits" in " ".join(c.value for c in at.caption)
    assert not np.allclose(_compare(at).last_acc.to_numpy(dtype=float),
                           ref.last_acc.to_numpy(dtype=float))  # fewer labels: other runs, other numbers
    # a method whose benchmark names its own student (attention transfer: a CNN): both runs train that student
    bench_students = [m for m in at.selectbox(key="kd_method").options
                      if lab.kd.get(m).bench_config.get("student") and lab.kd.get(m).bench_task == "digits"]
    if bench_students:
        name = bench_students[0]
        at.selectbox(key="kd_method").set_value(name).run()
        _ok(at)
        assert list(_compare(at).index) == ["scratch", name]
        spec = lab.kd.get(name).bench_config["student"]
        assert f"the student of {name}'s benchmark" in " ".join(c.value for c in at.caption)
        heat = _charts(at)[f"kd_cka_{name}"]["data"][0]
        assert heat["x"] == list(lab.nets.classifiers.build_classifier(spec).feature_layers)


def test_kd_page_link_reopens_the_comparison(page):
    """Every setting lives in the URL: a link opens the same comparison (same runs, same numbers); a bad
    parameter falls back to the default with one note naming it and the allowed values."""
    params = {"steps": "50", "n_train": "200", "div": "gaussian", "div_left": "0.3", "emb_teacher": "conv1",
              "emb_student": "scratch"}
    at = AppTest.from_file(PAGE, default_timeout=180)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    _ok(at)
    assert not at.warning, [w.value for w in at.warning]
    assert at.selectbox(key="kd_method").value == "kd" and at.select_slider(key="kd_steps").value == 50
    assert at.selectbox(key="kd_n_train").value == 200 and at.radio(key="kd_div_kind").value == "gaussian"
    assert at.slider(key="kd_div_left").value == pytest.approx(0.3)
    assert at.selectbox(key="kd_emb_teacher_layer").value == "conv1"
    assert at.selectbox(key="kd_emb_student").value == "scratch"
    table = _compare(at)
    ref = probes.compare_runs(_direct(50, n_train=200))
    assert (table.steps == 50).all() and np.allclose(table.last_acc.to_numpy(dtype=float),
                                                      ref.last_acc.to_numpy(dtype=float))
    assert _charts(at)["kd_embeddings"]["layout"]["annotations"][0]["text"] == "teacher · conv1"
    div = next(d.value for d in at.dataframe if "divergence" in getattr(d.value, "columns", []))
    from lab.probes import divergence as divprobe

    direct = divprobe.explore(kind="gaussian", teacher=divprobe.two_gaussians(weights=(0.3, 0.7)), steps=150,
                              restarts=4)
    assert np.allclose(div.select_dtypes("number").to_numpy(dtype=float),
                       direct.select_dtypes("number").to_numpy(dtype=float))
    at.text_input(key="kd_seed").set_value("1").run()
    assert at.query_params["seed"] == "1" and at.query_params["steps"] == "50"

    bad = AppTest.from_file(PAGE, default_timeout=180)
    for k, v in {"method": "nope", "steps": "7", "div_left": "2", "seed": "-1"}.items():
        bad.query_params[k] = v
    bad.run()
    _ok(bad)
    assert len(bad.warning) == 1
    note = bad.warning[0].value
    for text in ("method=nope", "steps=7", "one of 50, 100, 200, 300, 500, 1000", "div_left=2",
                 "a number from 0.1 to 0.9 in steps of 0.1", "seed=-1", "an integer from 0 to 2147483647"):
        assert text in note, (text, note)
    assert bad.select_slider(key="kd_steps").value == 200 and bad.selectbox(key="kd_method").value == "kd"
