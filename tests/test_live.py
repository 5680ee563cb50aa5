"""Live distillation (issue 14, section 1): the session (lab.runs.live), the method's own field (lab.probes.fields)
and the live figures (lab.viz.live), asserted on the data behind them."""
from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import lab
from lab.data import toy2d
from lab.errors import LabError
from lab.config import describe_field
from lab.probes import fields
from lab.probes import targets as targets_probe
from lab.probes.dm import score_field
from lab.probes.fields import field_caption, field_kind, method_field
from lab.runs import find_students
from lab.runs.live import (LiveSession, check_config, check_run_name, hyperparameters, methods_2d, points_from_upload,
                           train_points_teacher)
from lab.runs.recipes import resolve_teacher, resume_run
from lab.viz import live as liveviz

TEACHER = "toy2d/8gaussians/teacher"
TINY = {"batch": 64, "steps": 40}


def _session(method="consistency", seed=0, config=None, **kw):
    cls = lab.get_method(method)
    return LiveSession(method, cls.tiny_teacher, "toy2d:8gaussians", {**cls.tiny, **TINY, **(config or {})}, seed,
                       field=method_field, n=256, **kw)


# ---------------------------------------------------------------- the session
@pytest.mark.parametrize("method", ["dmd", "consistency", "sds"])
def test_same_seed_same_run_with_or_without_frames(method):
    a, b, c = _session(method), _session(method), _session(method, seed=1)
    for _ in range(3):  # frames in between must not touch the method's random stream
        a.advance(2)
        a.frame()
    assert b.advance(6) == 6 and a.iteration == 6
    c.advance(6)
    assert torch.equal(a.student_samples(), b.student_samples())
    assert not torch.equal(a.student_samples(), c.student_samples())
    pd.testing.assert_frame_equal(a.losses, b.losses)


def test_advance_runs_exactly_k_steps_and_stops_at_the_end():
    s = _session(config={"steps": 5})
    assert s.iteration == 0 and len(s.losses) == 0
    assert s.advance() == 1 and len(s.losses) == 1 and s.losses.step.tolist() == [1]
    assert s.advance(3) == 4 and s.losses.step.tolist() == [1, 2, 3, 4]
    assert any(c.startswith("loss/") for c in s.losses.columns)
    assert s.advance(10) == 5 and s.done  # the run ends at its steps
    assert s.advance(1) == 5
    for bad in (0, -1, 1.5, True):
        with pytest.raises(LabError, match="positive integer"):
            s.advance(bad)
    s.reset()
    assert s.iteration == 0 and not s.done and len(s.losses) == 0


