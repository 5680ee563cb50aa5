"""Claim tests: each method's paper claim, reproduced at toy scale in the same test.

Every comparison is between numbers measured here, on the same noise and the same
reference data; nothing is compared against a stored number.
"""
from __future__ import annotations

import pytest

import lab
from lab.diffusion import straightness
from _claims import swd, teacher_bar  # the shared distance and bar; the `eight` fixture is in conftest.py

N = 4000




@pytest.mark.claim
def test_claim_progressive(eight):
    """Salimans & Ho: after k halvings the student at N/2^k steps beats the teacher at N/2^k steps."""
    src, teacher, ref, z = eight
    m = lab.get_method("progressive")(teacher, src, {"steps": 360, "start_steps": 8, "halvings": 2}, seed=0)
    after_first = None
    for state in lab.distill(m):
        if state.it == m._stage_len:  # end of halving 1: 8 -> 4 steps
            after_first = swd(m.generator(), 4, z, ref)
    after_second = swd(m.generator(), 2, z, ref)
    teacher4, teacher2 = swd(teacher, 4, z, ref), swd(teacher, 2, z, ref)
    assert after_first < teacher4, (after_first, teacher4)
    assert after_second < teacher2, (after_second, teacher2)


@pytest.mark.claim
def test_claim_consistency(eight):
    """Song et al. 2023 (Consistency Models: distilled 1- and 2-step samples close to the many-step
    teacher's): the 1- and 2-step consistency student is within BAR (1.5x) of the teacher at 50 NFE,
    and beats the teacher at the same NFE (1.37 / 0.46 here, against 0.09 at 50).

    800 steps (a 2000-step default): chosen on seeds 1-3 (1-step 1.01-1.03x, 2-step 0.89-0.90x the
    teacher at 50; 400 steps gave 1.47-1.50x at 1 step); asserted on seed 0."""
    src, teacher, ref, z = eight
    t50, bar = teacher_bar(teacher, z, ref)
    m = lab.get_method("consistency")(teacher, src, {"steps": 800}, seed=0)
    for _ in lab.distill(m):
        pass
    student = m.generator()
    for nfe in (1, 2):
        s, t = swd(student, nfe, z, ref), swd(teacher, nfe, z, ref)
        print(f"consistency nfe={nfe}: student {s:.4f} ({s / t50:.2f}x teacher@50 {t50:.4f}), teacher@{nfe} {t:.4f}")
        assert s < t, (nfe, s, t)
        assert s <= bar, (nfe, s, t50)


@pytest.mark.claim
def test_claim_reflow(eight):
    """Liu et al.: reflow straightens the paths, and the 1-step reflowed student beats the 1-step teacher."""
    src, teacher, ref, z = eight
    m = lab.get_method("reflow")(teacher, src, {"steps": 400, "n_pairs": 8000, "pair_steps": 32}, seed=0)
    for _ in lab.distill(m):
        pass
    student = m.generator()
    zz = z[:512]
    t_res = teacher.sample(z=zz, nfe=32, return_trajectory=True)
    s_res = lab.diffusion.FlowGenerator(student.flow).sample(z=zz, nfe=32, return_trajectory=True)
    s_teacher = straightness(t_res.trajectory, t_res.times).mean().item()
    s_student = straightness(s_res.trajectory, s_res.times).mean().item()
    assert s_student < 0.5 * s_teacher, (s_student, s_teacher)
    one_s, one_t = swd(student, 1, z, ref), swd(teacher, 1, z, ref)
    assert one_s < one_t, (one_s, one_t)


@pytest.mark.claim
def test_claim_dmd(eight):
    """Yin et al.: a one-step DMD generator gets close to the many-step teacher (within 1.5x of the
    teacher at 50 NFE, far below the teacher at 1 NFE). Ablation measured here: without the
    regression loss (1:1 updates) the generator puts fewer samples on the modes (share within
    3 sigma) and lands farther from the data; all 8 modes are covered with the regression loss."""
    from lab.metrics import mode_stats

    src, teacher, ref, z = eight
    small = {"steps": 400, "n_pairs": 4000, "pair_steps": 24}
    full = lab.get_method("dmd")(teacher, src, small, seed=0)
    for _ in lab.distill(full):
        pass
    no_reg = lab.get_method("dmd")(teacher, src, {**small, "reg_weight": 0.0}, seed=0)
    for _ in lab.distill(no_reg):
        pass
    one, t1, t50 = swd(full.generator(), 1, z, ref), swd(teacher, 1, z, ref), swd(teacher, 50, z, ref)
    assert one < t1 and one <= 1.5 * t50, (one, t1, t50)
    x_full = full.generator().sample(z=z, nfe=1).x
    x_abl = no_reg.generator().sample(z=z, nfe=1).x
    m_full, m_abl = mode_stats(x_full, src.gmm), mode_stats(x_abl, src.gmm)
    assert m_full["modes_covered"] == 8, m_full
    assert m_abl["high_quality"] < m_full["high_quality"], (m_abl, m_full)
    assert swd(no_reg.generator(), 1, z, ref) > one
