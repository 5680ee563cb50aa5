"""Run folders: records, checkpoints, and exact (bitwise) resume of interrupted runs."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from lab.errors import LabError
from lab.methods import get_method, list_methods
from lab.io import flatten_state, load_state, load_tensors, save_state
from lab.runs import Callback, Run, list_runs, recipes
from lab.runs.recipes import distill_run, resume_run, train_teacher_run


TEACHER = "toy2d/8gaussians/analytic"
NET = {"type": "mlp", "hidden": 32, "depth": 2, "t_dim": 16}
CONFIGS = {
    "consistency": {"batch": 64, "student_net": NET},
    "progressive": {"batch": 64, "student_net": NET, "start_steps": 4, "halvings": 2},
    "reflow": {"batch": 64, "student_net": NET, "n_pairs": 500, "pair_steps": 4},
    "dmd": {"batch": 64, "student_net": NET, "n_pairs": 500, "pair_steps": 4, "fake_updates": 2},
}
# every other registered method resumes with its own tiny config on its tiny teacher
for _m in list_methods():
    CONFIGS.setdefault(_m, get_method(_m).tiny)
TEACHERS = {m: get_method(m).tiny_teacher for m in list_methods()}
RESUME_CASES = [("consistency", 20), ("progressive", 20), ("progressive", 30), ("reflow", 20), ("reflow", 30)] + \
    [(m, 20) for m in list_methods() if m not in ("consistency", "progressive", "reflow")]
STEPS = 40


class Interrupted(Exception):
    """Stands in for a kill / Ctrl-C in the middle of a run."""


class StopAt(Callback):
    def __init__(self, at: int):
        self.at = at

    def on_step(self, state):
        if state.it == self.at:
            raise Interrupted(f"stopped at step {self.at}")


def _interrupt(monkeypatch, at: int, ckpt_every: int, fn, *args, **kwargs):
    """Run ``fn`` (distill_run / train_teacher_run) with checkpoints every ``ckpt_every`` steps and a kill at ``at``."""
    orig = recipes.run_callbacks

    def patched(run, trainable, ema, progress, every=10, **kw):
        cbs = orig(run, trainable, ema, progress, every, ckpt_every=ckpt_every)
        return cbs[:-1] + [StopAt(at)] + cbs[-1:]  # after Checkpoint, before the progress bar

    with monkeypatch.context() as mp:
        mp.setattr(recipes, "run_callbacks", patched)
        with pytest.raises(Interrupted):
            fn(*args, **kwargs)


def _resume_counting(monkeypatch, folder):
    """resume_run, recording the step the loop starts from and how many steps it runs."""
    seen = {}
    orig = recipes.train

    def spy(trainable, steps=None, callbacks=()):
        seen["start"], seen["n"] = trainable.it, 0
        for state in orig(trainable, steps, callbacks):
            seen["n"] += 1
            yield state

    with monkeypatch.context() as mp:
        mp.setattr(recipes, "train", spy)
        run = resume_run(folder, progress=False)
    return run, seen.get("start"), seen.get("n")


def _weights(folder):
    return load_tensors(folder / "weights.safetensors")


def _assert_bitwise_equal(a: dict, b: dict):
    assert set(a) == set(b)
    diff = {k: float((a[k].double() - b[k].double()).abs().max()) for k in a if not torch.equal(a[k], b[k])}
    assert diff == {}, f"not bitwise identical after resume: {diff}"


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Uninterrupted runs, computed once per (method, ema)."""
    root = tmp_path_factory.mktemp("refs")
    cache = {}

    def get(method, ema=None):
        key = (method, ema)
        if key not in cache:
            cache[key] = distill_run(method, TEACHERS[method], root / f"{method}_{ema}", steps=STEPS, progress=False,
                                     config=CONFIGS[method], ema=ema)
        return cache[key]

    return get


@pytest.mark.parametrize("method,at", RESUME_CASES)
def test_resume_is_bitwise_identical(references, tmp_path, monkeypatch, method, at):
    """Stop at step ``at`` right after a checkpoint, resume, and get the reference's exact numbers.

    progressive: halvings switch at step 20 (30 is inside the second halving, with a stage teacher);
    reflow: the one-step distillation stage starts at step 24 (30 is inside it)."""
    ref = references(method)
    folder = tmp_path / "run"
    _interrupt(monkeypatch, at, 10 if at == 30 else 20, distill_run, method, TEACHERS[method], folder, steps=STEPS,
               progress=False, config=CONFIGS[method])
    run = Run.open(folder)
    assert run.has_checkpoint() and not run.has_model()
    assert load_state(folder / "checkpoint")["trainable"]["it"] == at
    resumed, started, done = _resume_counting(monkeypatch, folder)
    assert (started, done) == (at, STEPS - at)  # it really continued from the checkpoint
    assert resumed.has_model()
    _assert_bitwise_equal(_weights(ref.folder), _weights(folder))
    # the whole final training state (nets, optimisers, RNGs, stage, reflow pairs) matches too
    skel_a, ten_a = flatten_state(load_state(ref.folder / "checkpoint")["trainable"])
    skel_b, ten_b = flatten_state(load_state(folder / "checkpoint")["trainable"])
    assert skel_a == skel_b
    _assert_bitwise_equal(ten_a, ten_b)
    # and the metrics record is the same as if it had never stopped
    pd.testing.assert_frame_equal(Run(ref.folder).metrics(), Run(folder).metrics())


