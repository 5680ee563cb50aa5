"""Every number the CLI takes is bounded, every bad input is one `error:` line with exit code 2, and
`lab sample` draws in chunks (memory flat in --n) into an atomically written .npy.

Most cases run in-process through ``lab.cli.run`` (what the ``lab`` entry point runs, without the
process exit) or typer's CliRunner on ``lab.cli.app``; one subprocess test checks the real entry point.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import lab
from lab import cli
from lab.diffusion.generators import FlowGenerator, chunk_seed, make_noise, noise_chunks

TEACHER = "toy2d/8gaussians/teacher"
ANALYTIC = "toy2d/8gaussians/analytic"


def run(capsys, *args) -> tuple[int, str, list[str]]:
    """(exit code, stdout, stderr lines) of ``lab ARGS`` run in-process."""
    code = cli.run([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err.splitlines()


def assert_one_error_line(code, err, *needles):
    assert code == 2, (code, err)
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    for n in needles:
        assert n in err[0], (n, err[0])


# ---------------------------------------------------------------- bounds
BASE = {
    "teacher": ["teacher", "train", "--data", "toy2d:moons", "--out", "R"],
    "distill": ["distill", "--method", "consistency", "--teacher", ANALYTIC, "--out", "R"],
    "resume": ["distill", "--resume", "R"],
    "kd": ["kd", "run", "--method", "kd", "--task", "moons", "--out", "R"],
    "sample": ["sample", ANALYTIC, "--out", "s.npy"],
    "export": ["export", "digits/teacher", "--out", "P"],
    "app": ["app"],
}
# (command, option, bad value, the allowed range the message must name)
CASES = [
    *[(c, "--steps", v, "1..10000000") for c in ("teacher", "distill", "resume", "kd") for v in ("0", "10000001")],
    ("teacher", "--steps", "1.5", "1..10000000"),
    ("kd", "--steps", "-3", "1..10000000"),
    *[(c, "--checkpoint-every", v, "1..10000000") for c in ("teacher", "distill", "resume", "kd")
      for v in ("0", "10000001")],
    ("sample", "--n", "0", "1..1000000"), ("sample", "--n", "1000001", "1..1000000"),
    ("sample", "--n", "1e6", "1..1000000"),
    ("sample", "--nfe", "0", "1..1000"), ("sample", "--nfe", "1001", "1..1000"),
    ("export", "--nfe", "0", "1..1000"), ("export", "--nfe", "1001", "1..1000"),
    *[(c, "--seed", v, f"0..{2**63 - 1}") for c in ("teacher", "distill", "kd", "sample")
      for v in ("-1", str(2**63), str(2**64 + 5))],
    *[(c, "--ema", v, "[0, 1)") for c in ("teacher", "distill") for v in ("-0.1", "1", "1.5", "nan", "inf")],
    ("export", "--w", "inf", "a finite float"), ("export", "--w", "nan", "a finite float"),
    ("export", "--w", "abc", "a finite float"),
    ("app", "--port", "0", "1..65535"), ("app", "--port", "65536", "1..65535"),
]


@pytest.mark.parametrize("command,option,value,allowed", CASES,
                         ids=[f"{c}{o}={v}" for c, o, v, _ in CASES])
def test_every_number_is_bounded(tmp_path, monkeypatch, capsys, command, option, value, allowed):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *BASE[command], option, value)
    assert_one_error_line(code, err, option, f"allowed: ", allowed)
    assert list(tmp_path.iterdir()) == []  # refused while parsing: nothing read, nothing created


def test_bound_edges_are_accepted():
    b = cli.BOUNDS
    assert b["steps"].parse("1") == 1 and b["steps"].parse("10000000") == 10_000_000
    assert b["n"].parse("1000000") == 1_000_000 and b["nfe"].parse("1000") == 1000
    assert b["seed"].parse("0") == 0 and b["seed"].parse(str(2**63 - 1)) == 2**63 - 1
    assert b["ema"].parse("0") == 0.0 and b["ema"].parse("0.999") == 0.999
    assert b["port"].parse("65535") == 65535 and b["w"].parse("-3.5") == -3.5
    for name, bound in b.items():  # the help of every bounded option names its range
        assert bound.describe() in cli.bounded(name, None, "x").help


def test_help_and_bare_groups_exit_0(capsys):
    for args in ([], ["--help"], ["kd"], ["sample", "--help"], ["teacher"]):
        code, out, err = run(capsys, *args)
        assert code == 0 and "Usage" in out and not err, (args, code, err)


def test_usage_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for args, needle in ((["sample", ANALYTIC, "--out", "s.npy", "--bogus"], "--bogus"),
                         (["nope"], "nope"), (["sample", ANALYTIC], "--out"),
                         (["teacher", "train", "--data", "toy2d:moons", "--out", "R", "--steps"], "--steps")):
        code, out, err = run(capsys, *args)
        assert_one_error_line(code, err, needle)
    assert list(tmp_path.iterdir()) == []


def test_internal_errors_are_one_line_exit_1(tmp_path, monkeypatch, capsys):
    def boom(*a, **k):
        raise ZeroDivisionError("boom\nsecond line")

    monkeypatch.setattr(lab.zoo, "load", boom)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "sample", TEACHER, "--out", "s.npy")
    assert code == 1 and len(err) == 1, err
    assert err[0] == "error: internal error: ZeroDivisionError: boom second line (please report)"
    assert not (tmp_path / "s.npy").exists()


def test_resume_refuses_fresh_run_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for opt, val in (("--method", "reflow"), ("--out", "X"), ("--seed", "3"), ("--ema", "0.9"), ("--data", "x")):
        code, out, err = run(capsys, "distill", "--resume", "R", opt, val)
        assert_one_error_line(code, err, opt, "drop")
    assert list(tmp_path.iterdir()) == []


def test_resume_passes_config_steps_and_checkpoint_every(tmp_path, monkeypatch, capsys):
    """--config becomes overrides (with --steps merged in) and --checkpoint-every reaches the recipe."""
    import lab.runs.recipes as recipes

    seen = {}

    class _Run:
        folder = tmp_path / "R"

    def fake_resume(folder, progress=True, device=None, overrides=None, checkpoint_every=None):
        seen.update(folder=folder, overrides=overrides, checkpoint_every=checkpoint_every, device=device)
        return _Run()

    monkeypatch.setattr(recipes, "resume_run", fake_resume)
    code, out, err = run(capsys, "distill", "--resume", tmp_path / "R", "--config", '{"lr": 0.0001}',
                         "--steps", "40", "--checkpoint-every", "7", "--quiet")
    assert code == 0, err
    assert seen == {"folder": tmp_path / "R", "overrides": {"lr": 0.0001, "steps": 40}, "checkpoint_every": 7,
                    "device": None}
    code, out, err = run(capsys, "distill", "--resume", tmp_path / "R", "--config", "[1]")
    assert_one_error_line(code, err, "--config", "JSON object")


def test_checkpoint_every_reaches_the_recipes(tmp_path, monkeypatch, capsys):
    import lab.runs.recipes as recipes

    seen = {}

    class _Run:
        folder = tmp_path / "R"

    def fake(name):
        def f(*a, **k):
            seen[name] = k.get("checkpoint_every")
            return _Run()
        return f

    monkeypatch.setattr(recipes, "train_teacher_run", fake("teacher"))
    monkeypatch.setattr(recipes, "distill_run", fake("distill"))
    assert run(capsys, *BASE["teacher"], "--checkpoint-every", "25", "--quiet")[0] == 0
    assert run(capsys, *BASE["distill"], "--checkpoint-every", "30", "--quiet")[0] == 0
    assert seen == {"teacher": 25, "distill": 30}


# ---------------------------------------------------------------- sample: outputs
def test_sample_refuses_unwritable_or_folder_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain").write_text("not a folder")
    code, out, err = run(capsys, "sample", ANALYTIC, "--n", "10", "--out", "plain/x.npy")
    assert_one_error_line(code, err, "cannot write", "plain/x.npy")
    (tmp_path / "d.npy").mkdir()
    (tmp_path / "d.npy" / "keep").write_text("keep")
    code, out, err = run(capsys, "sample", ANALYTIC, "--n", "10", "--out", "d.npy", "--force")
    assert_one_error_line(code, err, "d.npy", "folder")
    (tmp_path / "old.npy").write_bytes(b"keep me")
    code, out, err = run(capsys, "sample", ANALYTIC, "--n", "10", "--out", "old.npy")
    assert_one_error_line(code, err, "exists", "--force")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npy", "old.npy", "plain"]
    assert (tmp_path / "plain").read_text() == "not a folder" and (tmp_path / "d.npy" / "keep").read_text() == "keep"
    assert (tmp_path / "old.npy").read_bytes() == b"keep me"
    code, out, err = run(capsys, "sample", ANALYTIC, "--n", "10", "--out", "old.npy", "--force")
    assert code == 0, err
    assert np.load(tmp_path / "old.npy").shape == (10, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npy", "old.npy", "plain"]  # no temp file left


def test_sample_large_n_chunked_equals_one_draw(tmp_path):
    """--n 10000 (three chunks of at most 4096) gives exactly the single draw of the same seed; the same seed
    gives the same file, another seed another one."""
    runner = CliRunner()
    args = ["sample", TEACHER, "--n", "10000", "--nfe", "2"]
    r = runner.invoke(cli.app, [*args, "--out", str(tmp_path / "a.npy")])
    assert r.exit_code == 0, r.output
    x = np.load(tmp_path / "a.npy", allow_pickle=False)
    assert x.shape == (10000, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    ref = lab.zoo.load(TEACHER).sample(10000, nfe=2, seed=0).x.numpy()
    np.testing.assert_array_equal(x, ref)
    assert runner.invoke(cli.app, [*args, "--out", str(tmp_path / "b.npy")]).exit_code == 0
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    assert runner.invoke(cli.app, [*args, "--seed", "1", "--out", str(tmp_path / "c.npy")]).exit_code == 0
    assert not np.array_equal(np.load(tmp_path / "c.npy"), x)


def test_sample_respects_the_chunk_size(tmp_path, monkeypatch):
    sizes = []
    real = FlowGenerator.sample

    def spy(self, n=None, nfe=1, seed=0, z=None, **kw):
        sizes.append(z.shape[0] if z is not None else n)
        return real(self, n=n, nfe=nfe, seed=seed, z=z, **kw)

    monkeypatch.setattr(FlowGenerator, "sample", spy)
    monkeypatch.setattr(cli, "SAMPLE_CHUNK", 1000)
    r = CliRunner().invoke(cli.app, ["sample", TEACHER, "--n", "2500", "--nfe", "2", "--out", str(tmp_path / "s.npy")])
    assert r.exit_code == 0, r.output
    assert sizes == [1000, 1000, 500]
    monkeypatch.setattr(FlowGenerator, "sample", real)
    ref = lab.zoo.load(TEACHER).sample(2500, nfe=2, seed=0).x.numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), ref)


@pytest.mark.parametrize("shape", [(2,), (3,), (1, 8, 8), (3, 5, 5)])
def test_noise_chunks_concatenate_to_the_single_draw(shape):
    for n in (1, 7, 15, 16, 17, 100, 4096, 4097, 4103, 10000):
        for chunk in (1, 3, 16, 1000, 4096):
            parts = list(noise_chunks(n, shape, seed=11, chunk=chunk))
            assert all(p.shape[0] <= max(chunk, 16) for p in parts[:-1])  # the last may absorb a tail of
            assert parts[-1].shape[0] <= max(chunk, 16) + 15  # < 16 values (merged: see noise_chunks)
            assert torch.equal(torch.cat(parts), make_noise(n, shape, seed=11)), (shape, n, chunk)


def test_chunk_seeds():
    assert chunk_seed(5, 0) == 5 and chunk_seed(None, 3) is None
    seeds = {chunk_seed(2**63 - 1, i) for i in range(1, 50)} | {chunk_seed(0, i) for i in range(1, 50)}
    assert len(seeds) == 98 and all(0 <= s < 2**62 for s in seeds)
    assert chunk_seed(7, 3) == chunk_seed(7, 3)


# ---------------------------------------------------------------- the real entry point
def test_entry_point_prints_one_error_line(tmp_path):
    """`python -m lab` (main()): a click usage error and a LabError are each exactly one `error:` line, exit 2."""
    env = {**os.environ, "LAB_NUM_THREADS": "1", "LAB_CACHE": str(tmp_path / "cache")}
    cases = {"usage": (["teacher", "train", "--data", "toy2d:moons", "--out", "R", "--steps", "1.5"],
                       ["--steps", "'1.5' is not an integer", "1..10000000"]),
             "lab_error": (["distill", "--method", "nope", "--teacher", ANALYTIC, "--out", "R"],
                           ["unknown method 'nope'", "allowed:"])}
    procs = {k: subprocess.Popen([sys.executable, "-m", "lab", *a], cwd=tmp_path, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k, (a, _) in cases.items()}
    for k, p in procs.items():
        out, err = p.communicate(timeout=120)
        lines = err.splitlines()
        assert p.returncode == 2, (k, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (k, err)
        assert "Traceback" not in err + out
        for needle in cases[k][1]:
            assert needle in lines[0], (k, needle, lines[0])
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == []
