"""Checks of notebook 05 (a diffusion refresher): predicates over values the learner measured in the run."""
from __future__ import annotations

from workshop import exercise

NB = "05_diffusion_refresher"


@exercise("05.1", notebook=NB, find="the flow-matching velocity target of the linear process",
          check="the reconstruction x_t − t·v is within 1e-5 of x0 while the wrong sign misses it by more than 0.1")
def _(recon_error: float, wrong_sign_error: float) -> bool:
    return float(recon_error) < 1e-5 and float(wrong_sign_error) > 0.1


@exercise("05.2", notebook=NB, find="the smallest NFE at which the teacher is as good as it gets",
          check="the teacher's distance at your NFE is within 1.25x of its distance at 50 NFE, and at the next "
                "smaller NFE measured it is not")
def _(nfe: int, teacher_quality: dict) -> bool:
    q = {int(k): float(v) for k, v in dict(teacher_quality).items()}
    best, nfe = q[50], int(nfe)
    smaller = [k for k in q if k < nfe]
    return q[nfe] <= 1.25 * best and (not smaller or q[max(smaller)] > 1.25 * best)


@exercise("05.3", notebook=NB, find="where the teacher's one-step samples land",
          check="the one-step samples' mean distance from the origin is less than half the data's")
def _(one_step_radius: float, data_radius: float) -> bool:
    return float(one_step_radius) < 0.5 * float(data_radius)
