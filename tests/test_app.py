"""The Streamlit explorer, run headless with AppTest (no browser)."""
from __future__ import annotations

import sys

from streamlit.testing.v1 import AppTest

from conftest import APP_DATA, ROOT

sys.path.insert(0, str(ROOT / "app"))
import common  # noqa: E402

GENERATORS = str(ROOT / "app" / "pages" / "1_Generators.py")
HOME = str(ROOT / "app" / "Home.py")


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _charts(at):
    return {c.key: c for c in at.get("plotly_chart")}


def test_home_page():
    at = AppTest.from_file(HOME, default_timeout=60).run()
    _ok(at)
    assert at.title[0].value == "Distillation Lab"
    assert any("Generators" in m.value for m in at.markdown) or at.get("page_link")
    import lab

    shown = list(at.dataframe[0].value.index)
    assert shown == lab.list_methods(), shown  # every registered method is listed
    kd_shown = list(at.dataframe[1].value.index)
    assert kd_shown == lab.kd.list_methods(), kd_shown  # and every knowledge-distillation method


def test_generators_page(app_students):
    at = AppTest.from_file(GENERATORS, default_timeout=60).run()
    _ok(at)
    assert [t.value for t in at.title] == ["Generators"]
    assert "Teacher vs students (same noise)" in [s.value for s in at.subheader]
    assert {"sample_panels", "trajectories"} <= set(_charts(at))
    names = common.distributions()
    assert APP_DATA in names and at.selectbox(key="dist").options == names
    at.selectbox(key="dist").set_value(APP_DATA).run()
    _ok(at)

    # the students the app lists (zoo or run folders) are the ones selected by default and drawn
    picked = at.multiselect(key=f"students_{APP_DATA}")
    assert picked.value, f"no student selected; available: {app_students}"
    assert set(picked.value) <= set(app_students)
    assert not at.info, [i.value for i in at.info]
    table = at.dataframe[0].value
    assert {"model", "nfe", "distance to data (SWD)", "noise floor", "wall-clock s"} <= set(table.columns)
    assert set(table.model) == {"teacher", *picked.value}
    assert sorted(table[table.model != "teacher"].nfe.unique()) == [1, 2, 4]
    assert table[table.model == "teacher"].nfe.tolist() == [50]
    assert table["distance to data (SWD)"].notna().all() and (table["distance to data (SWD)"] > 0).all()

    # changing widgets re-runs without exception and changes what is drawn
    fig_before = _charts(at)["sample_panels"].proto.spec
    at.number_input(key="seed").set_value(3).run()
    _ok(at)
    assert _charts(at)["sample_panels"].proto.spec != fig_before
    at.selectbox(key="traj_nfe").set_value(4).run()
    _ok(at)
    assert at.dataframe[-1].value.set_index("model").loc["student", "nfe"] == 4

    # another distribution (teacher only unless it has students too): still a figure, no exception
    other = [d for d in names if d != APP_DATA]
    if other:
        at.selectbox(key="dist").set_value(other[0]).run()
        _ok(at)
        assert "sample_panels" in _charts(at)
        if not common.students(other[0]):
            assert at.info and "No students are available" in at.info[0].value
            assert set(at.dataframe[0].value.model) == {"teacher"}
