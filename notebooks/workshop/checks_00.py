"""Checks of notebook 00_quickstart (see ``workshop/__init__.py``)."""
from workshop import exercise

NB = "00_quickstart"


@exercise("00.1", notebook=NB, find="the fewest teacher steps (NFE) whose samples are within 1.5 times the noise "
          "floor of the data",
          check="the teacher's distance to data at your NFE is within 1.5 times the noise floor, and at half that "
                "NFE it is not")
def _(nfe: int, swd_at_nfe: float, swd_at_half: float, floor: float) -> bool:
    return int(nfe) >= 2 and swd_at_nfe <= 1.5 * floor < swd_at_half


@exercise("00.2", notebook=NB, find="the largest teacher NFE that the one-step consistency student still beats "
          "by more than a factor of two (what distillation buys)",
          check="the teacher at your NFE is more than twice as far from the data as the 1-step student, and at "
                "twice your NFE it is not")
def _(student_1: float, teacher_at_nfe: float, teacher_at_double: float) -> bool:
    return teacher_at_nfe > 2 * student_1 >= teacher_at_double


@exercise("00.3", notebook=NB, find="whether the short distillation run of section 2 already helped the student",
          check="your trained student's 1-step distance to data is below three quarters of the untrained student's")
def _(trained_1: float, untrained_1: float) -> bool:
    return trained_1 < 0.75 * untrained_1