def test_frame_teacher_and_student_from_the_same_noise(monkeypatch):
    s = _session("dmd")
    s.advance(3)
    f = s.frame()
    teacher, student = f.samples[f.samples.model == "teacher"], f.samples[f.samples.model == "student"]
    assert len(teacher) == len(student) == 256
    with torch.no_grad():
        t_ref = s.teacher.sample(z=s.z, nfe=f.nfe["teacher"]).x.numpy()
        s_ref = s.method.generator().sample(z=s.z, nfe=f.nfe["student"]).x.numpy()
    np.testing.assert_allclose(teacher[["x", "y"]].to_numpy(), t_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(student[["x", "y"]].to_numpy(), s_ref, rtol=1e-5, atol=1e-6)
    assert f.nfe == {"teacher": 50, "student": 1} and f.it == 3 and f.total == 40
    assert (f.field.kind == "real - fake score").all() and len(f.losses) == 3
    # the teacher is drawn once and cached: frames never sample it again
    monkeypatch.setattr(s.teacher, "sample", lambda *a, **k: pytest.fail("the teacher was sampled again"))
    s.advance(1)
    g = s.frame(field=False)
    assert g.field is None
    np.testing.assert_array_equal(g.samples[g.samples.model == "teacher"][["x", "y"]].to_numpy(),
                                  teacher[["x", "y"]].to_numpy())


def test_distance_every_few_steps_against_teacher_and_floor():
    s = _session(distance_every=5)
    s.advance(12)
    d = s.frame().distance
    assert d.step.tolist() == [0, 5, 10]
    assert np.isfinite(d[["student", "teacher", "floor"]].to_numpy()).all()
    assert d.teacher.nunique() == 1 and d.floor.nunique() == 1 and (d.floor > 0).all()
    assert d.student.iloc[0] != d.student.iloc[-1]  # measured on the student as it trains


def test_save_writes_a_run_folder_the_generators_page_lists(tmp_path):
    s = LiveSession("consistency", TEACHER, config={**lab.get_method("consistency").tiny, "steps": 6}, seed=3, n=128)
    s.advance(3)
    folder = s.save(tmp_path / "live-consistency")
    found = find_students("toy2d:8gaussians", tmp_path)
    assert found.run.tolist() == [str(folder)] and found.method.tolist() == ["consistency"]
    cfg = json.loads((folder / "config.json").read_text())
    assert (cfg["kind"], cfg["teacher"], cfg["data"], cfg["seed"], cfg["steps"]) == \
        ("distill", TEACHER, "toy2d:8gaussians", 3, 6)
    assert cfg["config"]["batch"] == 64 and cfg["live"]["saved_at_step"] == 3
    gen = lab.runs.Run(folder).load_model()
    x = gen.sample(64, nfe=1, seed=0).x
    assert x.shape == (64, 2) and torch.isfinite(x).all()
    assert torch.allclose(x, s.method.generator().sample(64, nfe=1, seed=0).x)
    m = lab.runs.Run(folder).metrics()
    assert m.step.tolist() == [0, 1, 2, 3] and m["loss/consistency"].iloc[1:].notna().all() and m.swd.iloc[0] > 0
    with pytest.raises(LabError, match="already exists"):
        s.save(folder)
    # a saved live run is resumable like any `lab distill` folder
    resume_run(folder, progress=False)
    assert lab.runs.Run(folder).metrics().step.max() == 6


def test_run_names(tmp_path):
    assert check_run_name("live-dmd_1.a", tmp_path) == tmp_path / "live-dmd_1.a"
    for bad in ("", "../x", "a/b", ".hidden", "x" * 81, "a b"):
        with pytest.raises(LabError, match="invalid run name"):
            check_run_name(bad, tmp_path)
    (tmp_path / "taken").mkdir()
    with pytest.raises(LabError, match="already exists"):
        check_run_name("taken", tmp_path)


def test_hyperparameters_from_the_config():
    hp = hyperparameters("dmd")
    assert hp.name.tolist()[:3] == ["steps", "lr", "batch"] and "fake_updates" in hp.name.tolist()
    assert set(hp.kind) <= {"int", "float"} and len(hp) <= 8
    assert hp.set_index("name").loc["batch", "allowed"] == "an integer >= 2, at most 8_192 here"
    assert hp.set_index("name").loc["lr", "allowed"] == describe_field(lab.get_method("dmd").Config, "lr")
    assert check_config("dmd", {"batch": 8, "lr": 1e-3}) == {"batch": 8, "lr": 1e-3}
    with pytest.raises(LabError, match=r"^invalid batch=1; allowed: an integer >= 2$"):
        check_config("dmd", {"batch": 1})
    with pytest.raises(LabError, match="at most 8_192"):
        check_config("dmd", {"batch": 10**9})
    with pytest.raises(LabError, match="unknown 2D method"):
        LiveSession("nope", TEACHER)
    assert methods_2d() == lab.list_methods()  # every registered method trains on points today


# ---------------------------------------------------------------- a drawing
def test_painted_cells_become_points_inside_them_and_a_drawing_round_trips_through_text():
    from lab.runs.live import CANVAS_CELLS, CANVAS_PER_CELL, canvas_grid, cells_from_text, cells_to_text, \
        points_from_cells

    grid = canvas_grid()
    assert grid.shape == (CANVAS_CELLS**2, 2) and np.abs(grid).max() < 3.0
    cells = [0, 41, 82, 1599, 800]
    a, b = points_from_cells(cells, seed=3), points_from_cells(cells, seed=3)
    assert torch.equal(a.points, b.points) and not torch.equal(a.points, points_from_cells(cells, seed=4).points)
    pts = a.points.numpy()
    side = grid[1, 0] - grid[0, 0]
    owner = np.abs(pts[:, None, :] - grid[None, sorted(cells)]).max(-1)  # Chebyshev distance to each centre
    assert len(pts) == len(cells) * CANVAS_PER_CELL and (owner.min(1) <= side / 2 + 1e-6).all()
    assert np.bincount(owner.argmin(1)).tolist() == [CANVAS_PER_CELL] * len(cells)  # the same share per cell
    assert cells_from_text(cells_to_text(cells)) == sorted(cells)
    assert cells_from_text(cells_to_text([])) == []
    with pytest.raises(LabError, match="paint at least 1 cells"):
        points_from_cells([])
    with pytest.raises(LabError, match="indices from 0 to 1599"):
        points_from_cells([5, 1600])
    for bad in ("", "zz", "abc", cells_to_text(cells)[:-3], "x" * 500):
        with pytest.raises(LabError, match="^invalid canvas .*allowed: a canvas bitmap of 1600 cells"):
            cells_from_text(bad)


# ---------------------------------------------------------------- custom points
def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def test_upload_validation_messages():
    good = np.random.default_rng(0).normal(size=(100, 2)) * 50 + 300
    pc = points_from_upload("mine.npy", _npy(good))
    assert pc.points.shape == (100, 2) and pc.spec == "upload:mine.npy"
    assert abs(float(pc.points.mean())) < 1e-4 and float(pc.points.abs().max()) <= 2.5  # centred, zoo scale
    csv = "x,y\n" + "\n".join(f"{a},{b}" for a, b in good)
    assert points_from_upload("mine.csv", csv.encode()).points.shape == (100, 2)
    cases = {
        ("a.txt", b"1,2"): "not a .npy or .csv",
        ("a.npy", b"\0" * (10 * 2**20 + 1)): "MB; allowed",
        ("a.npy", b"not numpy"): "could not read points",
        ("a.csv", b"1,2\nfoo,bar\n"): "could not read points",
        ("a.npy", _npy(np.array([{"a": 1}] * 20, dtype=object))): "could not read points",
        ("a.npy", _npy(np.zeros((20, 3)))): "shape (20, 3)",
        ("a.npy", _npy(np.zeros(40))): "shape (40,)",
        ("a.npy", _npy(good[:10])): "has 10 points",
        ("a.npy", _npy(np.zeros((100_001, 2)))): "has 100001 points",
        ("a.npy", _npy(np.where(np.arange(200).reshape(100, 2) == 7, np.nan, good))): "NaN or infinite",
        ("a.npy", _npy(np.ones((20, 2)))): "all points are the same",
        ("a.npy", _npy(np.array([["a", "b"]] * 20))): "no numeric array",
    }
    for (name, raw), msg in cases.items():
        with pytest.raises(LabError, match=re.escape(msg)) as e:
            points_from_upload(name, raw)
        assert "\n" not in str(e.value) and "allowed:" in str(e.value), str(e.value)


def test_custom_points_teacher_session_and_save(tmp_path):
    pts = toy2d.get("moons").sample(400, 0).numpy() * 40.0
    src = points_from_upload("moons.npy", _npy(pts))
    seen = []
    teacher = train_points_teacher(src, config={"steps": 40}, progress=seen.append)
    assert seen[-1] == 1.0 and len(seen) == 2
    s = LiveSession("consistency", teacher, src, {"batch": 64, "steps": 10}, seed=0, n=128)
    s.advance(2)
    folder = s.save(tmp_path / "mine")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["data"] == str((folder / "points.npy").resolve())
    assert cfg["teacher"] == str((folder / "teacher").resolve())
    np.testing.assert_array_equal(toy2d.resolve(cfg["data"]).points.numpy(), src.points.numpy())
    gen, data = resolve_teacher(cfg["teacher"], data=cfg["data"])
    with torch.no_grad():
        assert torch.allclose(gen.sample(32, nfe=4, seed=0).x, teacher.sample(32, nfe=4, seed=0).x)
    assert find_students(cfg["data"], tmp_path).run.tolist() == [str(folder)]


# ---------------------------------------------------------------- the method's own field
EXPECTED = {"scores": "real - fake score", "decision": "discriminator", "targets": "target",
            "segments": "student jump", "particles": "particle force", "pairs": "pair target"}


@pytest.mark.parametrize("method", methods_2d())
def test_every_2d_method_has_a_finite_field(method):
    cls = lab.get_method(method)
    m = cls(cls.tiny_teacher, "toy2d:8gaussians", cls.tiny, seed=0)
    for _ in lab.train(m, 2):
        pass
    rng = m.rng.get_state().clone()
    df = method_field(m, n=7, points=32)
    assert torch.equal(rng, m.rng.get_state())  # a probe never draws from the method's stream
    kind = field_kind(m)
    assert len(df) and EXPECTED[kind] in set(df.kind), (kind, set(df.kind))
    assert np.isfinite(df[["x", "y", "u", "v"]].to_numpy()).all()
    assert set(df.units) <= {"offset", "direction"} and (df.method == method).all()
    assert np.isfinite(df.loc[df.kind == "discriminator", "value"]).all()
    assert df[["u", "v"]].abs().to_numpy().sum() > 0
    cap = field_caption(m)
    assert cap.endswith(".") and cap.count(". ") in (1, 2) and method in cap, cap  # two sentences (+ a GAN head's)


def test_field_kinds_follow_the_issue():
    kinds = {m: field_kind(m) for m in methods_2d()}
    assert {m for m, k in kinds.items() if k == "scores"} == {"dmd", "dmd2", "sid", "vsd", "rcm"}
    assert kinds["add"] == "decision" and kinds["msd"] == "pairs"
    assert {m for m, k in kinds.items() if k == "segments"} == {"tscd", "shortcut"}
    assert {m for m, k in kinds.items() if k == "particles"} == {"sds", "vsd_particles", "esd", "dsd"}
    assert {"consistency", "scm", "progressive", "reflow", "guidance", "flowmap", "boot"} == \
        {m for m, k in kinds.items() if k == "targets"}


def test_field_is_the_probes_data():
    s = _session("dmd")
    s.advance(2)
    df, ref = method_field(s.method, t=0.4, n=5), score_field(s.method, 0.4, 3.0, 5)
    np.testing.assert_allclose(df[["u", "v"]].to_numpy(), ref[["diff_dx", "diff_dy"]].to_numpy(), rtol=1e-6)
    c = _session("consistency")
    df, ref = method_field(c.method, t=0.5, n=5), targets_probe(c.method, t=0.5, n=25)
    assert ref.space.iloc[0] == "x0"  # arrows end on the regression targets
    np.testing.assert_allclose((df.x + df.u).to_numpy(), ref.target_x.to_numpy(), rtol=1e-5, atol=1e-6)
    t = _session("tscd")
    jumps = method_field(t.method)
    assert set(jumps.K) == {fields.segment_k(t.method)} and jumps.loc[jumps.kind == "student jump", "gap"].notna().all()


# ---------------------------------------------------------------- figures
def test_live_figures_draw_the_frame():
    s = _session("dmd2")
    s.advance(3)
    f = s.frame()
    fig = liveviz.live_figure(f)
    names = [t.name for t in fig.data]
    assert {"teacher samples", "student samples", "real - fake score", "discriminator logit"} <= set(names)
    stud = next(t for t in fig.data if t.name == "student samples")
    np.testing.assert_allclose(stud.x, f.samples[f.samples.model == "student"].x.to_numpy())
    assert stud.xaxis == "x2"
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis2.scaleanchor == "x2"  # equal scales
    titles = ["teacher · 50 NFE", f"student · step 3/40 · {f.nfe['student']} NFE"]
    assert [a.text for a in fig.layout.annotations] == titles
    loss = liveviz.loss_figure(f.losses)
    assert {t.name for t in loss.data} == {c.split("/", 1)[1] for c in f.losses if c.startswith("loss/")}
    dist = liveviz.distance_figure(f.distance)
    by = {t.name: t for t in dist.data}
    assert list(by["student"].y) == f.distance.student.tolist() and by["noise floor"].y[0] == f.distance.floor.iloc[0]


def test_live_image_draws_the_same_frame():
    s = _session("dmd2")
    s.advance(2)
    f = s.frame()
    img = liveviz.live_image(f, width=800, height=400)
    assert img.size == (800, 400)
    px = np.asarray(img).reshape(-1, 3)
    student = np.array([214, 39, 40])  # COLORS["student"], blended at 85% on white or the field
    assert (np.abs(px.astype(int) - student).sum(1) < 60).sum() > 50  # the student's samples are drawn
    uri = liveviz.png_data_uri(img)
    back = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert np.array_equal(np.asarray(back), np.asarray(img))
    s.advance(5)
    assert not np.array_equal(np.asarray(liveviz.live_image(s.frame(), width=800, height=400)), np.asarray(img))


def test_advance_for_runs_whole_steps():
    s = _session()
    assert s.advance_for(0.0) == 1  # at least one step
    assert s.advance_for(60.0, at_most=3) == 4  # at most at_most
