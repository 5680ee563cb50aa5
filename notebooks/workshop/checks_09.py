"""Checks of notebook 09 (images): predicates over values the learner measured in the run."""
from __future__ import annotations

from workshop import exercise

NB = "09_images"


@exercise("09.1", notebook=NB, find="what distillation buys at one step on digits",
          check="the consistency student's one-step FD-digits is below half the teacher's one-step FD-digits")
def _(fd_student_1: float, fd_teacher_1: float) -> bool:
    return 0 <= float(fd_student_1) < 0.5 * float(fd_teacher_1)


@exercise("09.2", notebook=NB, find="how early in its 8 steps the teacher settles its digit",
          check="halfway, the teacher's prediction is closer to its final sample than half the distance of its first "
                "prediction")
def _(gap_first: float, gap_half: float) -> bool:
    return 0 <= float(gap_half) < 0.5 * float(gap_first)


@exercise("09.3", notebook=NB, find="how to export a pipeline that draws only one class",
          check="the classifier reads more than 80% of the label-3 pipeline's images as a 3 and fewer than 50% of "
                "the unconditional pipeline's")
def _(share_three_label: float, share_three_unconditional: float) -> bool:
    return float(share_three_label) > 0.8 and float(share_three_unconditional) < 0.5
