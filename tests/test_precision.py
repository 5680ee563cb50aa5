"""--precision (autocast; fp16 loss scaling) and --compile (torch.compile) on the CPU.

bf16 and fp16 autocast both run on the CPU in torch 2.13 (fp16 with a GradScaler). A tiny consistency run (20
steps, metrics at steps 10 and 20) in each precision is compared with fp32 measured in the same test: the
relative loss difference must stay under 2% (measured: bf16 ~0.1%, fp16 ~0.02%) and must not be zero (autocast
really ran). --compile is checked on ONE step of a tiny MLP teacher: compiling the 20-step run took ~90 s on this
2-core CPU (inductor's C++ compile), far over the test budget.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from lab.cli import run as cli
from lab.methods import get_method
from lab.runs import Run
from lab.runs.recipes import distill_run

REL_TOL = 0.02


def _losses(folder) -> np.ndarray:
    return pd.read_csv(folder / "metrics.csv")["loss/consistency"].to_numpy()


def test_bf16_and_fp16_stay_within_2pct_of_fp32_and_are_kept_on_resume(tmp_path):
    c = get_method("consistency")
    runs = {p: distill_run("consistency", c.tiny_teacher, tmp_path / p, steps=20, config=c.tiny, progress=False,
                           precision=p, checkpoint_every=10).folder for p in ("fp32", "bf16", "fp16")}
    ref = _losses(runs["fp32"])
    for p in ("bf16", "fp16"):
        rel = np.abs(_losses(runs[p]) - ref) / np.abs(ref)
        print(p, "relative loss difference to fp32 at steps 10, 20:", rel.round(6).tolist())
        assert rel.max() < REL_TOL and rel.max() > 0, (p, rel)
    assert Run.open(runs["fp16"]).config["precision"] == "fp16" and "precision" not in Run.open(runs["fp32"]).config
    assert "scaler" in Run.open(runs["fp16"]).load_checkpoint()["trainable"]  # the loss scale is checkpointed
    # a resume rebuilds the run in its stored precision: 5 more steps of the bf16 run
    assert cli(["distill", "--resume", str(runs["bf16"]), "--steps", "25", "--quiet"]) == 0
    cfg = Run.open(runs["bf16"]).config
    assert cfg["precision"] == "bf16" and cfg["steps"] == 25


def test_fp16_dmd_runs_through_the_guard_where_its_scaled_gradients_overflow(tmp_path):
    """dmd's scaled fp16 gradients overflow on its first steps (the GradScaler then skips the step and lowers the
    scale); the divergence guard must not stop that run (it did: bench/device_check.py found it), and the run must
    still train: finite parameters, a lowered loss scale, and the same losses as fp32 within 5% at the end."""
    c = get_method("dmd")
    cfg = {**c.tiny, "batch": 64}
    runs = {p: distill_run("dmd", "toy2d/8gaussians/analytic", tmp_path / p, steps=20, config=cfg, progress=False,
                           precision=p, checkpoint_every=20).folder for p in ("fp32", "fp16")}
    scale = Run.open(runs["fp16"]).load_checkpoint()["trainable"]["scaler"]["scale"]
    assert float(scale) < 2.0 ** 16, scale  # the scaler met an overflow and lowered its initial scale
    last = {p: pd.read_csv(f / "metrics.csv").filter(like="loss/").iloc[-1] for p, f in runs.items()}
    rel = ((last["fp16"] - last["fp32"]).abs() / last["fp32"].abs()).max()
    print("fp16 vs fp32 relative loss difference at step 20:", rel, "scale", scale)
    assert np.isfinite(last["fp16"]).all() and rel < 0.05, (last, rel)


def test_bad_precision_and_device_are_one_line_errors(tmp_path, capsys):
    assert cli(["distill", "--method", "consistency", "--teacher", "toy2d/8gaussians/analytic", "--out",
                str(tmp_path / "x"), "--precision", "fp8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "fp32, bf16, fp16" in err and "\n" not in err
    assert cli(["sample", "toy2d/8gaussians/analytic", "--out", str(tmp_path / "s.npy"), "--device", "tpu"]) != 0
    err = capsys.readouterr().err.strip()
    assert "auto, cpu, cuda, cuda:N, mps" in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_compile_matches_eager_on_one_tiny_mlp_step():
    from lab.diffusion.train import TeacherTraining

    torch.set_num_threads(1)
    cfg = {"steps": 1, "batch": 16, "net": {"type": "mlp", "hidden": 16, "depth": 1, "t_dim": 8}}
    outs = []
    for compiled in (False, True):
        tr = TeacherTraining("toy2d:8gaussians", cfg, seed=3)
        if compiled:
            tr.compile()
        out = tr.step(tr.sample_batch(0), 0)
        outs.append((out.losses["denoise"], [p.detach().clone() for p in tr.net.parameters()]))
    (l0, p0), (l1, p1) = outs
    print("eager vs compiled loss:", l0, l1)
    assert abs(l0 - l1) < 1e-5 * max(1.0, abs(l0))
    assert max(float((a - b).abs().max()) for a, b in zip(p0, p1)) < 1e-6


def test_lab_device_is_what_the_apps_load_on_and_a_bad_one_is_a_one_line_error(monkeypatch):
    """The apps' device comes from $LAB_DEVICE through lab.trainable.default_device (cpu when unset); a value this
    machine cannot serve is refused with one line naming what is allowed, where the app loads its teacher."""
    import sys

    from lab.errors import LabError
    from lab.trainable import default_device

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "app"))
    import common

    monkeypatch.delenv("LAB_DEVICE", raising=False)
    assert default_device() == torch.device("cpu")
    monkeypatch.setenv("LAB_DEVICE", "cpu")
    teacher = common.load_teacher("8gaussians")
    assert all(p.device == torch.device("cpu") for net in teacher.nets().values() for p in net.parameters())
    for bad, allowed in (("tpu", "auto, cpu, cuda, cuda:N, mps"),
                         ("cuda" if not torch.cuda.is_available() else "cuda:99", "allowed")):
        monkeypatch.setenv("LAB_DEVICE", bad)
        try:
            default_device()
        except LabError as e:
            assert allowed in str(e) and "\n" not in str(e), str(e)
        else:
            raise AssertionError(f"LAB_DEVICE={bad} was accepted")
