"""Shared by the claim tests: the 8-Gaussians setup (zoo teacher, fixed reference data and noise),
the distance every claim compares, and the bar the few-step papers claim. The ``eight`` fixture in
conftest.py returns ``setup()``."""
from __future__ import annotations

import lab
from lab.data import toy2d
from lab.diffusion import make_noise
from lab.metrics import sliced_wasserstein

N = 4000
#: the bar the few-step papers claim: the student at its native NFE within this factor of the teacher at
#: TEACHER_NFE (on this setup the teacher is 1.37 at 1 NFE, 0.46 at 2 and 0.09 at 50: beating the teacher at
#: the student's own NFE alone passes a student 5-15x worse than the teacher's 50-step samples)
BAR, TEACHER_NFE = 1.5, 50


def setup():
    """(source, zoo teacher, N fresh reference points, N noise draws): the same in every claim test."""
    src = toy2d.get("8gaussians")
    teacher = lab.zoo.load("toy2d/8gaussians/teacher", train_if_missing=False)
    return src, teacher, src.sample(N, 1234), make_noise(N, 2, seed=99)


def swd(gen, nfe, z, ref) -> float:
    """Sliced Wasserstein distance of ``gen`` at ``nfe`` from noise ``z`` to the reference points."""
    return float(sliced_wasserstein(gen.sample(z=z, nfe=nfe, seed=7).x, ref))


def teacher_bar(teacher, z, ref) -> tuple[float, float]:
    """(the teacher's SWD at TEACHER_NFE, BAR times it): measured on the caller's noise and reference."""
    t50 = swd(teacher, TEACHER_NFE, z, ref)
    return t50, BAR * t50
