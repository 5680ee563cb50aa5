"""Shared by the claim tests: the 8-Gaussians setup (zoo teacher, fixed reference data and noise)
and the distance every claim compares. The ``eight`` fixture in conftest.py returns ``setup()``."""
from __future__ import annotations

import lab
from lab.data import toy2d
from lab.diffusion import make_noise
from lab.metrics import sliced_wasserstein

N = 4000


def setup():
    """(source, zoo teacher, N fresh reference points, N noise draws): the same in every claim test."""
    src = toy2d.get("8gaussians")
    teacher = lab.zoo.load("toy2d/8gaussians/teacher", train_if_missing=False)
    return src, teacher, src.sample(N, 1234), make_noise(N, 2, seed=99)


def swd(gen, nfe, z, ref) -> float:
    """Sliced Wasserstein distance of ``gen`` at ``nfe`` from noise ``z`` to the reference points."""
    return float(sliced_wasserstein(gen.sample(z=z, nfe=nfe, seed=7).x, ref))
