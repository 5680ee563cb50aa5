"""Claim tests for guidance distillation (Meng et al. 2023) and multi-student distillation (MSD,
Song et al. 2024), plus shape tests of their probe and figures.

Every comparison is between numbers measured here, on the same noise and the same reference;
nothing is compared against a stored number. Both methods need a class-conditional teacher:
the exact Gaussian-mixture teacher (labels = components) and, for MSD, its grouped variant
(each label a pair of opposite modes, ``lab.methods.distribution_matching.msd.grouped_teacher``).
"""
from __future__ import annotations

import copy

import plotly.graph_objects as go
import pytest
import torch

import lab
from lab.data import toy2d
from lab.diffusion import make_noise
from lab.errors import LabError
from lab.methods.distribution_matching.msd import grouped_teacher, matched_single_student, n_params
from lab.metrics import low_density_share, sliced_wasserstein
from lab.probes.guidance import guidance_sweep, student_split
from lab.viz.guidance import guidance_sweep_figure, guidance_sweep_lines, student_split_figure

N = 4000


def _train(name, teacher, data, cfg, seed=0):
    m = lab.get_method(name)(teacher, data, cfg, seed=seed)
    for _ in lab.distill(m):
        pass
    return m


@pytest.mark.claim
def test_claim_guidance_student_one_pass_per_step_matches_guided_teacher():
    """Meng et al. stage one: a w-conditioned student (1 network pass per step) matches the
    classifier-free-guided teacher (2 passes per step) at the same number of steps.

    4 Euler steps at w = 2 (convention v_u + w (v_c - v_u)); both from the same noise and labels;
    distance: mean per-class SWD to the guided teacher run with 64 steps from other noise.
    """
    src = toy2d.get("8gaussians")
    m = _train("guidance", "toy2d/8gaussians/analytic", "8gaussians", {})  # defaults: 2000 steps
    summary, _ = guidance_sweep(m.generator(), m.guided_teacher(), ws=(2.0,), nfe=4, n=N, gmm=src.gmm)
    t = summary[summary.model == "teacher"].iloc[0]
    s = summary[summary.model == "student"].iloc[0]
    assert s.passes * 2 == t.passes
    assert s.class_swd <= 1.25 * t.class_swd, summary.to_string()
    assert s.swd <= 1.25 * t.swd, summary.to_string()


@pytest.mark.claim
def test_claim_guidance_stage_two_halving_gives_a_two_step_guided_student():
    """Meng et al. stage two: progressively halving the w-conditioned student (8 -> 4 -> 2 steps)
    gives a 2-step student (2 passes) that beats the stage-one student at 2 steps and the guided
    teacher at 2 steps (4 passes), and is within 1.25x of the guided teacher at 4 steps (8 passes).

    w = 2; distance: mean per-class SWD to the 64-step guided teacher; the stage-one student is the
    same run's student just before stage two starts.
    """
    src = toy2d.get("8gaussians")
    m = lab.get_method("guidance")("toy2d/8gaussians/analytic", "8gaussians",
                                   {"steps": 1400, "halvings": 2, "start_steps": 8, "halving_steps": 300}, seed=0)
    stage_one = None
    for st in lab.distill(m):
        if st.it == m.stage_one_steps:
            stage_one = copy.deepcopy(m.generator())
    assert m.generator().native_nfe == (2,)
    two, _ = guidance_sweep(m.generator(), m.guided_teacher(), ws=(2.0,), nfe=2, n=N, gmm=src.gmm)
    one, _ = guidance_sweep(stage_one, m.guided_teacher(), ws=(2.0,), nfe=2, n=N, gmm=src.gmm)
    four, _ = guidance_sweep(m.generator(), m.guided_teacher(), ws=(2.0,), nfe=4, n=N, gmm=src.gmm)
    halved = two[two.model == "student"].iloc[0].class_swd
    teacher2 = two[two.model == "teacher"].iloc[0].class_swd
    teacher4 = four[four.model == "teacher"].iloc[0].class_swd
    stage1 = one[one.model == "student"].iloc[0].class_swd
    info = dict(halved=halved, stage_one=stage1, teacher_2_steps=teacher2, teacher_4_steps=teacher4)
    assert halved < stage1 and halved < teacher2, info
    assert halved <= 1.25 * teacher4, info


