"""The Digits page of the Streamlit explorer (AppTest, headless): its sections, run folders as students, its URL
parameters. (The Gradio demo's digits models are tested in tests/test_gradio.py.)

The digits zoo the app sees: the shipped teacher (assets/zoo/digits/teacher) when it exists, else a tiny
untrained stand-in UNet teacher written to a temporary $LAB_CACHE; and the shipped digits students, or, when
there is none, a stand-in consistency student wrapping the teacher's network (same temporary cache). The
stand-ins' model cards hold metrics measured here with ``lab.metrics.images.image_metrics``.
"""
from __future__ import annotations

import base64
import io
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "app"))
import common  # noqa: E402
from lab import zoo  # noqa: E402

PAGE = str(ROOT / "app" / "pages" / "2_Digits.py")
CARD_NFE = (1, 2, 4, 8)


def _tiny_teacher():
    from lab.diffusion import Denoiser, FlowGenerator
    from lab.nets import build_net

    torch.manual_seed(0)
    net = build_net({"type": "unet", "channels": 1, "size": 8, "block_out_channels": [8, 16], "norm_num_groups": 8,
                     "n_classes": 10})
    with torch.no_grad():  # the wrapper starts label embeddings near zero: make the labels visible
        net.y_emb.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(1))
    return FlowGenerator(Denoiser(net.eval(), "linear", "v"), "euler")


def _card(entry: str, gen, n: int = 200) -> dict:
    from lab.metrics.images import image_metrics, noise_floor

    y = torch.arange(n) % 10
    metrics = {}
    for k in CARD_NFE if not gen.native_nfe else gen.native_nfe:
        m = image_metrics(gen.sample(n, nfe=k, seed=1, y=y).x, y)
        metrics.update({f"{key}@{k}": float(m[key]) for key in common.DIGITS_METRICS})
    floor = noise_floor("digits", n=n)
    metrics.update({f"{key}_noise_floor": float(floor[key]) for key in ("fd", "kid", "precision", "recall")})
    return {"entry": entry, "data": "digits", "recipe": {"trainer": "test stand-in"}, "train_seconds": 0.0,
            "metrics": metrics}


@pytest.fixture(scope="module")
def digits_zoo(tmp_path_factory):
    """Points $LAB_CACHE at a temporary folder holding whatever stand-ins are needed; yields the present students."""
    cache = tmp_path_factory.mktemp("digits_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAB_CACHE", str(cache))
        if zoo.find(common.DIGITS_TEACHER) is None:  # no shipped teacher yet: a tiny untrained one
            t = _tiny_teacher()
            t.save(zoo.cache_dir() / common.DIGITS_TEACHER, _card(common.DIGITS_TEACHER, t))
        if not common.digits_students():
            from lab.diffusion import ConsistencyGenerator

            s = ConsistencyGenerator(common.load_digits("teacher").denoiser, native_nfe=(1, 2, 4))
            s.save(zoo.cache_dir() / "digits/consistency", _card("digits/consistency", s))
        present = common.digits_students()
        assert present and common.digits_teacher_present()
        yield present


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _charts(at) -> dict:
    return {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def _arr(v) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v, dtype=float)


def _row_titles(fig: dict) -> list[str]:
    return list(fig["layout"]["yaxis"]["ticktext"])


def _png(fig: dict, i: int = 0) -> np.ndarray:
    src = fig["data"][i]["source"]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L"))


def _page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    _ok(at)
    return at


