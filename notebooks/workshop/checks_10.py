"""Checks of notebook 10 (score distillation for optimisation): predicates over values the learner measured."""
from __future__ import annotations

from workshop import exercise

NB = "10_score_distillation"


@exercise("10.1", notebook=NB, find="what SDS's two-stage time schedule does",
          check="without the late stage the particles' mean distance to the nearest mode centre is more than three "
                "times the distance with it")
def _(mode_dist_late: float, mode_dist_no_late: float) -> bool:
    return 0 <= float(mode_dist_late) and float(mode_dist_no_late) > 3 * float(mode_dist_late)


@exercise("10.2", notebook=NB, find="what the fake score contributes to VSD",
          check="with a frozen fake score the particles travel less than a tenth as far as with the default")
def _(travel_default: float, travel_frozen: float) -> bool:
    return 0 <= float(travel_frozen) < 0.1 * float(travel_default)


@exercise("10.3", notebook=NB, find="what SDS does when the parameter is a generator instead of free particles",
          check="the SDS generator covers fewer modes than the SDS particles")
def _(modes_generator: int, modes_particles: int) -> bool:
    return int(modes_generator) < int(modes_particles)


@exercise("10.4", notebook=NB, find="where DSD sends each particle",
          check="each particle ends less than a quarter as far from its own seed's teacher sample as from another "
                "particle's")
def _(dist_own: float, dist_other: float) -> bool:
    return 0 <= float(dist_own) < 0.25 * float(dist_other)
