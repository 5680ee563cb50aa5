"""app/state.py: a page's widgets bound to the URL's query parameters (AppTest, headless).

A tiny page with one widget of each kind: the URL seeds the widgets, a change rewrites the URL (defaults left
out), a malformed or out-of-range parameter falls back to the default with one note naming it and its allowed
values, a typed value out of range is refused with a note, and a widget that was not drawn for a while comes
back with its last value."""
from __future__ import annotations

import sys

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "app"))
import state  # noqa: E402


def page(app: str):
    import sys

    import streamlit as st

    sys.path.insert(0, app)
    import state

    st.title("state")
    url = state.UrlState("demo")
    d = url.selectbox("Dist", ["a", "b", "c"], key="dist")
    if st.checkbox("Show the rest", value=True, key="show"):
        s = url.integer("Seed", key="seed", default=0, lo=0, hi=500)
        m = url.multiselect("Models", [1, 2, 4], key="models", param="m", default=[1])
        f = url.number("Weight", key="w", default=0.5, lo=0.1, hi=0.9, step=0.1)
        r = url.radio("Kind", ["x", "y"], key="kind")
        t = url.text("Labels", key="labels", default="0 1", check=lambda x: [int(p) for p in x.split()],
                     allowed="integers separated by spaces")
        st.markdown(f"values: {d!r} {s!r} {m!r} {f!r} {r!r} {t!r}")


def _page(params: dict | None = None) -> AppTest:
    at = AppTest.from_function(page, default_timeout=30, args=(str(ROOT / "app"),))
    for k, v in (params or {}).items():
        at.query_params[k] = v
    return at


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _values(at) -> str:
    return [m.value for m in at.markdown if m.value.startswith("values:")][0]


def test_defaults_leave_the_url_empty():
    at = _run(_page())
    assert _values(at) == "values: 'a' 0 [1] 0.5 'x' '0 1'"
    assert dict(at.query_params) == {} and not at.warning


def test_url_round_trip():
    at = _run(_page({"dist": "c", "seed": "7", "m": ["2", "4"], "w": "0.3", "kind": "y", "labels": "5 6"}))
    assert not at.warning, [w.value for w in at.warning]
    assert at.selectbox(key="dist").value == "c" and at.text_input(key="seed").value == "7"
    assert at.multiselect(key="models").value == [2, 4] and at.slider(key="w").value == pytest.approx(0.3)
    assert at.radio(key="kind").value == "y" and at.text_input(key="labels").value == "5 6"
    assert _values(at) == "values: 'c' 7 [2, 4] 0.3 'y' '5 6'"

    # a change rewrites the URL; back to the default, the parameter is left out
    at.text_input(key="seed").set_value("9").run()
    at.selectbox(key="dist").set_value("a").run()
    at.multiselect(key="models").set_value([]).run()
    assert dict(at.query_params) == {"seed": "9", "m": "", "w": "0.3", "kind": "y", "labels": "5 6"}
    # opening that URL reproduces the view (an empty selection included)
    again = _run(_page({k: v for k, v in at.query_params.items()}))
    assert _values(again) == "values: 'a' 9 [] 0.3 'y' '5 6'"


def test_malformed_parameters_fall_back_with_one_note():
    at = _run(_page({"dist": "q", "seed": "1e9", "m": ["2", "8"], "w": "0.35", "kind": "y", "labels": "x"}))
    assert _values(at) == "values: 'a' 0 [1] 0.5 'y' '0 1'"  # the good one (kind) is kept
    assert len(at.warning) == 1
    note = at.warning[0].value
    for text in ("dist=q", "one of a, b, c", "seed=1e9", "an integer from 0 to 500", "m=2,8", "any of 1, 2, 4",
                 "w=0.35", "a number from 0.1 to 0.9 in steps of 0.1", "labels=x", "integers separated by spaces"):
        assert text in note, (text, note)
    assert "kind=" not in note
    assert dict(at.query_params) == {"kind": "y"}  # the bad values are not kept in the link
    # the note stays until its setting is changed: then only the other notes remain
    at.selectbox(key="dist").set_value("b").run()
    assert "dist=q" not in at.warning[0].value and "seed=1e9" in at.warning[0].value


@pytest.mark.parametrize("typed", ["1e9", "2.7", "-5", "abc", "1" + "0" * 20, ""])
def test_typed_numbers_out_of_range_are_refused_visibly(typed):
    at = _run(_page({"seed": "7"}))
    at.text_input(key="seed").set_value(typed).run()
    assert not at.exception
    assert [w.value for w in at.warning] == [
        f"Seed: {typed[:37] + '...' if len(typed) > 40 else typed} is refused; allowed: an integer from 0 to 500. "
        f"Using 7."]
    assert _values(at).split()[2] == "7" and at.query_params["seed"] == "7"  # the last valid value is used and kept
    at.text_input(key="seed").set_value("1e2").run()  # a whole number in any notation is read
    assert not at.warning and _values(at).split()[2] == "100" and at.query_params["seed"] == "100"


def test_a_widget_not_drawn_for_a_while_comes_back_with_its_value():
    at = _run(_page())
    at.text_input(key="seed").set_value("42").run()
    at.radio(key="kind").set_value("y").run()
    at.checkbox(key="show").uncheck().run()
    assert not at.get("text_input")
    at.checkbox(key="show").check().run()
    assert at.text_input(key="seed").value == "42" and at.radio(key="kind").value == "y"
    assert _values(at) == "values: 'a' 42 [1] 0.5 'y' '0 1'"


def test_parse_rules():
    assert state.parse_int("12", 0, 20) == 12 and state.parse_int("1e1", 0, 20) == 10
    assert state.parse_int(3.0, 0, 5) == 3
    for bad in ("2.5", "21", "-1", "nan", "inf", "", "1e400", True, None, [1]):
        with pytest.raises(state.Invalid):
            state.parse_int(bad, 0, 20)
    assert state.parse_float("0.3", 0.1, 0.9, 0.1) == pytest.approx(0.3)
    for bad in ("0.35", "1.0", "x", "nan"):
        with pytest.raises(state.Invalid):
            state.parse_float(bad, 0.1, 0.9, 0.1)
    assert state.allowed_choices(list(range(30))).endswith(", 23, ... (30 in all)")