def test_digits_page_renders_every_section(digits_zoo):
    from lab.probes.images import sample_grid
    from lab.viz.images import tile

    at = _page()
    assert [t.value for t in at.title] == ["Digits"]
    assert [s.value for s in at.subheader] == ["Few-step samples (same noise and labels)",
                                               "Diffusion targets: the x0 prediction at every step",
                                               "Guidance-weight sweep", "Inside the student's method",
                                               "Quality against NFE and against latency",
                                               "Metrics (from the model cards)"]
    charts = _charts(at)
    expected = {"digits_grid", "digits_x0_view", "digits_guidance_teacher"}
    inside = {k for k in charts if k.startswith("digits_inside_")}
    assert {"digits_inside_cka", "digits_inside_x0"} <= inside, inside  # every digits student: CKA and its x0 view
    assert expected | ({"digits_guidance_student"} if "guidance" in digits_zoo else set()) == set(charts) - inside
    chosen = at.multiselect(key="digits_students").value
    assert chosen == digits_zoo  # every present student is selected by default

    # (1) the grid: teacher at 50 and 1/2/4 NFE, then each student at its native NFEs; pixels = the probe's
    rows = _row_titles(charts["digits_grid"])
    assert rows[:4] == ["teacher @ 50 NFE", "teacher @ 1 NFE", "teacher @ 2 NFE", "teacher @ 4 NFE"]
    assert {r.split(" @ ")[0] for r in rows[4:]} == set(chosen)
    gens = {s: common.load_digits(s) for s in chosen}
    direct = sample_grid(common.load_digits("teacher"), gens, teacher_nfe=50, labels=list(range(10)), n=10, seed=0)
    assert [f"{r['model']} @ {r['nfe']} NFE" for r in direct["rows"]] == rows
    assert np.array_equal(_png(charts["digits_grid"]), tile(direct["images"]))

    # (2) the x0 view: the teacher and the first chosen student; (3) guidance rows are the default weights
    titles = [a["text"] for a in charts["digits_x0_view"]["layout"]["annotations"] if "NFE" in a["text"]]
    assert titles[0].startswith("teacher: flow @ 8 NFE") and titles[1].startswith(f"{chosen[0]}:"), titles
    assert _row_titles(charts["digits_guidance_teacher"]) == ["w = 0 (unconditional)", "w = 1 (conditional)", "w = 2",
                                                               "w = 4"]

    # (4) the metrics table shows the cards' numbers, the noise floor last
    table = at.dataframe[0].value
    assert list(table.model.unique()) == ["teacher", *chosen, "noise floor"]
    for name in ["teacher", *chosen]:
        m = zoo.card(common.digits_entry(name))["metrics"]
        for r in table[table.model == name].itertuples():
            assert r.fd == m[f"fd@{r.nfe}"] and r.kid == m[f"kid@{r.nfe}"] and r.accuracy == m[f"accuracy@{r.nfe}"]
    floor, card = table[table.model == "noise floor"].iloc[0], zoo.card(common.DIGITS_TEACHER)["metrics"]
    assert floor.fd == card["fd_noise_floor"] and floor.kid == card["kid_noise_floor"]

    # the info names exactly the students that are missing
    missing = [m for m in zoo.image_student_methods() if m not in digits_zoo]
    infos = [i.value for i in at.info]
    if missing:
        assert len(infos) == 1 and all(m in infos[0] for m in missing) and "bench/digits.py --zoo" in infos[0], infos
        assert not any(m in infos[0] for m in digits_zoo), infos
    else:
        assert not infos


