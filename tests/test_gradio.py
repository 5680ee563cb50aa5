"""The Gradio demo: its probe (lab.probes.demo) on zoo models, then the server on 127.0.0.1 called through
gradio_client (the samples as data, the same seed giving the same samples, one-line errors naming the allowed
values)."""
from __future__ import annotations

import importlib.util
import os
import socket
import statistics

import numpy as np
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

from conftest import ROOT
from lab import zoo
from lab.diffusion.generators import make_noise
from lab.errors import LabError
from lab.probes import demo as probe

STUDENT = "toy2d/8gaussians/consistency"


def _load(entry):
    return zoo.load(entry, train_if_missing=False, progress=False)


@pytest.fixture(scope="module")
def pair():
    return _load("toy2d/8gaussians/teacher"), _load(STUDENT)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """A runs root holding one tiny distilled run folder; $LAB_RUNS points at it for this module."""
    from lab.runs.recipes import distill_run

    root = tmp_path_factory.mktemp("demo_runs")
    distill_run("consistency", "toy2d/8gaussians/teacher", root / "tiny-consistency", steps=5, progress=False)
    old = os.environ.get("LAB_RUNS")
    os.environ["LAB_RUNS"] = str(root)
    yield root
    if old is None:
        os.environ.pop("LAB_RUNS", None)
    else:
        os.environ["LAB_RUNS"] = old


# ------------------------------------------------------------------------------------------------ the probe
def test_same_noise_for_teacher_and_student(pair):
    teacher, student = pair
    r = probe.side_by_side(teacher, student, teacher_nfe=10, student_nfe=2, n=64, seed=5, repeats=2)
    z = make_noise(64, (2,), 5)
    assert torch.equal(torch.as_tensor(r["noise"]), z)
    t, s = r["models"]
    assert (t["model"], s["model"]) == ("teacher", "student")
    assert np.array_equal(t["samples"], teacher.sample(z=z, nfe=10, seed=5).x.numpy())
    assert np.array_equal(s["samples"], student.sample(z=z, nfe=2, seed=5).x.numpy())
    # the teacher as its own "student" at the same NFE: identical samples, so both start from the same noise
    r2 = probe.side_by_side(teacher, teacher, teacher_nfe=10, student_nfe=10, n=64, seed=5, repeats=1)
    assert np.array_equal(r2["models"][0]["samples"], r2["models"][1]["samples"])
    # another seed, other noise and other samples
    r3 = probe.side_by_side(teacher, student, teacher_nfe=10, student_nfe=2, n=64, seed=6, repeats=1)
    assert not np.array_equal(r3["models"][1]["samples"], s["samples"])


def test_timing_is_a_warm_median(pair):
    teacher, student = pair
    r = probe.side_by_side(teacher, student, teacher_nfe=10, student_nfe=1, n=32, seed=0, repeats=4)
    for m in r["models"]:
        assert len(m["times"]) == 4 and all(t > 0 for t in m["times"])
        assert m["seconds"] > 0 and m["seconds"] == statistics.median(m["times"])
    # a budget stops after three timed calls (a zero budget is always spent), never before
    z = make_noise(16, (2,), 0)
    _, med, times = probe.timed_sample(teacher, z, 4, repeats=9, budget=0.0)
    assert len(times) == 3 and med == statistics.median(times)
    _, _, times = probe.timed_sample(teacher, z, 4, repeats=2, budget=0.0)
    assert len(times) == 2
    with pytest.raises(LabError, match="repeats"):
        probe.timed_sample(teacher, z, 4, repeats=0)


def test_nfe_is_honoured(pair):
    teacher, student = pair
    opts = probe.model_options(teacher, student)
    assert opts["native_nfe"] == (1, 2, 4) and opts["classes"] == 0 and not opts["guided"]
    for k in (1, 2, 4):
        r = probe.side_by_side(teacher, student, teacher_nfe=7, student_nfe=k, n=16, repeats=1)
        assert [m["nfe"] for m in r["models"]] == [7, k] and not r["models"][1]["off_grid"]
    # consistency@3 used to come back at NFE 1: now refused, or run at 3 and flagged when asked off the grid
    with pytest.raises(LabError, match="allowed: 1, 2, 4"):
        probe.side_by_side(teacher, student, student_nfe=3, n=16, repeats=1)
    r = probe.side_by_side(teacher, student, teacher_nfe=7, student_nfe=3, n=16, repeats=1, off_grid=True)
    assert r["models"][1]["nfe"] == 3 and r["models"][1]["off_grid"]
    # a one-step sampler asked off its grid does not pretend: a LabError, not NFE 1 under another name
    msd = _load("toy2d/8gaussians/msd")
    with pytest.raises(LabError, match=r"cannot run at 3 NFE \(it ran 1\)"):
        probe.side_by_side(_load("toy2d/8gaussians/analytic"), msd, student_nfe=3, n=16, repeats=1, off_grid=True)
    # the distance to data is there for 2D data, and finite
    r = probe.side_by_side(teacher, student, teacher_nfe=7, student_nfe=1, n=200, repeats=1, data="8gaussians")
    assert all(np.isfinite(m["swd"]) and m["swd"] > 0 and m["swd_floor"] > 0 for m in r["models"])


