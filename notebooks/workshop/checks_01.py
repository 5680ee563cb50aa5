"""Checks of notebook 01_kd_basics (see ``workshop/__init__.py``)."""
from workshop import exercise

NB = "01_kd_basics"


@exercise("01.1", notebook=NB, find="the lowest temperature of the sweep at which the teacher's soft labels carry "
          "at least 20% of their mass on the non-argmax classes",
          check="the non-argmax mass is at least 0.2 at your temperature and below 0.2 at the next lower "
                "temperature of the sweep")
def _(mass_at_T: float, mass_at_lower: float) -> bool:
    return mass_at_T >= 0.2 > mass_at_lower


@exercise("01.2", notebook=NB, find="which digit the teacher thinks a 3 looks most like (dark knowledge)",
          check="your digit has the largest mean soft-label probability (T = 4) over the test 3s among the classes "
                "other than 3")
def _(similar: int, soft_mean) -> bool:
    probs = [float(p) for p in soft_mean]
    others = [p for k, p in enumerate(probs) if k != 3]
    return len(probs) == 10 and int(similar) != 3 and probs[int(similar)] >= max(others)


@exercise("01.3", notebook=NB, find="which student copies the teacher's decisions more often",
          check="the kd student's top-1 agreement with the teacher is above the scratch student's")
def _(agree_kd: float, agree_scratch: float) -> bool:
    return agree_kd > agree_scratch


@exercise("01.4", notebook=NB, find="a temperature that calibrates the KD student better (temperature scaling)",
          check="the KD student's ECE with its logits divided by your temperature is below its ECE at T = 1")
def _(temperature: float, ece_scaled: float, ece_raw: float) -> bool:
    return float(temperature) > 0 and float(temperature) != 1.0 and ece_scaled < ece_raw