def test_digits_page_widgets_change_the_figures(digits_zoo):
    at = _page()
    before = _charts(at)
    at.text_input(key="digits_seed").set_value("3").run()
    _ok(at)
    after = _charts(at)
    for key in ("digits_grid", "digits_x0_view", "digits_guidance_teacher"):
        assert _png(after[key]).tolist() != _png(before[key]).tolist(), f"{key} did not change with the seed"
    at.text_input(key="digits_seed").set_value("0").run()
    assert _png(_charts(at)["digits_grid"]).tolist() == _png(before["digits_grid"]).tolist()  # same seed, same images

    at.text_input(key="digits_labels").set_value("7, 7 7").run()
    _ok(at)
    grid = _png(_charts(at)["digits_grid"])
    assert grid.shape[1] == 3 * 9 - 1 and grid.shape[0] == _png(before["digits_grid"]).shape[0]
    at.select_slider(key="digits_teacher_nfe").set_value(8).run()
    _ok(at)
    assert _row_titles(_charts(at)["digits_grid"])[0] == "teacher @ 8 NFE"

    # a bad label text is refused next to the widget; the page keeps drawing the last valid labels and keeps every
    # other control (the x0 and guidance settings are not reset by the fix)
    at.selectbox(key="digits_view_teacher_nfe").set_value(16).run()
    at.multiselect(key="digits_ws").set_value([0.0, 6.0]).run()
    at.text_input(key="digits_labels").set_value("3 12").run()
    assert not at.exception and not at.error
    assert [w.value for w in at.warning] == ["Labels (one sample per label): 3 12 is refused; allowed: 1 to 32 digits "
                                             "0..9 separated by spaces or commas. Using 7, 7 7."]
    assert _png(_charts(at)["digits_grid"]).shape[1] == 3 * 9 - 1  # still the three 7s
    at.text_input(key="digits_labels").set_value("3 1").run()
    _ok(at)
    assert not at.warning and _png(_charts(at)["digits_grid"]).shape[1] == 2 * 9 - 1
    assert at.selectbox(key="digits_view_teacher_nfe").value == 16
    assert at.multiselect(key="digits_ws").value == [0.0, 6.0]
    assert _row_titles(_charts(at)["digits_guidance_teacher"]) == ["w = 0 (unconditional)", "w = 6"]


@pytest.fixture
def digits_runs(digits_zoo, tmp_path, monkeypatch):
    """A runs root with one digits run folder (a two-step consistency student around the teacher's network)."""
    from lab.diffusion import ConsistencyGenerator
    from lab.runs import Run

    root = tmp_path / "runs"
    folder = root / "my-digits"
    with Run.create(folder, {"kind": "distill", "method": "consistency", "teacher": common.DIGITS_TEACHER,
                             "data": "digits", "steps": 10, "config": {"steps": 10}}):
        ConsistencyGenerator(common.load_digits("teacher").denoiser, native_nfe=(1, 2)).save(
            folder, {"data": "digits", "recipe": {"method": "consistency"}, "train_seconds": 3.5})
    monkeypatch.setenv("LAB_RUNS", str(root))
    return "consistency:my-digits"


