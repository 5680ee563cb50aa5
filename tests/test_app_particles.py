"""The score-distillation side-by-side section of the Distill live page (AppTest, headless): shown for a particle
method only, it draws what ``lab.probes.particles.score_distillation_side_by_side`` returns (recomputed here), and
a rerun is served from the cache."""
from __future__ import annotations

import base64
import json
import time

import numpy as np
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from lab.probes.particles import SIDE_BY_SIDE, score_distillation_side_by_side

PAGE = str(ROOT / "app" / "pages" / "4_Distill_live.py")


def _arr(v) -> np.ndarray:
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v, dtype=float)


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _run(params: dict) -> tuple[AppTest, float]:
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["live_loop_seconds"] = 0
    for k, v in params.items():
        at.query_params[k] = v
    t0 = time.perf_counter()
    at.run()
    return at, time.perf_counter() - t0


def test_side_by_side_shows_the_probes_four_runs_for_a_particle_method_only():
    at, first = _run({"method": "esd", "seed": "1"})
    _ok(at)
    assert "Score distillation side by side" in [s.value for s in at.subheader]
    chart = next(c for c in at.get("plotly_chart") if c.key == "side_by_side")
    spec = json.loads(chart.proto.spec)
    ends = {t["name"][: -len(": end")]: t for t in spec["data"] if t.get("name", "").endswith(": end")}
    assert list(ends) == list(SIDE_BY_SIDE)

    # the same probe, computed here: the page draws its final particles and shows its metrics
    side = score_distillation_side_by_side("toy2d/8gaussians/analytic", "8gaussians", n_particles=128, steps=300,
                                           seed=1)
    p = side["paths"]
    for m, tr in ends.items():
        last = p[(p.method == m) & (p.step == p.step.max()) & (p.particle < 64)].sort_values("particle")
        np.testing.assert_allclose(_arr(tr["x"]), last.x.to_numpy(), atol=1e-5)
        np.testing.assert_allclose(_arr(tr["y"]), last.y.to_numpy(), atol=1e-5)
    shown = at.dataframe[0].value
    assert list(shown.method) == list(SIDE_BY_SIDE)
    np.testing.assert_allclose(shown.spread.to_numpy(), side["metrics"].spread.round(3).to_numpy(), atol=1e-9)
    np.testing.assert_allclose(shown.fidelity.to_numpy(), side["metrics"].fidelity.round(3).to_numpy(), atol=1e-9)
    # and the two claims it illustrates hold on it: sds collapses, esd and dsd keep a spread
    sp = dict(zip(side["metrics"].method, side["metrics"].spread))
    assert sp["esd"] > 1.5 * sp["sds"] and sp["dsd"] > 1.5 * sp["sds"]

    # a rerun with the same settings is served from the cache (no retraining)
    at.run()
    t0 = time.perf_counter()
    at.run()
    again = time.perf_counter() - t0
    _ok(at)
    print(f"first render {first:.2f} s, cached rerun {again:.2f} s")
    assert again < 0.5 * first

    # another method's field is not a particle force: no side-by-side section (nothing trained for it)
    other, _ = _run({"method": "dmd"})
    _ok(other)
    assert "side_by_side" not in {c.key for c in other.get("plotly_chart")}
    assert "Score distillation side by side" not in [s.value for s in other.subheader]
