"""Checks of notebook 07 (distribution matching): predicates over values the learner measured in the run."""
from __future__ import annotations

from workshop import exercise

NB = "07_distribution_matching"


@exercise("07.1", notebook=NB, find="how different the real and fake scores are before and after fitting",
          check="the largest |real − fake| of the fresh method is below a hundredth of the fitted DMD method's")
def _(fresh_max_diff: float, fitted_max_diff: float) -> bool:
    return float(fresh_max_diff) < 0.01 * float(fitted_max_diff)


@exercise("07.2", notebook=NB, find="whether the fake score of the short DMD run kept up with its generator",
          check="the fake score's error at t = 0.2 at the last tracked step is below its error at the first")
def _(error_first: float, error_last: float) -> bool:
    return float(error_last) < float(error_first)


@exercise("07.3", notebook=NB, find="which one-step students land their samples on the modes",
          check="every student's high-quality share at 1 step is above the teacher's at 1 step, and each covers at "
                "least 7 of the 8 modes")
def _(student_high_quality: dict, student_modes: dict, teacher_high_quality: float) -> bool:
    hq, modes = dict(student_high_quality), dict(student_modes)
    return (len(hq) >= 5 and set(hq) == set(modes) and all(float(v) > float(teacher_high_quality) for v in hq.values())
            and all(int(v) >= 7 for v in modes.values()))
