"""The method registry, config validation, and the `lab` command (run as a subprocess)."""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lab
from lab.diffusion.train import TeacherConfig
from lab.errors import LabError
from lab.methods import MethodConfig, get_method, list_methods, register
from lab.trainable import config_from_dict

PY = "/work/main/.venv/bin/python"
ANALYTIC = "toy2d/8gaussians/analytic"
SMALL_NET = {"type": "mlp", "hidden": 16, "depth": 2, "t_dim": 8}


# ---------------------------------------------------------------- registry
def test_list_methods():
    ms = lab.list_methods()
    assert {"progressive", "consistency", "reflow"} <= set(ms)
    assert ms == sorted(ms) == list_methods()
    for m in ms:
        d = get_method(m).describe()
        assert d["name"] == m and d["family"] and d["mechanism"] and d["paper"]


def test_get_unknown_method_names_allowed_values():
    with pytest.raises(LabError) as ei:
        get_method("nope")
    msg = str(ei.value)
    assert "'nope'" in msg and "allowed" in msg
    for m in ("consistency", "progressive", "reflow"):
        assert m in msg
    assert "\n" not in msg


def test_register_twice_is_refused():
    with pytest.raises(LabError, match="registered twice"):
        register("reflow")(type("Dup", (), {}))
    assert get_method("reflow").__name__ == "Reflow"


@pytest.mark.parametrize("method,field,value", [
    ("progressive", "halvings", 0),
    ("progressive", "halvings", 5),
    ("progressive", "start_steps", 6),
    ("progressive", "steps", 0),
    ("consistency", "n_intervals", 1),
    ("consistency", "target_ema", 1.0),
    ("consistency", "solver", "rk4"),
    ("consistency", "loss", "l1"),
    ("consistency", "batch", 1),
    ("consistency", "lr", 0.0),
    ("reflow", "n_pairs", 10),
    ("reflow", "pair_steps", 1),
    ("reflow", "distill_frac", 1.0),
    ("reflow", "t_dist", "beta"),
    ("reflow", "huber_c", -1.0),
])
def test_config_validation_names_the_field(method, field, value):
    with pytest.raises(LabError) as ei:
        get_method(method).Config(**{field: value})
    msg = str(ei.value)
    assert f"{field}=" in msg and "allowed" in msg and "\n" not in msg, msg


@pytest.mark.parametrize("cls,field,value", [
    (TeacherConfig, "lr", "fast"),
    (TeacherConfig, "process", ["linear"]),
    (TeacherConfig, "label_dropout", None),
    (get_method("consistency").Config, "target_ema", "0.9"),
    (get_method("reflow").Config, "distill_frac", None),
    (get_method("reflow").Config, "huber_c", "small"),
    (get_method("progressive").Config, "steps", "100"),
])
def test_wrongly_typed_config_values_name_the_field(cls, field, value):
    """JSON from --config can carry any type; a wrong type must be a LabError naming the field, not a TypeError."""
    with pytest.raises(LabError) as ei:
        cls(**{field: value})
    assert field in str(ei.value)


def test_unknown_config_field_and_bad_student_net():
    with pytest.raises(LabError) as ei:
        config_from_dict(get_method("progressive").Config, {"halving": 2})
    assert "halving" in str(ei.value) and "halvings" in str(ei.value)
    with pytest.raises(LabError, match="unknown config field"):
        get_method("reflow")(lab.zoo.load(ANALYTIC), "toy2d:8gaussians", {"nope": 1})
    with pytest.raises(LabError, match="network type"):
        get_method("progressive")(lab.zoo.load(ANALYTIC), "toy2d:8gaussians", {"student_net": {"type": "unet"}})
    # a misspelt network option is bad user input too
    with pytest.raises(LabError, match="hiden"):
        get_method("progressive")(lab.zoo.load(ANALYTIC), "toy2d:8gaussians", {"student_net": {"type": "mlp", "hiden": 8}})


def test_method_needs_a_flow_teacher_and_valid_config_object():
    teacher = lab.zoo.load(ANALYTIC)
    m = get_method("reflow")(teacher, "toy2d:8gaussians", {"batch": 8, "n_pairs": 8, "steps": 3, "student_net": SMALL_NET})
    with pytest.raises(LabError, match="FlowGenerator"):
        get_method("consistency")(m.generator(), "toy2d:8gaussians")
    with pytest.raises(LabError, match="ConsistencyConfig"):
        get_method("consistency")(teacher, "toy2d:8gaussians", MethodConfig())
    assert isinstance(m.config, get_method("reflow").Config) and m.total_steps == 3


# ---------------------------------------------------------------- CLI
def _env():
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "default"})
    env["LAB_CACHE"] = "/nonexistent-lab-cache-for-tests"  # the CLI must never train zoo entries here
    return env