@pytest.mark.claim
def test_claim_msd_four_small_students_beat_one_of_the_same_total_size():
    """MSD: 4 one-step students, one condition each, beat ONE student with the same total
    parameter count serving all conditions, after the same number of optimiser steps.

    Conditions: the grouped exact teacher on 8 Gaussians (label = two opposite modes, so each
    condition is bimodal). Baselines: the single student on the same FLOPs (one batch of the
    same size as each small student's) and on the same number of samples (4x the batch).
    Distances: SWD to data and the share of samples between modes, from the same noise and labels.
    """
    src = toy2d.get("8gaussians")
    teacher = grouped_teacher("8gaussians", 4)
    cfg = {"n_students": 4}  # defaults: 800 steps, students hidden 16 x depth 2
    single_net = matched_single_student(cfg, 4)
    multi = _train("msd", teacher, "8gaussians", cfg)
    single = _train("msd", teacher, "8gaussians", {"n_students": 1, "student_net": single_net})
    single_wide = _train("msd", teacher, "8gaussians", {"n_students": 1, "student_net": single_net, "batch": 4 * 256})
    total = sum(n_params(s.net) for s in multi.students)
    assert abs(n_params(single.students[0].net) - total) <= 0.02 * total
    z, y, ref = make_noise(N, 2, seed=99), torch.arange(N) % 4, src.sample(N, 1234)
    xs = {k: m.generator().sample(z=z, y=y, nfe=1).x for k, m in
          (("multi", multi), ("single", single), ("single_4x_batch", single_wide))}
    d = {k: sliced_wasserstein(x, ref) for k, x in xs.items()}
    low = {k: low_density_share(x, src.gmm) for k, x in xs.items()}
    assert d["multi"] < d["single"] and d["multi"] < d["single_4x_batch"], (d, low)
    assert low["multi"] < low["single"] and low["multi"] < low["single_4x_batch"], (d, low)


def test_guidance_and_msd_refuse_an_unconditional_teacher():
    teacher = lab.zoo.load("toy2d/8gaussians/teacher", train_if_missing=False)
    for name in ("guidance", "msd"):
        with pytest.raises(LabError, match="class-conditional"):
            lab.get_method(name)(teacher, "8gaussians", {"steps": 1})


@pytest.mark.parametrize("bad,field", [({"start_steps": 6}, "start_steps"), ({"halvings": 4}, "halvings"),
                                       ({"steps": 100, "halvings": 1, "halving_steps": 100}, "steps"),
                                       ({"w_min": 3.0, "w_max": 1.0}, "w_min/w_max"), ({"traj_steps": [0]}, "traj_steps"),
                                       ({"student_net": {"type": "unet"}}, "student_net")])
def test_guidance_config_refuses_bad_rounds_and_weights(bad, field):
    """The halving rounds (shared with progressive: a power-of-two start, at most log2 of it halvings) and
    the guidance weights are checked when the config is built, in one line naming the field."""
    with pytest.raises(LabError, match=field) as ei:
        lab.get_method("guidance").Config(**bad)
    assert "\n" not in str(ei.value)


def test_guidance_probe_and_figures_have_the_expected_shape():
    m = _train("guidance", "toy2d/8gaussians/analytic", "8gaussians",
               {**lab.get_method("guidance").tiny, "steps": 5, "halvings": 0})
    summary, samples = guidance_sweep(m.generator(), m.guided_teacher(), ws=(0.0, 2.0), nfe=2, n=64, ref_steps=4,
                                      gmm=toy2d.get("8gaussians").gmm)
    assert list(summary.columns) == ["w", "model", "steps", "passes", "swd", "class_swd", "pair", "spread", "high_quality"]
    assert len(summary) == 4 and set(summary.model) == {"teacher", "student"}
    assert set(samples.columns) == {"w", "model", "x", "y", "label"} and len(samples) == 4 * 64
    for fig in (guidance_sweep_figure(summary, samples), guidance_sweep_lines(summary, "class_swd")):
        assert isinstance(fig, go.Figure) and len(fig.data) > 0
    # the guided teacher counts 2 passes per step; the student 1
    assert m.guided_teacher(2.0).sample(n=8, nfe=6, y=torch.zeros(8, dtype=torch.long)).nfe == 6
    assert m.generator().sample(n=8, nfe=3, y=torch.zeros(8, dtype=torch.long)).nfe == 3


def test_msd_split_probe_and_figure():
    m = _train("msd", "toy2d/8gaussians/analytic", "8gaussians", {**lab.get_method("msd").tiny, "steps": 3})
    df = student_split(m.generator(), n=64)
    assert list(df.columns) == ["x", "y", "label", "student"] and len(df) == 64
    assert set(df.student) == set(range(m.config.n_students))
    fig = student_split_figure(df)
    assert isinstance(fig, go.Figure) and len(fig.data) == m.config.n_students
