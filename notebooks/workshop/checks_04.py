"""Checks of notebook 04_without_a_fixed_teacher (see ``workshop/__init__.py``)."""
from workshop import exercise

NB = "04_without_a_fixed_teacher"


@exercise("04.1", notebook=NB, find="what mutual learning does to the peers' predictions, against two networks "
          "trained apart",
          check="the two DML peers agree with each other on more test examples than two scratch students trained "
                "with different seeds do")
def _(agree_dml: float, agree_scratch: float) -> bool:
    return 0 <= agree_scratch < agree_dml <= 1


@exercise("04.2", notebook=NB, find="whether a born-again generation inherits its teacher generation's decisions, "
          "beyond what any network of the same architecture would share",
          check="generation 1 agrees with generation 0 on more test examples than a network of the same architecture "
                "trained from scratch for as many steps does")
def _(agree_gen1: float, agree_independent: float) -> bool:
    return 0 <= agree_independent < agree_gen1 <= 1


@exercise("04.3", notebook=NB, find="why function matching shows teacher and student the SAME view",
          check="with consistent views the student agrees with the teacher on more test digits than with independent "
                "views")
def _(agree_consistent: float, agree_independent: float) -> bool:
    return 0 <= agree_independent < agree_consistent <= 1
