"""Claim tests for DMD2 (Yin et al. 2024, "Improved Distribution Matching Distillation").

Every comparison is between numbers measured here, on the same noise and the same reference
data; nothing is compared against a stored number.
"""
from __future__ import annotations

import pytest

import lab
from _claims import swd  # the shared distance; the `eight` fixture is in conftest.py

N = 4000
STEPS, LR = 200, 4e-4  # measured: see lab/methods/distribution_matching/dmd2.py fidelity notes




def _train(name, teacher, src, cfg, callbacks=()):
    m = lab.get_method(name)(teacher, src, cfg, seed=0)
    for _ in lab.distill(m, callbacks=callbacks):
        pass
    return m


ABLATION_SEEDS = (4, 5, 6)  # the settings below were chosen on seeds 1-3; these seeds were not looked at


@pytest.mark.claim
def test_claim_dmd2_two_time_scale_beats_one_to_one_without_regression(eight):
    """Yin et al. 2024 (DMD2, two-time-scale update rule): without DMD's regression loss, a one-step
    generator still gets close to the many-step teacher once the fake score is updated several times
    per generator step. Ablation of that rule alone, with ``dmd2`` itself: its default 5 fake-score
    updates per generator step against 1, everything else equal (200 steps, batch 256, lr 4e-4 for
    both networks, gradient clipping, no GAN term, no generator EMA), on the same seeds.

    Asserted on ABLATION_SEEDS: with 5:1 every 1-step student is below the teacher at 1 NFE with all 8
    modes covered (the 1.5x bar is asserted at the default batch in the next test: at batch 256 seed 6
    missed it, 0.142 = 1.59x the teacher at 50, seeds 4 and 5 made it); 5:1 has the lower 1-step SWD and the
    larger share of samples on the modes (within 3 sigma) on every seed, each by a mean gap larger
    than one standard deviation across seeds (of the paired differences and of either arm). The paper's
    diagnosis, measured with the fake-score probe: with 1:1 updates the fake score tracks the
    generator's distribution worse (larger error against the exact score of the noised generator
    samples, averaged over training) at every t checked, on every seed.
    Seeds 1-3 (used to choose the settings): 1-step SWD 0.121 / 0.109 / 0.106 with 5:1 against 0.257 /
    0.252 / 0.277 with 1:1; at batch 512 the gap was larger but 1:1 more erratic (0.28-0.65) and both arms
    together took ~55 s of CPU for three seeds."""
    import statistics

    from lab.metrics import mode_stats
    from lab.probes.dm import FakeScoreTracker

    src, teacher, ref, z = eight
    t1, t50 = swd(teacher, 1, z, ref), swd(teacher, 50, z, ref)
    common = {"steps": STEPS, "batch": 256, "lr": LR, "lr_fake": LR, "gan_weight": 0.0, "ema": 0.0, "beta1": 0.9}
    rows = {5: [], 1: []}
    for seed in ABLATION_SEEDS:
        for fu in rows:
            tr = FakeScoreTracker(every=50)
            m = lab.get_method("dmd2")(teacher, src, {**common, "fake_updates": fu}, seed=seed)
            for _ in lab.distill(m, callbacks=[tr]):
                pass
            gen = m.generator()
            ms = mode_stats(gen.sample(z=z, nfe=1).x, src.gmm)
            err = tr.frame().query("it > 0").groupby("t").error_eps.mean()
            rows[fu].append({"swd": swd(gen, 1, z, ref), "hq": ms["high_quality"], "modes": ms["modes_covered"],
                             "err": err})
    for fu, rs in rows.items():
        print(f"dmd2 {fu}:1  swd {[round(r['swd'], 4) for r in rs]}  on-mode share {[round(r['hq'], 3) for r in rs]}"
              f"  modes {[r['modes'] for r in rs]}  fake-score error {[r['err'].round(4).to_dict() for r in rs]}")
    print(f"teacher@1 {t1:.4f}, teacher@50 {t50:.4f}")
    two, one = rows[5], rows[1]
    for r in two:
        assert r["swd"] < t1 and r["modes"] == 8, (r, t1, t50)

    def wins_by_a_std(better, worse):
        diff = [w - b for b, w in zip(better, worse)]
        assert all(d > 0 for d in diff), (better, worse)
        assert statistics.mean(diff) > max(statistics.stdev(diff), statistics.stdev(better), statistics.stdev(worse)), \
            (better, worse)

    wins_by_a_std([r["swd"] for r in two], [r["swd"] for r in one])
    wins_by_a_std([-r["hq"] for r in two], [-r["hq"] for r in one])  # larger share on the modes
    for a, b in zip(two, one):
        assert (a["err"] < b["err"]).all(), (a["err"], b["err"])


@pytest.mark.claim
def test_claim_dmd2_one_step_is_within_1p5x_of_the_teacher(eight):
    """Yin et al. 2024: without DMD's regression loss, DMD2's one-step generator gets close to the
    many-step teacher: 1-step SWD within 1.5x of the teacher at 50 NFE and below the teacher at 1 NFE.
    The recipe is pinned (the defaults when written: 200 steps, lr 4e-4 for both networks, 5 fake-score
    updates per generator step, batch 512, no GAN term, no generator EMA); seeds 0-3 were looked at
    (1.04x, 1.20x, 1.07x, 1.03x), this one (7) was not."""
    src, teacher, ref, z = eight
    cfg = {"steps": STEPS, "lr": LR, "lr_fake": LR, "fake_updates": 5, "gan_weight": 0.0, "ema": 0.0, "beta1": 0.9}
    m = lab.get_method("dmd2")(teacher, src, cfg, seed=7)
    for _ in lab.distill(m):
        pass
    one, t1, t50 = swd(m.generator(), 1, z, ref), swd(teacher, 1, z, ref), swd(teacher, 50, z, ref)
    print(f"dmd2 1-step {one:.4f} ({one / t50:.2f}x teacher@50 {t50:.4f}), teacher@1 {t1:.4f}")
    assert one < t1 and one <= 1.5 * t50, (one, t1, t50)


@pytest.mark.claim
def test_claim_dmd2_backward_simulation_beats_noised_data_inputs(eight):
    """Yin et al. 2024, multi-step generator: training the k-step generator on inputs produced by
    its own chain (backward simulation) removes the training/inference mismatch. Ablation measured
    here with the same settings: the same 4-step generator trained on noised real data at the
    intermediate times samples worse at 4 NFE (the paper's mismatch). The 4-step backward-simulated
    generator also stays within 1.5x of the teacher at 50 NFE and beats the teacher at 4 NFE."""
    src, teacher, ref, z = eight
    # the settings the fidelity notes measured this with (dmd2's defaults before the issue-16 retune)
    cfg = {"steps": STEPS, "lr": LR, "lr_fake": LR, "gen_steps": 4, "fake_updates": 5, "ema": 0.0, "beta1": 0.9}
    back = _train("dmd2", teacher, src, cfg)
    data = _train("dmd2", teacher, src, {**cfg, "sim_inputs": "data"})
    s_back, s_data = swd(back.generator(), 4, z, ref), swd(data.generator(), 4, z, ref)
    t4, t50 = swd(teacher, 4, z, ref), swd(teacher, 50, z, ref)
    print(f"4-step: backward simulation {s_back:.4f}, noised-data inputs {s_data:.4f}, teacher@4 {t4:.4f}, @50 {t50:.4f}")
    assert s_back < s_data, (s_back, s_data)
    assert s_back <= 1.5 * t50 and s_back < t4, (s_back, t4, t50)
