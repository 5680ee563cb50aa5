"""The Streamlit explorer, run headless with AppTest (no browser): Home, Generators and Runs, with their URL
parameters (a link reopens the same view; a bad parameter falls back with a note) and the roots the app may read."""
from __future__ import annotations

import base64
import json
import os
import sys

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import APP_DATA, ROOT
from test_runs_index import _run_folder

sys.path.insert(0, str(ROOT / "app"))
import common  # noqa: E402
from lab import probes, zoo  # noqa: E402
from lab.data import toy2d  # noqa: E402
from lab.diffusion.generators import ConsistencyGenerator  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.runs import Run, index  # noqa: E402

GENERATORS = str(ROOT / "app" / "pages" / "1_Generators.py")
RUNS = str(ROOT / "app" / "pages" / "5_Runs.py")
HOME = str(ROOT / "app" / "Home.py")


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _charts(at):
    return {c.key: c for c in at.get("plotly_chart")}


def _spec(chart) -> dict:
    return json.loads(chart.proto.spec)


def _arr(v) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v, dtype=float)


def _page(path: str, params: dict | None = None, timeout: int = 120) -> AppTest:
    at = AppTest.from_file(path, default_timeout=timeout)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    return at.run()


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """A runs root holding two 8gaussians students as run folders (the zoo's consistency student, saved as a run,
    and an untrained one-step student), and a symlink to a run folder outside the root."""
    base = tmp_path_factory.mktemp("app_runs_root")
    root = base / "runs"
    good = zoo.load(f"toy2d/{APP_DATA}/consistency", train_if_missing=False, progress=False)
    _run_folder(root / "zoo-consistency", good, "consistency", seconds=36.4)
    teacher = zoo.load(f"toy2d/{APP_DATA}/teacher", train_if_missing=False, progress=False)
    _run_folder(root / "nested" / "poor", ConsistencyGenerator(teacher.denoiser, native_nfe=(1,)), "dmd")
    _run_folder(base / "outside", good, "consistency")
    os.symlink(base / "outside", root / "escape", target_is_directory=True)
    return root


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
    links = [link.proto.page for link in at.get("page_link")]
    assert "Runs" in links, links


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
    at.text_input(key="seed").set_value("3").run()
    _ok(at)
    assert _charts(at)["sample_panels"].proto.spec != fig_before
    traj = at.selectbox(key=f"traj_student_{APP_DATA}").value
    nfe_box = at.selectbox(key=f"traj_nfe_{traj}")
    native = probes.panel_nfes(common.load_student(*[(s.source, s.ref) for s in common.students(APP_DATA)
                                                     if s.label == traj][0]), (1, 2, 4, 8))
    assert [int(o) for o in nfe_box.options] == list(native)  # only the step counts the student was trained for
    nfe_box.set_value(native[-1]).run()
    _ok(at)
    assert at.dataframe[-1].value.set_index("model").loc["student", "nfe"] == native[-1]
    assert at.query_params["seed"] == "3"

    # quality against NFE and latency: the figures carry the probe's curves for the chosen models
    curves = _charts(at)["quality_nfe"]
    traces = {t["name"]: t for t in _spec(curves)["data"] if t.get("name") in {"teacher", *picked.value}}
    assert set(traces) == {"teacher", *picked.value}
    assert _arr(traces["teacher"]["x"]).tolist() == [1, 2, 4, 8, 16, 32, 50]
    q_teacher = _arr(traces["teacher"]["y"])
    assert q_teacher[-1] < q_teacher[0]  # the teacher at 50 steps is closer to the data than at 1
    # inside the chosen student's method: its own view (not only the generic ones) with a caption
    from lab.probes.inside import OWN_KINDS

    label = at.selectbox(key=f"inside_student_{APP_DATA}").value
    method = common.load_student(*[(s.source, s.ref) for s in common.students(APP_DATA)
                                   if s.label == label][0]).card["recipe"]["method"]
    inside_keys = {k for k in _charts(at) if k.startswith("inside_")}
    assert "inside_field" in inside_keys and len(inside_keys) >= 2, inside_keys
    assert any(c.value.count(".") >= 2 for c in at.caption)  # two-sentence captions
    assert OWN_KINDS[method] in {k.removeprefix("inside_") for k in inside_keys} or \
        any(k.startswith(f"inside_{OWN_KINDS[method]}") for k in inside_keys), (method, inside_keys)

    # another distribution (teacher only unless it has students too): still a figure, no exception
    other = [d for d in names if d != APP_DATA]
    if other:
        at.selectbox(key="dist").set_value(other[0]).run()
        _ok(at)
        assert "sample_panels" in _charts(at)
        if not common.students(other[0]):
            assert at.info and "No students are available" in at.info[0].value
            assert set(at.dataframe[0].value.model) == {"teacher"}


