"""The Dataset distillation page of the Streamlit explorer (AppTest, headless): its first view comes from the shipped
sets and shows exactly them (pixels, accuracy table, trajectory error, parameter paths recomputed here); the URL
picks the method and ipc (a bad value is refused with a note); "Distil live" runs the same distillation as a direct
run with the same settings."""
from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pandas as pd
from PIL import Image
from streamlit.testing.v1 import AppTest

import lab.dd
from conftest import ROOT
from lab.dd.experts import load_experts
from lab.probes import dd as probes
from lab.viz.images import tile

PAGE = str(ROOT / "app" / "pages" / "6_Dataset_distillation.py")


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _charts(at) -> dict:
    return {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def _png(fig: dict) -> np.ndarray:
    src = fig["data"][0]["source"]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L"))


def _arr(v) -> np.ndarray:
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v, dtype=float)


def _page(params: dict | None = None) -> tuple[AppTest, float]:
    at = AppTest.from_file(PAGE, default_timeout=120)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    t0 = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t0
    _ok(at)
    return at, seconds


def test_first_view_shows_the_shipped_set_and_its_accuracy():
    at, seconds = _page()
    print(f"\nfirst view (dm, ipc 10): {seconds:.2f} s")
    sc = probes.showcase()
    entry = sc["sets"]["dm/ipc10"]
    charts = _charts(at)
    assert set(charts) == {"dd_set", "dd_frames", "dd_acc"}  # no trajectory views for dm
    assert np.array_equal(_png(charts["dd_set"]), tile(probes.class_grid(entry["images"])))
    frames = entry["frames"].numpy()[:, ::10]
    assert np.array_equal(_png(charts["dd_frames"]), tile(frames))
    table = probes.accuracy_table(sc["card"])
    shown = at.dataframe[0].value
    assert np.allclose(shown["acc"].to_numpy(float), table["acc"].to_numpy(float))
    assert list(shown["method"]) == list(table["method"])
    dm = table[(table.method == "dm") & (table.ipc == "10")]
    text = " ".join(m.value for m in at.markdown)
    assert f"**{entry['acc_seed0']:.3f}**" in text and f"{float(dm['acc'].iloc[0]):.3f}" in text
    assert seconds < 30


def test_mtt_view_shows_the_paths_and_the_trajectory_error_recomputed_here():
    at, seconds = _page({"method": "mtt", "ipc": "1"})
    print(f"\nmtt, ipc 1: {seconds:.2f} s")
    sc = probes.showcase()
    charts = _charts(at)
    assert {"dd_paths", "dd_ate"} <= set(charts)
    s = sc["sets"]["mtt/ipc1"]
    ex = load_experts("sgd", build=False)[0]
    df = probes.parameter_paths(ex, {"mtt": probes.student_path(s["images"], s["labels"], s["lr"], ex, expert=0)})
    student = [t for t in charts["dd_paths"]["data"] if t["name"].startswith("mtt student")][0]
    assert np.allclose(_arr(student["x"]), df[df.path == "mtt"]["pc1"], atol=1e-6)
    ate = {t["name"]: _arr(t["y"]) for t in charts["dd_ate"]["data"]}
    for m in ("mtt", "ftd"):
        rows = pd.DataFrame(sc["card"]["trajectory_error"][f"{m}/ipc1"])
        assert np.allclose(ate[m], rows.groupby("epoch")["loss_gap"].mean().to_numpy())


def test_bad_url_value_is_refused_with_a_note_and_live_run_matches_a_direct_run():
    at, _ = _page({"ipc": "7", "steps": "10", "method": "dm"})
    assert len(at.warning) == 1 and "ipc=7" in at.warning[0].value and "using the default 10" in at.warning[0].value
    at.radio(key="dd_ipc").set_value(1).run()
    at.button(key="dd_live").click().run()
    _ok(at)
    m = lab.dd.get("dm")({"ipc": 1, "steps": 10}, seed=0)
    for _ in lab.distill(m):
        pass
    text = " ".join(x.value for x in at.markdown)
    assert f"Live set after 10 iterations: test accuracy **{m.history[-1]['acc']:.3f}**" in text
    assert np.array_equal(_png(_charts(at)["dd_live_set"]), tile(probes.class_grid(m.images())))