def test_ema_state_survives_resume(references, tmp_path, monkeypatch):
    ref = references("consistency", 0.9)
    folder = tmp_path / "ema_run"
    _interrupt(monkeypatch, 20, 20, distill_run, "consistency", TEACHER, folder, steps=STEPS, progress=False,
               config=CONFIGS["consistency"], ema=0.9)
    ck = load_state(folder / "checkpoint")
    shadow = ck["callbacks"]["EMA"]["shadow"]["student"]
    live = ck["trainable"]["nets"]["student"]
    assert set(shadow) == set(live)
    assert any(not torch.equal(shadow[k], live[k]) for k in live)  # the average differs from the live weights
    # control: the same resume with the EMA state dropped from the checkpoint ends elsewhere
    lost = tmp_path / "ema_lost"
    shutil.copytree(folder, lost)
    ck_lost = dict(ck)
    ck_lost["callbacks"] = {k: v for k, v in ck["callbacks"].items() if k != "EMA"}
    save_state(lost / "checkpoint", ck_lost)
    resume_run(lost, progress=False)
    assert any(not torch.equal(_weights(ref.folder)[k], _weights(lost)[k]) for k in _weights(lost))

    resume_run(folder, progress=False)
    _assert_bitwise_equal(_weights(ref.folder), _weights(folder))
    # the EMA is not a no-op: without it the final weights are different
    no_ema = _weights(references("consistency").folder)
    assert any(not torch.equal(no_ema[k], _weights(folder)[k]) for k in no_ema)


def test_teacher_run_resume_is_bitwise_identical(tmp_path, monkeypatch):
    cfg = {"batch": 64, "net": NET}
    ref = train_teacher_run("toy2d:moons", tmp_path / "ref", steps=STEPS, progress=False, config=cfg)
    _interrupt(monkeypatch, 20, 20, train_teacher_run, "toy2d:moons", tmp_path / "cut", steps=STEPS, progress=False,
               config=cfg)
    _, started, done = _resume_counting(monkeypatch, tmp_path / "cut")
    assert (started, done) == (20, STEPS - 20)
    _assert_bitwise_equal(_weights(ref.folder), _weights(tmp_path / "cut"))


def test_run_records(references):
    run = references("reflow")
    folder = run.folder
    for f in ("config.json", "metrics.csv", "checkpoint.safetensors", "checkpoint.prev.safetensors", "model.json",
              "weights.safetensors"):
        assert (folder / f).exists(), f
    assert not list(folder.glob(".*.tmp"))
    df = Run(folder).metrics()
    assert isinstance(df, pd.DataFrame) and "step" in df.columns and "stage" in df.columns
    assert df["step"].tolist() == [10, 20, 30, 40]
    assert set(df["stage"]) == {"reflow", "distill"}
    assert {"loss/reflow", "loss/distill"} <= set(df.columns)
    assert np.isfinite(df[["loss/reflow"]].dropna().to_numpy()).all()
    cfg = Run.open(folder).config
    assert cfg["method"] == "reflow" and cfg["teacher"] == TEACHER and cfg["steps"] == STEPS
    assert cfg["config"]["n_pairs"] == 500
    s = Run(folder).summary()
    assert s["steps_done"] == STEPS and s["has_model"] and s["method"] == "reflow"
    listed = list_runs(folder.parent)
    assert str(folder) in set(listed["run"])
    gen = Run(folder).load_model()
    assert gen.sample(20, nfe=1, seed=0).x.shape == (20, 2)
    # resuming a finished run changes nothing
    before = _weights(folder)
    resume_run(folder, progress=False)
    _assert_bitwise_equal(before, _weights(folder))


def test_run_folder_errors(tmp_path):
    with pytest.raises(LabError, match="not a run folder"):
        Run.open(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("1")
    with pytest.raises(LabError, match="not empty"):
        Run.create(tmp_path / "x", {})
    Run.create(tmp_path / "empty", {"a": 1})
    with pytest.raises(LabError, match="no checkpoint"):
        Run.open(tmp_path / "empty").load_checkpoint()
    assert Run(tmp_path / "empty").metrics().empty


def test_run_create_on_an_existing_file_is_a_laberror(tmp_path):
    """`lab distill --out some_file` must be a one-line error, not a NotADirectoryError traceback."""
    f = tmp_path / "samples.npy"
    f.write_bytes(b"data")
    with pytest.raises(LabError):
        Run.create(f, {})
    assert f.read_bytes() == b"data"


def test_teacher_on_a_relative_point_file_is_usable_from_another_directory(tmp_path, monkeypatch):
    """A teacher trained on --data pts.npy records its data spec; distilling or resuming from another working
    directory must still find the points."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    np.save(work / "pts.npy", np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32))
    monkeypatch.chdir(work)
    train_teacher_run("pts.npy", "T", steps=2, progress=False, config={"batch": 8, "net": NET})
    monkeypatch.chdir(elsewhere)
    gen, data = recipes.resolve_teacher(str(work / "T"))
    from lab.methods import get_method

    m = get_method("reflow")(gen, data, {"batch": 8, "n_pairs": 8, "steps": 2, "student_net": NET})
    assert m.data.sample(4, 0).shape == (4, 2)