def test_generators_link_reopens_the_view(runs_root, monkeypatch):
    """The settings are read from the URL; changing one rewrites the URL; opening that URL gives the same numbers.
    Run folders under the runs root are students like the zoo's."""
    monkeypatch.setenv("LAB_RUNS", str(runs_root))
    run_label = "zoo-consistency"  # a run folder is listed by its folder name (with its method when not in it)
    params = {"dist": APP_DATA, "students": ["dmd", run_label], "tnfe": "20", "seed": "5", "n": "500",
              "traj": run_label, "traj_nfe": "4"}
    at = _page(GENERATORS, params)
    _ok(at)
    assert not at.warning, [w.value for w in at.warning]
    assert at.selectbox(key="dist").value == APP_DATA
    assert at.multiselect(key=f"students_{APP_DATA}").value == ["dmd", run_label]
    assert at.text_input(key="teacher_nfe").value == "20" and at.text_input(key="seed").value == "5"
    assert at.select_slider(key="n").value == 500
    assert at.selectbox(key=f"traj_student_{APP_DATA}").value == run_label
    assert at.selectbox(key=f"traj_nfe_{run_label}").value == 4

    # the panels are the probe's, from the same noise: the run folder's student is the zoo's, so same points
    table = at.dataframe[0].value
    assert list(zip(table.model, table.nfe)) == [("teacher", 20), ("dmd", 1), (run_label, 1), (run_label, 2),
                                                 (run_label, 4)]
    zoo_student = zoo.load(f"toy2d/{APP_DATA}/consistency", train_if_missing=False, progress=False)
    direct = probes.sample_panels(zoo.load(f"toy2d/{APP_DATA}/teacher", train_if_missing=False, progress=False),
                                  {"consistency": zoo_student}, toy2d.get(APP_DATA), 500, 20, (1, 2, 4), 5)
    ref = direct[direct.model == "consistency"].groupby("nfe").swd.first()
    assert np.allclose(table[table.model == run_label]["distance to data (SWD)"].to_numpy(), ref.to_numpy())
    assert at.dataframe[-1].value.set_index("model").loc["student", "nfe"] == 4

    # a change is written to the URL; the URL reopens the same view with the same numbers
    at.text_input(key="seed").set_value("6").run()
    _ok(at)
    link = dict(at.query_params)  # AppTest's view of the address: one value, or a list for a repeated parameter
    expected = {**params, "seed": "6"}
    if APP_DATA == common.distributions()[0]:
        del expected["dist"]  # a setting at its default is left out of the link
    assert link == expected
    again = _page(GENERATORS, link)
    _ok(again)
    assert not again.warning
    assert again.dataframe[0].value.equals(at.dataframe[0].value.assign(**{"wall-clock s": again.dataframe[0].value[
        "wall-clock s"]}))  # the same panels and distances (wall-clock time aside)


def test_generators_bad_link_falls_back_with_a_note(app_students):
    at = _page(GENERATORS, {"dist": "nope", "tnfe": "1e9", "seed": "2.7", "n": "3", "students": "x"})
    _ok(at)
    assert len(at.warning) == 1
    note = at.warning[0].value
    for text in ("dist=nope", f"one of {', '.join(common.distributions()[:3])}", "tnfe=1e9", "an integer from 1 to 500",
                 "seed=2.7", "an integer from 0 to 2147483647", "n=3", "one of 250, 500, 1000, 2000, 4000"):
        assert text in note, (text, note)
    assert at.selectbox(key="dist").value == common.distributions()[0]
    assert at.text_input(key="teacher_nfe").value == str(common.DEFAULT_TEACHER_NFE)
    assert at.text_input(key="seed").value == "0" and at.select_slider(key="n").value == 1000
    assert dict(at.query_params) == {}  # nothing bad is kept in the link

    # typed out of range: refused next to the widget, the last valid value is used
    at.text_input(key="teacher_nfe").set_value("1e9").run()
    assert not at.exception
    assert any("Teacher NFE: 1e9 is refused; allowed: an integer from 1 to 500" in w.value for w in at.warning)
    assert at.dataframe[0].value.set_index("model").loc["teacher", "nfe"] == common.DEFAULT_TEACHER_NFE