def _lab(args, cwd, timeout=300):
    r = subprocess.run([PY, "-m", "lab", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env())
    return r


def _assert_clean_error(r):
    err_lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr[-2000:]
    assert len(err_lines) == 1 and err_lines[0].startswith("error:"), r.stderr[-2000:]


def _tree(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _error_cases(tmp: Path) -> dict[str, list[str]]:
    np.save(tmp / "pts.npy", np.random.default_rng(0).normal(size=(50, 2)))
    (tmp / "existing.npy").write_bytes(b"keep me")
    (tmp / "busy").mkdir()
    (tmp / "busy" / "notes.txt").write_text("someone else's run")
    return {
        "unknown_method": ["distill", "--method", "nope", "--teacher", ANALYTIC, "--out", "R1", "--quiet"],
        "bad_data_spec": ["teacher", "train", "--data", "points.parquet", "--out", "R2", "--quiet"],
        "bad_config_json": ["distill", "--method", "reflow", "--teacher", ANALYTIC, "--out", "R3", "--quiet",
                            "--config", "{n_pairs: 10"],
        "steps_zero": ["teacher", "train", "--data", "pts.npy", "--out", "R4", "--steps", "0", "--quiet"],
        "sample_existing_file": ["sample", ANALYTIC, "--n", "10", "--out", "existing.npy"],
        "sample_missing_folder": ["sample", "no_such_model_dir", "--n", "10", "--out", "s_missing.npy"],
        "distill_into_nonempty_out": ["distill", "--method", "reflow", "--teacher", ANALYTIC, "--out", "busy",
                                      "--steps", "5", "--quiet"],
    }


@pytest.fixture(scope="module")
def cli_errors(tmp_path_factory):
    """All bad-input invocations run concurrently (each pays the torch import)."""
    tmp = tmp_path_factory.mktemp("cli_errors")
    cases = _error_cases(tmp)
    cases["methods"] = ["methods"]
    before_busy = _tree(tmp / "busy")
    with cf.ThreadPoolExecutor(max_workers=4) as ex:
        futs = {k: ex.submit(_lab, a, tmp) for k, a in cases.items()}
        results = {k: f.result() for k, f in futs.items()}
    return tmp, results, before_busy


def test_cli_methods_lists_the_three(cli_errors):
    _, res, _ = cli_errors
    r = res["methods"]
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines() if line and not line.startswith(" ")]
    assert {"consistency", "progressive", "reflow"} <= set(names)
    assert r.stderr == ""


@pytest.mark.parametrize("case", ["unknown_method", "bad_data_spec", "bad_config_json", "steps_zero",
                                  "sample_existing_file", "sample_missing_folder", "distill_into_nonempty_out"])
def test_cli_bad_input_is_one_error_line_exit_2(cli_errors, case):
    _, res, _ = cli_errors
    _assert_clean_error(res[case])


def test_cli_error_messages_are_specific_and_nothing_is_written(cli_errors):
    tmp, res, before_busy = cli_errors
    assert "nope" in res["unknown_method"].stderr and "reflow" in res["unknown_method"].stderr
    assert "points.parquet" in res["bad_data_spec"].stderr
    assert "--config" in res["bad_config_json"].stderr
    assert "--steps" in res["steps_zero"].stderr
    assert "exists" in res["sample_existing_file"].stderr
    assert "no_such_model_dir" in res["sample_missing_folder"].stderr
    assert "not empty" in res["distill_into_nonempty_out"].stderr
    assert (tmp / "existing.npy").read_bytes() == b"keep me"
    assert not (tmp / "s_missing.npy").exists()
    assert _tree(tmp / "busy") == before_busy  # the non-empty --out folder is left exactly as it was
    for d in ("R1", "R2", "R3", "R4"):
        assert not (tmp / d).exists(), d  # no half-made run folders for rejected input


def test_cli_round_trip(tmp_path):
    pts = np.concatenate([np.random.default_rng(1).normal(size=(400, 2)) * 0.2 + c for c in ([2, 0], [-2, 0])])
    np.save(tmp_path / "pts.npy", pts.astype(np.float32))

    r = _lab(["teacher", "train", "--data", "pts.npy", "--steps", "200", "--out", "T", "--quiet"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "T" / "model.json").exists() and (tmp_path / "T" / "weights.safetensors").exists()
    assert lab.load(tmp_path / "T").card["data"].endswith("pts.npy")

    distill_args = ["distill", "--method", "reflow", "--teacher", "T", "--steps", "60", "--out", "S", "--quiet",
                    "--config", json.dumps({"n_pairs": 2000, "pair_steps": 8})]
    before_T = _tree(tmp_path / "T")
    with cf.ThreadPoolExecutor(max_workers=2) as ex:
        ok = ex.submit(_lab, distill_args, tmp_path)
        # distilling into a non-empty folder (the teacher's) is refused and leaves it unchanged
        clash = ex.submit(_lab, ["distill", "--method", "reflow", "--teacher", "T", "--steps", "60", "--out", "T",
                                 "--quiet"], tmp_path)
        r, rc = ok.result(), clash.result()
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_clean_error(rc)
    assert "not empty" in rc.stderr
    assert _tree(tmp_path / "T") == before_T

    assert {"config.json", "metrics.csv", "model.json", "weights.safetensors", "checkpoint.json",
            "checkpoint.safetensors"} <= set(_tree(tmp_path / "S"))
    r = _lab(["sample", "S", "--nfe", "1", "--n", "100", "--seed", "0", "--out", "s.npy"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    x = np.load(tmp_path / "s.npy", allow_pickle=False)
    assert x.shape == (100, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    # the same seed through the Python API gives the same numbers
    np.testing.assert_array_equal(lab.load(tmp_path / "S").sample(100, nfe=1, seed=0).x.numpy(), x)
    # and the student learned something about the data: samples sit near the two clusters, not at the origin
    assert np.abs(x[:, 0]).mean() > 1.0

