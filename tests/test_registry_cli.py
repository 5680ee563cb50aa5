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
from lab.config import config_from_dict
from lab.diffusion.train import TeacherConfig
from lab.errors import LabError
from lab.methods import MethodConfig, get_method, list_methods, register
from lab.nets import build_net


PY = sys.executable
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
    from lab.methods import REGISTRY

    original = REGISTRY["reflow"]
    try:
        with pytest.raises(LabError, match="registered twice"):
            register("reflow")(type("Dup", (), {}))
    finally:
        REGISTRY["reflow"] = original
    assert get_method("reflow").__name__ == "Reflow"


@pytest.mark.parametrize("method,field,value", [
    ("progressive", "halvings", 0),
    ("progressive", "halvings", 7),
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
        config_from_dict(cls, {field: value})
    assert field in str(ei.value)


def test_unknown_config_field_and_bad_student_net():
    with pytest.raises(LabError) as ei:
        config_from_dict(get_method("progressive").Config, {"halving": 2})
    assert "halving" in str(ei.value) and "halvings" in str(ei.value)
    with pytest.raises(LabError, match="unknown config field"):
        get_method("reflow")(lab.zoo.load(ANALYTIC), "toy2d:8gaussians", {"nope": 1})
    with pytest.raises(LabError, match="unknown network type 'transformer'; allowed: mlp, unet"):
        get_method("progressive")(lab.zoo.load(ANALYTIC), "toy2d:8gaussians", {"student_net": {"type": "transformer"}})
    with pytest.raises(LabError, match=r"a unet spec needs image data \(C, H, W\)"):
        get_method("progressive")(lab.zoo.load(ANALYTIC), "toy2d:8gaussians", {"student_net": {"type": "unet"}})


def test_misspelt_network_option_is_a_laberror():
    """--config '{"student_net": {"type": "mlp", "hiden": 8}}' is bad user input: a LabError naming the key."""
    with pytest.raises(LabError, match="hiden"):
        get_method("progressive")(lab.zoo.load(ANALYTIC), "toy2d:8gaussians", {"student_net": {"type": "mlp", "hiden": 8}})
    with pytest.raises(LabError, match="widht"):  # the teacher's --config net spec goes through the same builder
        build_net({"type": "mlp", "widht": 3})


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
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LAB_NUM_THREADS": "1"})
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
    return {
        "unknown_method": ["distill", "--method", "nope", "--teacher", ANALYTIC, "--out", "R1", "--quiet"],
        "bad_data_spec": ["teacher", "train", "--data", "points.parquet", "--out", "R2", "--quiet"],
        "bad_config_json": ["distill", "--method", "reflow", "--teacher", ANALYTIC, "--out", "R3", "--quiet",
                            "--config", "{n_pairs: 10"],
        "steps_zero": ["teacher", "train", "--data", "pts.npy", "--out", "R4", "--steps", "0", "--quiet"],
        "sample_existing_file": ["sample", ANALYTIC, "--n", "10", "--out", "existing.npy"],
        "sample_missing_folder": ["sample", "no_such_model_dir", "--n", "10", "--out", "s_missing.npy"],
    }


DISTILL = ["distill", "--method", "reflow", "--teacher", "T", "--steps", "60", "--out", "S", "--quiet",
           "--config", json.dumps({"n_pairs": 2000, "pair_steps": 8})]


def _round_trip(tmp: Path) -> dict:
    """teacher train -> distill -> (sample || distill into the same --out again); stops at the first failure."""
    out = {}
    pts = np.concatenate([np.random.default_rng(1).normal(size=(400, 2)) * 0.2 + c for c in ([2, 0], [-2, 0])])
    np.save(tmp / "pts.npy", pts.astype(np.float32))
    out["teacher"] = _lab(["teacher", "train", "--data", "pts.npy", "--steps", "200", "--out", "T", "--quiet"], tmp)
    if out["teacher"].returncode != 0:
        return out
    out["distill"] = _lab(DISTILL, tmp)
    if out["distill"].returncode != 0:
        return out
    out["S_before"] = _tree(tmp / "S")
    with cf.ThreadPoolExecutor(max_workers=2) as ex:
        smp = ex.submit(_lab, ["sample", "S", "--nfe", "1", "--n", "100", "--seed", "0", "--out", "s.npy"], tmp)
        again = ex.submit(_lab, DISTILL, tmp)  # same --out S again: must be refused, S untouched
        out["sample"], out["again"] = smp.result(), again.result()
    out["S_after"] = _tree(tmp / "S")
    return out


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Every `lab` invocation of this module, run concurrently (each one pays the torch import)."""
    err_dir, rt_dir = tmp_path_factory.mktemp("cli_errors"), tmp_path_factory.mktemp("cli_round_trip")
    cases = _error_cases(err_dir)
    cases["methods"] = ["methods"]
    with cf.ThreadPoolExecutor(max_workers=4) as ex:
        chain = ex.submit(_round_trip, rt_dir)
        futs = {k: ex.submit(_lab, a, err_dir) for k, a in cases.items()}
        results = {k: f.result() for k, f in futs.items()}
        return {"err_dir": err_dir, "errors": results, "rt_dir": rt_dir, "rt": chain.result()}


def test_cli_methods_lists_the_three(cli):
    r = cli["errors"]["methods"]
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines() if line and not line.startswith(" ")]
    assert {"consistency", "progressive", "reflow"} <= set(names)
    assert r.stderr == ""


@pytest.mark.parametrize("case", ["unknown_method", "bad_data_spec", "bad_config_json", "steps_zero",
                                  "sample_existing_file", "sample_missing_folder"])
def test_cli_bad_input_is_one_error_line_exit_2(cli, case):
    _assert_clean_error(cli["errors"][case])


def test_cli_error_messages_are_specific_and_nothing_is_written(cli):
    tmp, res = cli["err_dir"], cli["errors"]
    assert "nope" in res["unknown_method"].stderr and "reflow" in res["unknown_method"].stderr
    assert "points.parquet" in res["bad_data_spec"].stderr
    assert "--config" in res["bad_config_json"].stderr
    assert "--steps" in res["steps_zero"].stderr
    assert "exists" in res["sample_existing_file"].stderr
    assert "no_such_model_dir" in res["sample_missing_folder"].stderr
    assert (tmp / "existing.npy").read_bytes() == b"keep me"
    assert not (tmp / "s_missing.npy").exists()
    for d in ("R1", "R2", "R3", "R4"):
        assert not (tmp / d).exists(), d  # no half-made run folders for rejected input


def test_cli_round_trip(cli):
    tmp, rt = cli["rt_dir"], cli["rt"]
    for step in ("teacher", "distill", "sample"):
        assert step in rt and rt[step].returncode == 0, (step, rt[step].stderr[-3000:] if step in rt else "not run")
    assert (tmp / "T" / "model.json").exists() and (tmp / "T" / "weights.safetensors").exists()
    assert lab.load(tmp / "T").card["data"].endswith("pts.npy")
    assert {"config.json", "metrics.csv", "model.json", "weights.safetensors", "checkpoint.prev.safetensors",
            "checkpoint.safetensors"} <= set(rt["S_before"])
    x = np.load(tmp / "s.npy", allow_pickle=False)
    assert x.shape == (100, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    # the same seed through the Python API gives the same numbers
    np.testing.assert_array_equal(lab.load(tmp / "S").sample(100, nfe=1, seed=0).x.numpy(), x)
    # the student learned something about the data: samples sit near the two clusters, not at the origin
    assert np.abs(x[:, 0]).mean() > 1.0


def test_cli_distill_into_existing_run_folder_is_refused(cli):
    rt = cli["rt"]
    assert "again" in rt, "round trip did not get that far"
    _assert_clean_error(rt["again"])
    assert "not empty" in rt["again"].stderr
    assert rt["S_after"] == rt["S_before"]  # same files, same bytes, same mtimes


def test_readme_lists_every_method():
    """The README's method table is the user's map: a new method must be added to it."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [m for m in lab.list_methods() if f"| `{m}` |" not in readme]
    assert not missing, f"README.md's method table lacks: {', '.join(missing)}"