def test_digits_classes_and_guidance():
    teacher, student = _load("digits/teacher"), _load("digits/guidance")
    opts = probe.model_options(teacher, student)
    assert opts["guided"] and opts["teacher_guided"] and opts["classes"] == 10 and opts["w"] == student.w
    r = probe.side_by_side(teacher, student, teacher_nfe=4, student_nfe=1, n=4, seed=1, label=3, repeats=1)
    assert r["labels"].tolist() == [3, 3, 3, 3] and r["w"] == student.w
    assert all(m["samples"].shape == (4, 1, 8, 8) for m in r["models"])
    r = probe.side_by_side(teacher, student, teacher_nfe=4, student_nfe=1, n=12, seed=1, repeats=1, w=0.0)
    assert r["labels"].tolist() == [i % 10 for i in range(12)] and r["w"] == 0.0
    with pytest.raises(LabError, match="teacher_nfe must be even"):
        probe.side_by_side(teacher, student, teacher_nfe=5, student_nfe=1, n=2, repeats=1)
    with pytest.raises(LabError, match=r"label must be an integer in 0\.\.9"):
        probe.side_by_side(teacher, student, teacher_nfe=4, student_nfe=1, n=2, label=10, repeats=1)
    with pytest.raises(LabError, match="takes no guidance weight"):
        probe.side_by_side(teacher, _load("digits/dmd"), teacher_nfe=4, n=2, w=1.0, repeats=1)
    js = probe.to_json(r, "digits/guidance", "digits", "digits/teacher")
    assert np.asarray(probe.image_rows(js)).shape == (2, 12, 1, 8, 8)


def test_demo_models_lists_zoo_and_runs(runs_root):
    models = {m.label: m for m in probe.demo_models(runs_root)}
    zoo_students = [e for d in zoo.teachers() for e in zoo.students(d)]
    zoo_students += [e for e in ("digits/" + m for m in zoo.image_student_methods()) if zoo.find(e)]
    assert zoo_students and set(zoo_students) <= set(models)
    run = models["run:tiny-consistency"]
    assert (run.source, run.data, run.teacher) == ("run", "toy2d:8gaussians", "toy2d/8gaussians/teacher")
    assert models["toy2d/8gaussians/guidance"].teacher == "toy2d/8gaussians/analytic"  # its recipe's teacher
    teacher, student = run.load()
    assert probe.model_options(teacher, student)["native_nfe"] == (1, 2, 4)


# ------------------------------------------------------------------------------------------------ the server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_demo_module():
    spec = importlib.util.spec_from_file_location("lab_app_demo", ROOT / "app" / "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gradio_api(runs_root):
    demo_mod = _load_demo_module()
    demo = demo_mod.build_demo()
    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        api = client.view_api(return_format="dict", print_info=False)
        assert list(api["named_endpoints"]) == ["/sample"], list(api["named_endpoints"])  # the rest is private
        assert [p["parameter_name"] for p in api["named_endpoints"]["/sample"]["parameters"]] == [
            "model", "teacher_nfe", "student_nfe", "seed", "label", "w", "n", "off_grid"]

        def call(*args, **kw):
            return client.predict(*args, api_name="/sample", **kw)

        r = call(STUDENT, 20, 2, 7, "any", None, 300, False)
        assert (r["model"], r["data"], r["teacher"], r["seed"]) == (STUDENT, "toy2d:8gaussians",
                                                                    "toy2d/8gaussians/teacher", 7)
        assert [(s["model"], s["nfe"]) for s in r["samples"]] == [("teacher", 20), ("student", 2)]
        for s in r["samples"]:
            p = np.asarray(s["points"])
            assert p.shape == (300, 2) and np.isfinite(p).all()
            assert s["seconds"] > 0 and len(s["times"]) >= 3 and s["swd"] > 0 and s["swd_floor"] > 0
        again = call(STUDENT, 20, 2, 7, "any", None, 300, False)
        assert [s["points"] for s in again["samples"]] == [s["points"] for s in r["samples"]]
        other = call(STUDENT, 20, 2, 8, "any", None, 300, False)
        assert other["samples"][1]["points"] != r["samples"][1]["points"]

        # keyword arguments, the default NFE (the smallest trained), a run folder, digits images with a label
        r = client.predict(model="run:tiny-consistency", seed=1, n=50, api_name="/sample")
        assert [s["nfe"] for s in r["samples"]] == [50, 1] and np.asarray(r["samples"][1]["points"]).shape == (50, 2)
        r = call("digits/consistency", 4, 4, 3, "7", None, 5, False)
        assert r["labels"] == [7] * 5 and [s["nfe"] for s in r["samples"]] == [4, 4]
        for s in r["samples"]:
            im = np.asarray(s["images"])
            assert im.shape == (5, 1, 8, 8) and np.isfinite(im).all() and s["swd"] is None
        r = call(STUDENT, 20, 3, 7, "any", None, 50, True)
        assert r["samples"][1]["nfe"] == 3 and r["samples"][1]["off_grid"]

        # bad input: one line naming the allowed values
        bad = [((STUDENT, 20, 2, 10**20), "seed must be a whole number in 0..2147483647, got 100000000000000000000"),
               ((STUDENT, 20, 2, -5), "seed must be a whole number in 0..2147483647, got -5"),
               ((STUDENT, 20, 2, 2.7), "seed must be a whole number in 0..2147483647, got 2.7"),
               ((STUDENT, 20, 3, 0), "student_nfe must be one of 1, 2, 4"),
               ((STUDENT, 0, 2, 0), "teacher_nfe must be a whole number in 1..200, got 0"),
               (("nope", 20, 2, 0), f"unknown model 'nope'; available: {STUDENT}"),
               ((STUDENT, 20, 2, 0, "3"), "label must be 'any'"),
               (("digits/guidance", 49, 1, 0), "teacher_nfe must be an even whole number in 2..200"),
               (("digits/guidance", 50, 1, 0, "any", 9.0), "w must be a number in 0..4")]
        for args, message in bad:
            with pytest.raises(AppError) as err:
                call(*args)
            text = str(err.value)
            assert message in text and "\n" not in text.strip(), (args, text)
    finally:
        demo.close()