def test_digits_page_shows_run_folders_and_reopens_a_link(digits_runs, digits_zoo):
    """A digits run folder is a student like the zoo's; the settings live in the URL and a link reopens the view."""
    from lab.probes.images import sample_grid
    from lab.viz.images import tile

    label = digits_runs
    at = _page()
    students = at.multiselect(key="digits_students")
    assert students.options == [*digits_zoo, label] and students.value == digits_zoo  # runs listed, zoo by default

    params = {"students": [digits_zoo[0], label], "tnfe": "20", "seed": "4", "labels": "1 2 3", "view": label,
              "view_nfe": "2", "w": ["1.0", "3.0"]}
    at = AppTest.from_file(PAGE, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    _ok(at)
    assert not at.warning, [w.value for w in at.warning]
    assert at.multiselect(key="digits_students").value == [digits_zoo[0], label]
    assert at.select_slider(key="digits_teacher_nfe").value == 20 and at.text_input(key="digits_seed").value == "4"
    assert at.text_input(key="digits_labels").value == "1 2 3"
    assert at.selectbox(key="digits_view_student").value == label
    view_nfe = at.selectbox(key=f"digits_view_nfe_{label}")
    assert view_nfe.value == 2 and [int(o) for o in view_nfe.options] == [1, 2]  # only its trained step counts
    assert at.multiselect(key="digits_ws").value == [1.0, 3.0]

    # the grid is the probe's, with the run folder's student under its label
    charts = _charts(at)
    run_gen = common.load_student("run", str(common.runs_root() / "my-digits"))
    gens = {digits_zoo[0]: common.load_digits(digits_zoo[0]), label: run_gen}
    direct = sample_grid(common.load_digits("teacher"), gens, teacher_nfe=20, labels=[1, 2, 3], n=3, seed=4)
    assert _row_titles(charts["digits_grid"]) == [f"{r['model']} @ {r['nfe']} NFE" for r in direct["rows"]]
    assert np.array_equal(_png(charts["digits_grid"]), tile(direct["images"]))
    assert [a["text"] for a in charts["digits_x0_view"]["layout"]["annotations"] if "NFE" in a["text"]][1].startswith(
        f"{label}: consistency @ 2 NFE")
    table = at.dataframe[0].value
    assert table[table.model == label]["train s"].tolist() == [3.5]  # a run's card: its training time, no metrics

    # a change is written to the URL; the bad parameters of another link fall back with one note
    at.text_input(key="digits_seed").set_value("5").run()
    assert at.query_params["seed"] == "5" and at.query_params["view"] == label
    bad = AppTest.from_file(PAGE, default_timeout=60)
    for k, v in {"labels": "3 12", "tnfe": "9", "students": ["nope"], "w": "7"}.items():
        bad.query_params[k] = v
    bad.run()
    _ok(bad)
    assert len(bad.warning) == 1
    note = bad.warning[0].value
    for text in ("labels=3 12", "1 to 32 digits 0..9", "tnfe=9", "one of 8, 10, 16, 20, 25, 32, 40, 50",
                 "students=nope", f"any of {', '.join(digits_zoo)}", "w=7", "any of 0.0, 0.5, 1.0"):
        assert text in note, (text, note)
    assert bad.text_input(key="digits_labels").value == "0 1 2 3 4 5 6 7 8 9"


def test_digits_page_teacher_only_names_missing_students(digits_zoo, tmp_path, monkeypatch):
    """A zoo with only the teacher: the page says which students are missing and how to build them."""
    import shutil

    assets = tmp_path / "assets"
    (assets / "digits").mkdir(parents=True)
    # a copy (the app refuses a zoo entry that is a symlink leaving the zoo roots)
    shutil.copytree(zoo.find(common.DIGITS_TEACHER), assets / "digits" / "teacher")
    monkeypatch.setattr(zoo, "ASSETS", assets)
    monkeypatch.setenv("LAB_CACHE", str(tmp_path / "empty"))
    assert common.digits_teacher_present() and common.digits_students() == []

    at = _page()
    info = " ".join(i.value for i in at.info)
    assert all(m in info for m in zoo.image_student_methods()), info
    assert "python bench/digits.py --zoo" in info and "lab zoo build" in info, info
    charts = _charts(at)
    assert set(charts) == {"digits_grid", "digits_x0_view", "digits_guidance_teacher"}
    assert {r.split(" @ ")[0] for r in _row_titles(charts["digits_grid"])} == {"teacher"}
    assert list(at.dataframe[0].value.model.unique()) == ["teacher", "noise floor"]
    assert any("No guidance student" in c.value for c in at.caption)

    monkeypatch.setattr(zoo, "ASSETS", tmp_path / "nothing")  # no teacher at all: an error naming how to build it
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception and at.error and "No digits teacher" in at.error[0].value
    assert "bench/digits.py --zoo" in at.error[0].value


def test_digits_quality_curves_on_demand(digits_zoo):
    """Off by default (a slow measurement on a CPU); on, the two figures carry FD-digits of the teacher at 1 to 16
    steps and of each chosen student, and the teacher improves with steps."""
    at = _page()
    assert not {"digits_quality_nfe", "digits_quality_latency"} & set(_charts(at))
    at.radio(key="digits_curves").set_value("on").run()
    _ok(at)
    charts = _charts(at)
    chosen = at.multiselect(key="digits_students").value
    traces = {t["name"]: t for t in charts["digits_quality_nfe"]["data"] if t.get("name") in {"teacher", *chosen}}
    assert set(traces) == {"teacher", *chosen}
    x, y = _arr(traces["teacher"]["x"]), _arr(traces["teacher"]["y"])
    assert x.tolist() == [1, 2, 4, 8, 16]
    assert y[-1] < y[0]
    assert at.query_params["curves"] == "on"
    lat = {t["name"] for t in charts["digits_quality_latency"]["data"]}
    assert {"teacher", *chosen} <= lat
