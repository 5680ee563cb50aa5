"""Checks of notebook 08 (data-free and guidance): predicates over values the learner measured in the run."""
from __future__ import annotations

from workshop import exercise

NB = "08_data_free_and_guidance"


@exercise("08.1", notebook=NB, find="whether a data-free flow map beats the teacher at the same step count",
          check="the flow map's one-step distance to the data is below half the teacher's one-step distance")
def _(swd_flowmap_1: float, swd_teacher_1: float) -> bool:
    return 0 <= float(swd_flowmap_1) < 0.5 * float(swd_teacher_1)


@exercise("08.2", notebook=NB, find="how the guidance weight changes the spread of each class in the student's samples",
          check="the student's class spread at w = 4 is below half its spread at w = 1")
def _(spread_w1: float, spread_w4: float) -> bool:
    return 0 <= float(spread_w4) < 0.5 * float(spread_w1)


@exercise("08.3", notebook=NB, find="what the multi-student generator's router does",
          check="the share of samples on their own label's mode is above 0.9 with the true route and below 0.1 "
                "with the shifted route")
def _(own_mode_true: float, own_mode_shifted: float) -> bool:
    return float(own_mode_true) > 0.9 and float(own_mode_shifted) < 0.1
