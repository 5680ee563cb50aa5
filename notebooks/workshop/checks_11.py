"""Checks of notebook 11 (dataset distillation): predicates over values the learner measured."""
from __future__ import annotations

from workshop import exercise

NB = "11_dataset_distillation"


@exercise("11.1", notebook=NB, find="how a distilled set compares with random real images at one image per class",
          check="DM's set at 1 image per class beats the random real images it started from by at least 5 points")
def _(acc_distilled: float, acc_random: float) -> bool:
    return 0 <= float(acc_random) and float(acc_distilled) >= float(acc_random) + 0.05


@exercise("11.2", notebook=NB, find="how a net trained on MTT's set drifts from the expert over the epochs",
          check="the student's mean distance to the expert after the last epoch is more than twice its distance "
                "after the first")
def _(dist_first: float, dist_last: float) -> bool:
    return 0 < float(dist_first) and float(dist_last) > 2 * float(dist_first)


@exercise("11.3", notebook=NB, find="what MTT's learnable step size does",
          check="the learned step size ends above the experts' learning rate")
def _(lr_learned: float, lr_experts: float) -> bool:
    return 0 < float(lr_experts) < float(lr_learned)
