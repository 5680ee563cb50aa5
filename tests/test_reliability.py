"""Nothing lost, nothing silently wrong: one-commit checkpoints with a verified fallback, the run lock, the
divergence guard that keeps the last good state, config overrides on resume, and run folders that never
write through a symlink. (Kills of real processes: test_kill.py; malformed input: test_fuzz.py.)"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lab.errors import DivergenceError, LabError
from lab.io import flatten_state, load_tensors
from lab.runs import Callback, Checkpoint, Guard, LoopState, Run, StepOutput
from lab.runs import recipes
from lab.runs.recipes import distill_run, resume_run

TEACHER = "toy2d/8gaussians/analytic"
NET = {"type": "mlp", "hidden": 16, "depth": 2, "t_dim": 8}
SMALL = {"batch": 32, "student_net": NET}
STEPS = 30


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _weights_equal(a: Path, b: Path) -> bool:
    wa, wb = load_tensors(a / "weights.safetensors"), load_tensors(b / "weights.safetensors")
    return set(wa) == set(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)


class _Stop(Exception):
    pass


class _StopAt(Callback):
    def __init__(self, at):
        self.at = at

    def on_step(self, state):
        if state.it == self.at:
            raise _Stop()


def _cut(monkeypatch, folder, at, ckpt_every, **kw):
    """distill_run into ``folder``, stopped (as by a kill) right after step ``at``."""
    orig = recipes.run_callbacks

    def patched(run, trainable, ema, progress, every=10, ckpt_every=None):
        cbs = orig(run, trainable, ema, progress, every, ckpt_every=ckpt_every)
        return cbs[:-1] + [_StopAt(at)] + cbs[-1:]

    with monkeypatch.context() as mp:
        mp.setattr(recipes, "run_callbacks", patched)
        with pytest.raises(_Stop):
            distill_run("consistency", TEACHER, folder, steps=STEPS, progress=False, config=SMALL,
                        checkpoint_every=ckpt_every, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return distill_run("consistency", TEACHER, tmp_path_factory.mktemp("ref") / "run", steps=STEPS, progress=False,
                       config=SMALL)


# ---------------------------------------------------------------- one-commit checkpoints
def test_every_run_folder_has_a_step0_checkpoint_and_one_file_per_checkpoint(reference):
    run = Run.open(reference.folder)
    assert sorted(p.name for p in reference.folder.glob("checkpoint*")) == \
        ["checkpoint.prev.safetensors", "checkpoint.safetensors"]
    assert run.load_checkpoint()["trainable"]["it"] == STEPS
    assert not list(reference.folder.glob("*.json")) == []  # config.json and model.json, no checkpoint.json
    assert not (reference.folder / "checkpoint.json").exists()


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_and_resumes_exactly(reference, tmp_path,
                                                                                     monkeypatch):
    folder = tmp_path / "run"
    _cut(monkeypatch, folder, 20, 10)
    run = Run.open(folder)
    assert run.load_checkpoint()["trainable"]["it"] == 20
    newest = folder / "checkpoint.safetensors"
    newest.write_bytes(newest.read_bytes()[:-100])  # a torn write / bit rot
    assert run.load_checkpoint()["trainable"]["it"] == 10  # detected; the previous one is used
    resume_run(folder, progress=False)
    assert _weights_equal(reference.folder, folder)
    pd.testing.assert_frame_equal(Run(reference.folder).metrics(), Run(folder).metrics())


def test_all_checkpoints_damaged_is_one_line_error(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    _cut(monkeypatch, folder, 20, 10)
    for name in ("checkpoint.safetensors", "checkpoint.prev.safetensors"):
        (folder / name).write_bytes(b"\x00" * 40)
    before = _hashes(folder)
    with pytest.raises(LabError, match="no checkpoint verifies") as e:
        resume_run(folder, progress=False)
    assert "\n" not in str(e.value)
    assert _hashes(folder) == before


def test_metrics_after_the_checkpoint_are_cut_on_resume(tmp_path, monkeypatch):
    """A run killed after logging rows past its last checkpoint: on resume those rows go at once (before any
    new step), so metrics.csv never holds two versions of a step."""
    folder = tmp_path / "run"
    _cut(monkeypatch, folder, 25, 20)  # rows at 10 and 20 are checkpointed; the flush at 25 holds none past 20
    rows = pd.DataFrame({"step": [10, 20, 30], "stage": ["", "", ""], "loss/x": [1.0, 2.0, 3.0]})
    rows.to_csv(folder / "metrics.csv", index=False)  # as if rows past the checkpoint had been flushed
    seen = {}

    class Peek(Callback):
        def on_step(self, state):
            if "first" not in seen:
                seen["first"] = Run(folder).metrics()["step"].tolist()

    orig = recipes.run_callbacks
    monkeypatch.setattr(recipes, "run_callbacks", lambda *a, **k: orig(*a, **k) + [Peek()])
    resume_run(folder, progress=False)
    assert max(seen["first"]) <= 20
    m = Run(folder).metrics()
    assert m["step"].is_unique and m["step"].is_monotonic_increasing and m["step"].iloc[-1] == STEPS


def test_a_folder_killed_before_its_first_checkpoint_resumes_from_the_start(reference, tmp_path):
    """Only config.json and stray temp files: `--resume` starts it from step 0 (the seed makes it exact)."""
    folder = tmp_path / "run"
    folder.mkdir()
    cfg = Run.open(reference.folder).config
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / ".metrics.csv.abc123.tmp").write_text("half")
    (folder / ".tmp1z4KWd").write_text("half")  # safetensors' own temp file, left by a kill inside save_file
    (folder / ".tmpnotours").write_text("kept")  # not a name a writer of ours leaves
    resume_run(folder, progress=False)
    assert not list(folder.glob(".*.tmp"))
    assert not (folder / ".tmp1z4KWd").exists() and (folder / ".tmpnotours").exists()
    assert _weights_equal(reference.folder, folder)


# ---------------------------------------------------------------- the lock
def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    _cut(monkeypatch, folder, 20, 10)
    holder = Run.open(folder).acquire()
    try:
        before = _hashes(folder)
        with pytest.raises(LabError, match=f"in use by process {os.getpid()}") as e:
            resume_run(folder, progress=False)
        assert "\n" not in str(e.value)
        assert _hashes(folder) == before
    finally:
        holder.release()
    resume_run(folder, progress=False)  # released: it runs
    assert Run(folder).has_model()


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    _cut(monkeypatch, folder, 20, 10)
    code = ("import sys, time; from lab.runs import Run; Run.open(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(LabError, match=f"in use by process {p.pid}"):
            resume_run(folder, progress=False)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    resume_run(folder, progress=False)
    assert Run(folder).has_model()


# ---------------------------------------------------------------- the divergence guard
def test_divergence_stops_with_one_line_and_never_saves_a_bad_state(tmp_path):
    folder = tmp_path / "run"
    with pytest.raises(DivergenceError) as e:
        distill_run("consistency", TEACHER, folder, steps=200, progress=False, config={**SMALL, "lr": 1000.0})
    msg = str(e.value)
    assert "\n" not in msg and "step" in msg and "--resume" in msg and "lr" in msg
    assert e.value.step >= 1 and e.value.term
    ck = Run.open(folder).load_checkpoint()
    assert ck["trainable"]["it"] < e.value.step
    _, tensors = flatten_state(ck)
    assert all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.dtype.is_floating_point)
    assert not Run(folder).has_model()
    # resume from the kept state with a lower learning rate: applied to the optimiser, recorded, and it finishes
    lr_seen = []

    class LR(Callback):
        def on_step(self, state):
            lr_seen.append(state.trainable.optimizers["student"].param_groups[0]["lr"])

    orig = recipes.run_callbacks
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recipes, "run_callbacks", lambda *a, **k: orig(*a, **k) + [LR()])
        resume_run(folder, progress=False, overrides={"lr": 1e-3, "steps": 40})
    assert set(lr_seen) == {1e-3}
    cfg = Run.open(folder).config
    assert cfg["config"]["lr"] == 1e-3 and cfg["steps"] == 40
    assert cfg["resumes"] == [{"step": ck["trainable"]["it"], "overrides": {"lr": 1e-3, "steps": 40}}]
    x = Run(folder).load_model().sample(200, nfe=1, seed=0).x
    assert torch.isfinite(x).all() and x.abs().max() < 50


def _fake_state(it, losses, stage=""):
    return LoopState(it, 1000, StepOutput(losses=losses, stage=stage), object())


def test_guard_catches_a_loss_that_blows_past_its_running_median():
    g = Guard(factor=100, warmup=5, window=10)
    rng = np.random.default_rng(0)
    for it in range(1, 30):  # noisy but steady: never trips
        g.on_step(_fake_state(it, {"a": float(1 + 0.5 * rng.standard_normal()), "b": -3.0}))
    g.on_step(_fake_state(30, {"a": 50.0, "b": -3.0}))  # 50x: a spike, not a divergence
    with pytest.raises(DivergenceError, match=r"step 31: loss 'a' is 1000, over 100x"):
        g.on_step(_fake_state(31, {"a": 1000.0, "b": -3.0}))
    with pytest.raises(DivergenceError, match="loss 'b' is nan"):
        g.on_step(_fake_state(32, {"a": 1.0, "b": float("nan")}))
    # a new stage starts its own history: a different scale there is not a divergence
    for it in range(33, 40):
        g.on_step(_fake_state(it, {"a": 1e4}, stage="second"))


def test_guard_checks_parameters_and_gradients():
    class T:
        def __init__(self):
            self.net = torch.nn.Linear(2, 2)

        def nets(self):
            return {"student": self.net}

    t = T()
    g = Guard()
    g.on_step(LoopState(1, 10, StepOutput(losses={"l": 1.0}), t))
    t.net.weight.grad = torch.tensor([[1.0, float("inf")], [0.0, 0.0]])
    with pytest.raises(DivergenceError, match="gradient of student.weight"):
        g.on_step(LoopState(2, 10, StepOutput(losses={"l": 1.0}), t))
    t.net.weight.grad = None
    with torch.no_grad():
        t.net.bias[0] = float("nan")
    with pytest.raises(DivergenceError, match="parameter student.bias"):
        g.on_step(LoopState(3, 10, StepOutput(losses={"l": 1.0}), t))


def test_a_checkpoint_with_inf_optimiser_state_is_never_written(tmp_path, monkeypatch):
    """The late-divergence case: parameters finite, Adam's second moment already inf. The save refuses, and
    the previous checkpoint stays the newest."""
    folder = tmp_path / "run"
    _cut(monkeypatch, folder, 20, 10)
    run = Run.open(folder)
    before = _hashes(folder)
    m = recipes.build_run(run.config, "cpu")[0]
    m.load_state_dict(run.load_checkpoint()["trainable"])
    opt = m.optimizers["student"]
    next(iter(opt.state.values()))["exp_avg_sq"].fill_(float("inf"))
    with run:
        with pytest.raises(DivergenceError, match=r"opts\.student\.state"):
            Checkpoint(run, every=10).save(m)
    assert _hashes(folder) == before


# ---------------------------------------------------------------- configs on resume
def test_a_hand_edited_config_is_refused_not_ignored(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    _cut(monkeypatch, folder, 20, 10)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["config"]["lr"] = 0.5
    (folder / "config.json").write_text(json.dumps(cfg))
    before = _hashes(folder)
    with pytest.raises(LabError, match=r"edited after its last checkpoint \(config\.lr: .* -> 0\.5\)") as e:
        resume_run(folder, progress=False)
    assert "\n" not in str(e.value) and "--config" in str(e.value)
    assert _hashes(folder) == before


@pytest.mark.parametrize("overrides,match", [({"lr": -1}, "lr"), ({"nope": 1}, "unknown config field"),
                                             ({"student_net": {**NET, "hidden": 64}}, "does not fit")])
def test_bad_overrides_on_resume_are_refused_before_anything_changes(tmp_path, monkeypatch, overrides, match):
    folder = tmp_path / "run"
    _cut(monkeypatch, folder, 20, 10)
    before = _hashes(folder)
    with pytest.raises(LabError, match=match) as e:
        resume_run(folder, progress=False, overrides=overrides)
    assert "\n" not in str(e.value)
    assert _hashes(folder) == before


# ---------------------------------------------------------------- paths
def test_a_symlinked_snapshots_folder_is_refused_and_nothing_is_written_outside(tmp_path, monkeypatch):
    folder, outside = tmp_path / "run", tmp_path / "outside"
    _cut(monkeypatch, folder, 20, 10)
    outside.mkdir()
    for p in (folder / "snapshots").iterdir():
        p.unlink()
    (folder / "snapshots").rmdir()
    (folder / "snapshots").symlink_to(outside, target_is_directory=True)
    with pytest.raises(LabError, match="symlink"):
        resume_run(folder, progress=False)
    assert list(outside.iterdir()) == []
    with pytest.raises(LabError, match="symlink"):
        Run.create(tmp_path / "link_out", {}) if (tmp_path / "link_out").symlink_to(outside) is None else None
    assert list(outside.iterdir()) == []


def test_the_run_records_the_networks_it_really_built(reference):
    """config.student_net is the method's default MLP, but a trainable teacher's student starts as a copy of
    the teacher's net: the run folder says so, and the recorded specs are the saved nets' specs."""
    cfg = Run.open(reference.folder).config
    student = cfg["built"]["nets"]["student"]
    assert student == {**NET, **{k: student[k] for k in student if k not in NET}}  # analytic teacher: a fresh net
    assert "student_init" not in cfg["built"]
    saved = json.loads((reference.folder / "model.json").read_text())
    assert saved["nets"]["denoiser"] == student
    assert saved["card"]["recipe"]["nets"]["student"] == student


def test_a_student_copied_from_the_teacher_is_recorded_as_such(tmp_path):
    run = distill_run("consistency", "toy2d/moons/teacher", tmp_path / "run", steps=2, progress=False,
                      config={"batch": 8})
    cfg = Run.open(run.folder).config
    teacher_net = json.loads((Path(__file__).resolve().parents[1] / "assets/zoo/toy2d/moons/teacher/model.json")
                             .read_text())["nets"]["denoiser"]
    assert cfg["built"]["nets"]["student"] == teacher_net != cfg["config"]["student_net"]
    assert "copy of the teacher" in cfg["built"]["student_init"]
