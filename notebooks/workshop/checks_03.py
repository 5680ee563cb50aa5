"""Checks of notebook 03_features_similarity (see ``workshop/__init__.py``)."""
from workshop import exercise

NB = "03_features_similarity"


@exercise("03.1", notebook=NB, find="how many examples the usual (biased) linear CKA needs before two independent "
          "random 50-d representations no longer look similar",
          check="at your n (more than 24 examples) the biased CKA of two independent 50-d representations is below "
                "0.2, and below its value at n = 24")
def _(n: int, cka_at_n: float, cka_at_24: float) -> bool:
    return int(n) > 24 and cka_at_n < 0.2 and cka_at_n < cka_at_24


@exercise("03.2", notebook=NB, find="a FitNets hint weight and a step budget at which the hint makes the student's "
          "hidden layer more similar to the teacher's pooled features than scratch training does",
          check="the fitnets student's fc1-vs-pool CKA is above the scratch student's, both trained for your number "
                "of steps")
def _(cka_fitnets: float, cka_scratch: float) -> bool:
    return cka_fitnets > cka_scratch


@exercise("03.3", notebook=NB, find="whether attention transfer makes the student look where the teacher looks, "
          "even while its accuracy lags",
          check="the at student's mean attention-map distance to the teacher's conv2 is below the scratch CNN "
                "student's")
def _(dist_at: float, dist_scratch: float) -> bool:
    return 0 <= dist_at < dist_scratch


@exercise("03.4", notebook=NB, find="a student architecture, smaller than the teacher, that DisWOT ranks above every "
          "default candidate, without training anything",
          check="your candidate has fewer parameters than the teacher and a DisWOT total score above the best of the "
                "eight default candidates")
def _(score_yours: float, params_yours: int, best_default: float, teacher_params: int) -> bool:
    return int(params_yours) < int(teacher_params) and score_yours > best_default
