"""Probes return data; viz only draws it."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import lab
from lab import probes, viz
from lab.data import toy2d
from lab.errors import LabError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup():
    src = toy2d.get("8gaussians")
    teacher = lab.zoo.load("toy2d/8gaussians/analytic")
    small = {"batch": 64, "student_net": {"type": "mlp", "hidden": 32, "depth": 2, "t_dim": 16}}
    return src, teacher, small


def test_targets_progressive_on_grid_match_two_teacher_steps(setup):
    """The progressive target is the x0 whose single DDIM step lands where two teacher half-steps land."""
    src, teacher, small = setup
    m = lab.get_method("progressive")(teacher, src, {**small, "steps": 4, "start_steps": 4, "halvings": 1})
    df = probes.targets(m, t=0.75, n=49)
    assert (df["on"] == "grid").all() and (df["space"] == "x0").all() and len(df) == 49
    # check one point by hand: student grid N_s = 2, step 0.5 from t = 0.75 (probe snaps nothing for progressive)
    proc = teacher.denoiser.process
    x = torch.tensor(df[["x", "y"]].values, dtype=torch.float32)
    t = torch.full((len(x),), 0.75)
    mid, s = t - 0.25, t - 0.5
    z_mid = proc.ddim_step(x, t, mid, teacher.denoiser.x0(x, t))
    z_s = proc.ddim_step(z_mid, mid, s, teacher.denoiser.x0(z_mid, mid))
    x0_tg = torch.tensor(df[["target_x", "target_y"]].values, dtype=torch.float32)
    one_step = proc.ddim_step(x, t, s, x0_tg)
    assert torch.allclose(one_step, z_s, atol=1e-4)
    # and the target differs from the teacher's one-shot x0 (otherwise the probe shows nothing)
    assert float(np.abs(df.target_x - df.teacher_x).mean()) > 1e-3


def test_targets_reflow_falls_back_to_data(setup):
    src, teacher, small = setup
    m = lab.get_method("reflow")(teacher, src, {**small, "steps": 4, "n_pairs": 256, "pair_steps": 4})
    df = probes.targets(m, t=0.5, n=64)
    assert (df["on"] == "data").all() and (df["space"] == "v").all()
    with pytest.raises(LabError):
        probes.targets(m, t=0.5, on="grid")
    with pytest.raises(LabError):
        probes.targets(m, t=1.5)
    fig = viz.targets_figure(df)
    assert len(fig.data) >= 2


def test_trajectories_and_straightness(setup):
    src, teacher, small = setup
    m = lab.get_method("reflow")(teacher, src, {**small, "steps": 2, "n_pairs": 256, "pair_steps": 4})
    paths, summ = probes.trajectories(teacher, m.generator(), n=16, teacher_nfe=20, student_nfe=2)
    assert set(paths.model) == {"teacher", "student"}
    assert paths[paths.model == "teacher"].k.max() == 20 and paths[paths.model == "student"].k.max() == 2
    # a 2-step Euler path has one bend at most; the 20-step teacher path through a mixture bends more
    assert (summ.straightness >= 0).all()
    fig = viz.trajectories_figure(paths, summ)
    assert any("straightness" in (tr.name or "") for tr in fig.data)


def test_sample_panels_same_noise(setup):
    src, teacher, _ = setup
    df = probes.sample_panels(teacher, {"same": teacher}, src, n=300, teacher_nfe=4, student_nfe=(4, 1))
    a = df[(df.model == "teacher")][["x", "y"]].values
    b = df[(df.model == "same") & (df.nfe == 4)][["x", "y"]].values
    assert np.allclose(a, b)  # same noise, same model, same NFE -> same points
    summ = probes.panel_summary(df)
    one = summ[(summ.model == "same") & (summ.nfe == 1)].swd.item()
    four = summ[(summ.model == "same") & (summ.nfe == 4)].swd.item()
    assert one > four  # 1 Euler step of the exact teacher collapses towards the mean
    fig = viz.sample_panels_figure(df)
    assert len(fig.data) == 3 and "teacher @ 4 NFE" in fig.layout.annotations[0].text


def test_sample_panels_show_students_at_native_nfe(setup):
    src, teacher, _ = setup
    one_step = lab.diffusion.ConsistencyGenerator(teacher.denoiser, native_nfe=(1,))
    df = probes.sample_panels(teacher, {"one": one_step, "ode": teacher}, src, n=100, teacher_nfe=4, student_nfe=(1, 2, 4))
    assert sorted(df[df.model == "one"].nfe.unique()) == [1]
    assert sorted(df[df.model == "ode"].nfe.unique()) == [1, 2, 4]  # no native NFE: every requested one
    df_all = probes.sample_panels(teacher, {"one": one_step}, src, n=100, teacher_nfe=4, student_nfe=(1, 2), native_only=False)
    assert sorted(df_all[df_all.model == "one"].nfe.unique()) == [1, 2]
    assert probes.panel_nfes(lab.diffusion.ConsistencyGenerator(teacher.denoiser, native_nfe=(8,)), (1, 2, 4)) == (8,)


def test_lab_never_imports_app_frameworks():
    for path in (ROOT / "lab").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for n in names:
                assert n.split(".")[0] not in {"streamlit", "gradio"}, f"{path} imports {n}"


def test_dmd_target_is_the_sample_moved_by_real_minus_fake(setup):
    """DMD pushes G(z) towards x - grad, grad = (x0_fake - x0_real) / mean|x - x0_real|."""
    src, teacher, small = setup
    m = lab.get_method("dmd")(teacher, src, {**small, "steps": 2, "n_pairs": 64, "pair_steps": 4})
    with torch.no_grad():  # make the fake score differ from the real one
        for p in m.fake.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    df = probes.targets(m, t=0.5, n=64)
    assert (df["on"] == "data").all() and (df["space"] == "x0").all()
    tg = m.targets(m.probe_batch(64, 0.5), t=0.5)
    x = tg.info["generator_sample"]
    norm = (x - tg.teacher).abs().mean(-1, keepdim=True)
    assert torch.allclose(tg.target, x - (tg.student - tg.teacher) / norm, atol=1e-5)
    assert float((tg.target - x).norm(dim=-1).mean()) > 1e-3
