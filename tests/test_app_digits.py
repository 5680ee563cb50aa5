"""The Digits page of the Streamlit explorer (AppTest, headless) and the Digits tab of the Gradio demo.

The digits zoo the app sees: the shipped teacher (assets/zoo/digits/teacher) when it exists, else a tiny
untrained stand-in UNet teacher written to a temporary $LAB_CACHE; and the shipped digits students, or, when
there is none, a stand-in consistency student wrapping the teacher's network (same temporary cache). The
stand-ins' model cards hold metrics measured here with ``lab.metrics.images.image_metrics``.
"""
from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import socket
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
                                               "Guidance-weight sweep", "Metrics (from the model cards)"]
    charts = _charts(at)
    expected = {"digits_grid", "digits_x0_view", "digits_guidance_teacher"}
    assert expected | ({"digits_guidance_student"} if "guidance" in digits_zoo else set()) == set(charts)
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
    at.number_input(key="digits_seed").set_value(3).run()
    _ok(at)
    after = _charts(at)
    for key in ("digits_grid", "digits_x0_view", "digits_guidance_teacher"):
        assert _png(after[key]).tolist() != _png(before[key]).tolist(), f"{key} did not change with the seed"
    at.number_input(key="digits_seed").set_value(0).run()
    assert _png(_charts(at)["digits_grid"]).tolist() == _png(before["digits_grid"]).tolist()  # same seed, same images

    at.text_input(key="digits_labels").set_value("7, 7 7").run()
    _ok(at)
    grid = _png(_charts(at)["digits_grid"])
    assert grid.shape[1] == 3 * 9 - 1 and grid.shape[0] == _png(before["digits_grid"]).shape[0]
    at.select_slider(key="digits_teacher_nfe").set_value(8).run()
    _ok(at)
    assert _row_titles(_charts(at)["digits_grid"])[0] == "teacher @ 8 NFE"

    at.text_input(key="digits_labels").set_value("3 12").run()
    assert not at.exception and at.error and "labels must be 1 to 32 digits 0..9" in at.error[0].value
    assert "'3 12'" in at.error[0].value and not at.get("plotly_chart")


def test_digits_page_teacher_only_names_missing_students(digits_zoo, tmp_path, monkeypatch):
    """A zoo with only the teacher: the page says which students are missing and how to build them."""
    assets = tmp_path / "assets"
    (assets / "digits").mkdir(parents=True)
    (assets / "digits" / "teacher").symlink_to(zoo.find(common.DIGITS_TEACHER), target_is_directory=True)
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gradio_digits_tab(digits_zoo):
    from gradio_client import Client

    from lab.probes.images import sample_grid
    from lab.viz.images import tile

    spec = importlib.util.spec_from_file_location("lab_app_demo_digits", ROOT / "app" / "demo.py")
    demo_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_mod)
    assert demo_mod.digits_student_choices() == [*digits_zoo, demo_mod.TEACHER_ONLY]
    demo = demo_mod.build_demo()
    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        student = digits_zoo[0]
        path, text = client.predict(student, 3, 7, 50, api_name="/digits")
        assert os.path.exists(path), path
        img = np.asarray(Image.open(path).convert("L"))
        direct = sample_grid(common.load_digits("teacher"), {student: common.load_digits(student)}, teacher_nfe=50,
                             labels=[3] * 10, n=10, seed=7)
        assert np.array_equal(img, tile(direct["images"]))  # the same noise and label for every row
        assert "teacher @ 50, teacher @ 1, teacher @ 2, teacher @ 4" in text and f"{student} @ 1" in text, text

        other, _ = client.predict(student, 3, 8, 50, api_name="/digits")
        assert np.asarray(Image.open(other).convert("L")).tolist() != img.tolist()  # another seed, other digits
        only, text2 = client.predict(demo_mod.TEACHER_ONLY, 5, 7, 20, api_name="/digits")
        assert np.asarray(Image.open(only)).shape[0] == 4 * 9 - 1 and "teacher @ 20" in text2, text2
        with pytest.raises(Exception, match="nope"):  # refused (by the dropdown or by digits_generate)
            client.predict("nope", 3, 7, 50, api_name="/digits")
    finally:
        demo.close()