def test_generators_any_number_of_students_keeps_the_panel_size(runs_root, monkeypatch):
    monkeypatch.setenv("LAB_RUNS", str(runs_root))
    labels = [s.label for s in common.students(APP_DATA)]
    assert "zoo-consistency" in labels and "dmd:poor" in labels
    assert not any("escape" in x for x in labels)  # the symlink out of the root is not listed
    at = _page(GENERATORS, {"dist": APP_DATA, "students": labels, "n": "250"})
    _ok(at)
    table = at.dataframe[0].value
    keys = list(zip(table.model, table.nfe))
    rows = [c for k, c in _charts(at).items() if k.startswith("sample_panels")]
    for per_row in (common.PANELS_PER_ROW, 3):
        if per_row != common.PANELS_PER_ROW:
            at.select_slider(key="per_row").set_value(per_row).run()
            _ok(at)
            assert at.query_params["cols"] == str(per_row)
        rows = [c for k, c in _charts(at).items() if k.startswith("sample_panels")]
        assert len(rows) == -(-len(keys) // per_row)
        drawn = []
        for i, chart in enumerate(rows):
            fig = _spec(chart)
            titles = [a["text"].split("<br>")[0] for a in fig["layout"]["annotations"]]
            last = len(keys) - per_row * (len(rows) - 1)  # the last row holds what is left
            assert len(titles) == (per_row if i < len(rows) - 1 else last)
            assert fig["layout"]["height"] == common.PANEL_HEIGHT + (50 if i == 0 else 0)  # a fixed height per row
            drawn += titles
        assert drawn == [f"{m} @ {k} NFE" for m, k in keys]  # every panel once, in order


def test_app_reads_folders_only_under_its_roots(runs_root, monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_RUNS", str(runs_root))
    assert common.load_student("run", str(runs_root / "zoo-consistency")) is not None
    for bad in (runs_root / "escape", runs_root / ".." / "outside", runs_root / "nested" / ".." / ".." / "outside"):
        with pytest.raises(LabError, match="leaves the allowed folders"):
            common.load_student("run", str(bad))
    with pytest.raises(LabError, match="allowed: zoo, run"):
        common.load_student("file", "x")
    # a zoo entry that is a symlink to a folder outside the zoo roots is refused too
    assets = tmp_path / "assets"
    (assets / "toy2d" / APP_DATA).mkdir(parents=True)
    (assets / "toy2d" / APP_DATA / "consistency").symlink_to(runs_root.parent / "outside", target_is_directory=True)
    monkeypatch.setattr(zoo, "ASSETS", assets)
    monkeypatch.setenv("LAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(LabError, match="leaves the allowed folders"):
        common.load_student("zoo", f"toy2d/{APP_DATA}/consistency")


def test_generators_leaves_out_a_damaged_run_folder(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    _run_folder(root / "damaged", zoo.load(f"toy2d/{APP_DATA}/consistency", train_if_missing=False, progress=False),
                "consistency")
    weights = root / "damaged" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    monkeypatch.setenv("LAB_RUNS", str(root))
    at = _page(GENERATORS, {"dist": APP_DATA, "students": ["consistency", "consistency:damaged"]})
    _ok(at)
    assert [w.value.split(" (")[0] for w in at.warning] == ["Left out, cannot be loaded: **consistency:damaged**"]
    assert set(at.dataframe[0].value.model) == {"teacher", "consistency"}


def test_a_live_run_on_drawn_points_appears_on_the_generators_page(tmp_path, monkeypatch):
    """Distill live saves a run on custom points (its points and its teacher in the folder); the Generators page
    lists its data as "custom: <run>", with that teacher and that student, sampled on those points."""
    from lab.runs import live

    root = tmp_path / "runs"
    teacher = zoo.load(f"toy2d/{APP_DATA}/teacher", train_if_missing=False, progress=False)
    pts = live.points_from_cells(list(range(600, 620)) + list(range(1000, 1020)))
    sess = live.LiveSession("consistency", teacher, pts, {"batch": 64}, seed=0, n=64)
    sess.advance(3)
    sess.save(root / "my-drawing")
    monkeypatch.setenv("LAB_RUNS", str(root))
    assert list(common.custom_datasets()) == ["custom: my-drawing"]
    at = _page(GENERATORS, {"dist": "custom: my-drawing"})
    _ok(at)
    assert at.selectbox(key="dist").value == "custom: my-drawing"
    table = at.dataframe[0].value
    assert set(table.model) == {"teacher", "consistency:my-drawing"}
    # the distances are to the drawn points: the same panels sampled by hand against them agree
    direct = probes.sample_panels(teacher, {"s": sess.method.generator()}, pts, 1000, common.DEFAULT_TEACHER_NFE,
                                  (1, 2, 4), 0)
    assert np.allclose(table.set_index("model").loc["teacher", "distance to data (SWD)"],
                       direct[direct.model == "teacher"].swd.iloc[0])
    assert not np.allclose(table.set_index("model").loc["teacher", "distance to data (SWD)"],
                           probes.sample_panels(teacher, {}, toy2d.get(APP_DATA), 1000, common.DEFAULT_TEACHER_NFE,
                                                (1,), 0).swd.iloc[0])  # not the zoo distribution's
    # a run whose data file leaves the runs root is not offered
    outside = tmp_path / "elsewhere.npy"
    np.save(outside, pts.points.numpy())
    cfg = json.loads((root / "my-drawing" / "config.json").read_text())
    (root / "my-drawing" / "config.json").write_text(json.dumps({**cfg, "data": str(outside)}))
    assert common.custom_datasets() == {}


def test_runs_page(runs_root, monkeypatch):
    monkeypatch.setenv("LAB_RUNS", str(runs_root))
    at = _page(RUNS)
    _ok(at)
    assert [t.value for t in at.title] == ["Runs"]
    table = at.dataframe[0].value
    direct = index.runs_table(runs_root)
    assert list(table.name) == list(direct.name) and set(table.name) == {"zoo-consistency", "nested/poor"}
    assert np.allclose(table.best_distance, direct.best_distance)
    assert list(table.columns[:10]) == ["name", "kind", "method", "data", "teacher", "steps", "steps_done", "seconds",
                                        "best_distance", "nfe"]

    # the Pareto plot: every (run, NFE) point measured by lab.runs.index, the front drawn as its own line
    points = index.quality_points(direct, runs_root)
    front = index.pareto(points)
    fig = _spec(_charts(at)["runs_pareto"])
    line = [t for t in fig["data"] if t["name"] == "Pareto front"][0]
    assert np.allclose(_arr(line["y"]), front.sort_values("nfe").distance)
    assert "nested/poor" not in set(front.name)  # dominated by the zoo student at 1 NFE
    assert list(at.dataframe[1].value.name) == list(front.name)

    # the opened run (the newest by default): its metrics.csv and its last snapshot
    opened = at.selectbox(key="runs_open").value
    assert opened == direct.name.iloc[0]
    folder = runs_root / opened
    curves = _spec(_charts(at)["runs_metrics"])["data"]
    assert np.allclose(_arr(curves[0]["y"]), Run(folder).metrics().iloc[:, 2])
    snap = _spec(_charts(at)["runs_snapshot"])
    assert "step 100" in snap["layout"]["title"]["text"]
    assert at.select_slider(key=f"runs_snap_{opened}").value == 100

    # filters and the opened run live in the URL; a link reopens them
    at.multiselect(key="runs_method").set_value(["dmd"]).run()
    _ok(at)
    assert list(at.dataframe[0].value.name) == ["nested/poor"] and at.selectbox(key="runs_open").value == "nested/poor"
    at.select_slider(key="runs_snap_nested/poor").set_value(50).run()
    assert dict(at.query_params) == {"method": "dmd", "snap": "50"}
    again = _page(RUNS, {"method": "dmd", "snap": "50"})
    _ok(again)
    assert again.multiselect(key="runs_method").value == ["dmd"]
    assert "step 50" in _spec(_charts(again)["runs_snapshot"])["layout"]["title"]["text"]

    # a bad link: one note naming the parameters and the allowed values; a path that leaves the root is not a run
    bad = _page(RUNS, {"run": "../outside", "kind": "nope"})
    _ok(bad)
    assert len(bad.warning) == 1 and "run=../outside" in bad.warning[0].value and "kind=nope" in bad.warning[0].value
    assert "one of nested/poor, zoo-consistency" in bad.warning[0].value or \
        "one of zoo-consistency, nested/poor" in bad.warning[0].value
    assert bad.selectbox(key="runs_open").value == direct.name.iloc[0]


def test_runs_page_without_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS", str(tmp_path / "none"))
    at = _page(RUNS)
    _ok(at)
    assert at.info and "No run folder under" in at.info[0].value and "lab distill" in at.info[0].value
