"""The Language models page (AppTest, headless): its first render shows the shipped measurements (the tables are
recomputed here from ``lab.probes.lm.shipped_results`` and must match), its settings come from the URL, and the
speculative-decoding button recomputes the streams on the page (the same numbers as ``osd_compare`` called here)."""
from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from lab.kd import hacking as H
from lab.probes import lm as P

PAGE = str(ROOT / "app" / "pages" / "7_Language_models.py")
CLAIM, ALL = "16 prompts, batch 16 (claim)", "all 16,384 sequences, batch 32"  # the page's first and last settings


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _run(params: dict) -> tuple[AppTest, float]:
    at = AppTest.from_file(PAGE, default_timeout=240)
    for k, v in params.items():
        at.query_params[k] = v
    t0 = time.perf_counter()
    at.run()
    return at, time.perf_counter() - t0


def _same(shown: pd.DataFrame, expected: pd.DataFrame, cols) -> None:
    assert len(shown) == len(expected), (shown, expected)
    for c in cols:
        a, b = shown[c].to_numpy(), expected[c].to_numpy()
        if a.dtype.kind in "fc":
            np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=1e-9, atol=1e-12, err_msg=c)
        else:
            assert list(a) == list(b), c


def test_first_render_shows_the_shipped_measurements_quickly():
    at, seconds = _run({})
    _ok(at)
    assert seconds < 30, f"first render took {seconds:.1f} s"
    assert [s.value for s in at.subheader] == ["On-policy vs off-policy distillation (gkd)", "Teacher hacking",
                                                "Online speculative decoding (osd)"]
    res = P.shipped_results()
    c = res["gkd_curves"].query(f"setting == '{CLAIM}'").drop(columns="setting")
    gkd_expected = c.sort_values("it").groupby(["lmbda", "seed"]).tail(1).groupby("lmbda")["kl_truth"].mean()
    gkd_shown = at.dataframe[0].value
    np.testing.assert_allclose(gkd_shown["kl_truth_mean"].to_numpy(), gkd_expected.to_numpy(), rtol=1e-9)
    own = res["gkd"].query(f"setting == '{CLAIM}'").groupby("lmbda")["kl_own"].mean()
    np.testing.assert_allclose(gkd_shown["kl_own_mean"].to_numpy(), own.to_numpy(), rtol=1e-9)
    _same(at.dataframe[1].value, H.hacking_summary(res["hacking"]), ["regime", "seed", "golden_rise", "proxy_end"])
    g = res["osd_groups"]
    _same(at.dataframe[2].value, P.osd_summary(g[g["run"].isin(["frozen", "forward_kl"])]),
          ["run", "alpha_before", "alpha_after", "tpc_after"])
    names = {t.get("name") for c in at.get("plotly_chart") if c.key == "lm_osd_fig"
             for t in json.loads(c.proto.spec)["data"]}
    assert {"frozen", "forward_kl"} <= names and "reverse_kl" not in names


def test_url_settings_choose_what_is_shown_and_a_bad_value_is_refused_with_a_note():
    at, _ = _run({"lambdas": ["0", "1"], "setting": ALL, "regimes": ["offline"],
                  "runs": ["frozen", "taid"], "window": "0"})
    _ok(at)
    res = P.shipped_results()
    gkd_shown = at.dataframe[0].value
    assert list(gkd_shown["lmbda"]) == [0.0, 1.0]
    c = res["gkd_curves"].query(f"setting == '{ALL}' and lmbda != 0.5")
    exp = c.sort_values("it").groupby(["lmbda", "seed"]).tail(1).groupby("lmbda")["kl_truth"].mean()
    np.testing.assert_allclose(gkd_shown["kl_truth_mean"].to_numpy(), exp.to_numpy(), rtol=1e-9)
    assert set(at.dataframe[1].value["regime"]) == {"offline"}
    assert list(at.dataframe[2].value["run"]) == ["frozen", "taid"]
    notes = " ".join(str(w.value) for w in list(at.warning) + list(at.caption) + list(at.markdown))
    assert "from 1 to 32" in notes, notes  # window=0 is refused with the allowed range, the default 4 is used


def test_the_osd_button_recomputes_the_streams_on_the_page():
    at, _ = _run({"runs": ["frozen", "forward_kl"]})
    _ok(at)
    at.button(key="lm_run_osd").click().run()
    _ok(at)
    expected = P.osd_compare(["forward_kl"], seeds=(0,), requests=128)["summary"]
    _same(at.dataframe[2].value, expected, ["run", "alpha_before", "alpha_after", "tpc_before", "tpc_after"])
    assert expected.set_index("run").loc["forward_kl", "alpha_after"] > \
        expected.set_index("run").loc["frozen", "alpha_after"]
