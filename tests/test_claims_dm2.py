"""Claim tests for DMD2 (Yin et al. 2024, "Improved Distribution Matching Distillation").

Every comparison is between numbers measured here, on the same noise and the same reference
data; nothing is compared against a stored number.
"""
from __future__ import annotations

import pytest

import lab
from lab.metrics import low_density_share, mode_stats
from _claims import swd  # the shared distance; the `eight` fixture is in conftest.py

N = 4000
STEPS, LR = 200, 4e-4  # measured: see lab/methods/distribution_matching/dmd2.py fidelity notes




def _train(name, teacher, src, cfg, callbacks=()):
    m = lab.get_method(name)(teacher, src, cfg, seed=0)
    for _ in lab.distill(m, callbacks=callbacks):
        pass
    return m


@pytest.mark.claim
def test_claim_dmd2_two_time_scale_beats_one_to_one_without_regression(eight):
    """Yin et al. 2024: without DMD's regression loss, a one-step generator still gets close to the
    many-step teacher (within 1.5x of the teacher at 50 NFE, below the teacher at 1 NFE) once the
    fake score is updated several times per generator step (two-time-scale rule). Ablation from the
    issue, measured here with the same steps and learning rates: DMD without the regression loss
    and with a 1:1 update ratio puts fewer samples on the modes, more between them, and lands
    farther from the data. The paper's diagnosis, measured with the fake-score probe: with 1:1
    updates the fake score tracks the generator's distribution worse (larger error against the
    exact score of the noised generator samples, averaged over training, at every t checked)."""
    from lab.probes.dm import FakeScoreTracker

    src, teacher, ref, z = eight
    common = {"steps": STEPS, "lr": LR, "lr_fake": LR}
    tr2, tra = FakeScoreTracker(every=50), FakeScoreTracker(every=50)
    dmd2 = _train("dmd2", teacher, src, {**common, "fake_updates": 5, "gan_weight": 0.0}, [tr2])
    abl = _train("dmd", teacher, src, {**common, "reg_weight": 0.0, "fake_updates": 1}, [tra])
    one, t1, t50 = swd(dmd2.generator(), 1, z, ref), swd(teacher, 1, z, ref), swd(teacher, 50, z, ref)
    print(f"dmd2 1-step {one:.4f}, teacher@1 {t1:.4f}, teacher@50 {t50:.4f}")
    assert one < t1 and one <= 1.5 * t50, (one, t1, t50)
    x2 = dmd2.generator().sample(z=z, nfe=1).x
    xa = abl.generator().sample(z=z, nfe=1).x
    m2, ma = mode_stats(x2, src.gmm), mode_stats(xa, src.gmm)
    print("dmd2", m2, low_density_share(x2, src.gmm), "| dmd no-reg 1:1", ma, low_density_share(xa, src.gmm),
          swd(abl.generator(), 1, z, ref))
    assert m2["modes_covered"] == 8 and m2["modes_covered"] >= ma["modes_covered"], (m2, ma)
    assert ma["high_quality"] < m2["high_quality"], (ma, m2)
    assert low_density_share(xa, src.gmm) > low_density_share(x2, src.gmm)
    assert swd(abl.generator(), 1, z, ref) > one
    err2, erra = (tr.frame().query("it > 0").groupby("t").error_eps.mean() for tr in (tr2, tra))
    print("fake-score error (eps units) dmd2:", err2.round(4).to_dict(), "dmd 1:1:", erra.round(4).to_dict())
    assert (err2 < erra).all(), (err2, erra)


@pytest.mark.claim
def test_claim_dmd2_backward_simulation_beats_noised_data_inputs(eight):
    """Yin et al. 2024, multi-step generator: training the k-step generator on inputs produced by
    its own chain (backward simulation) removes the training/inference mismatch. Ablation measured
    here with the same settings: the same 4-step generator trained on noised real data at the
    intermediate times samples worse at 4 NFE (the paper's mismatch). The 4-step backward-simulated
    generator also stays within 1.5x of the teacher at 50 NFE and beats the teacher at 4 NFE."""
    src, teacher, ref, z = eight
    cfg = {"steps": STEPS, "lr": LR, "lr_fake": LR, "gen_steps": 4}
    back = _train("dmd2", teacher, src, cfg)
    data = _train("dmd2", teacher, src, {**cfg, "sim_inputs": "data"})
    s_back, s_data = swd(back.generator(), 4, z, ref), swd(data.generator(), 4, z, ref)
    t4, t50 = swd(teacher, 4, z, ref), swd(teacher, 50, z, ref)
    print(f"4-step: backward simulation {s_back:.4f}, noised-data inputs {s_data:.4f}, teacher@4 {t4:.4f}, @50 {t50:.4f}")
    assert s_back < s_data, (s_back, s_data)
    assert s_back <= 1.5 * t50 and s_back < t4, (s_back, t4, t50)
