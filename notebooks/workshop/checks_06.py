"""Checks of notebook 06 (trajectory methods): predicates over values the learner measured in the run."""
from __future__ import annotations

from workshop import exercise

NB = "06_trajectory_methods"


@exercise("06.1", notebook=NB, find="how much straighter reflow's paths are than the teacher's",
          check="the reflowed paths' mean straightness is below a tenth of the teacher's")
def _(reflow_straightness: float, teacher_straightness: float) -> bool:
    return float(reflow_straightness) < 0.1 * float(teacher_straightness)


@exercise("06.2", notebook=NB, find="where on its grid the consistency student is furthest from the path's end",
          check="the endpoint error at t = 1 is more than twice the endpoint error at the first grid time")
def _(endpoint_first: float, endpoint_last: float) -> bool:
    return float(endpoint_last) > 2.0 * float(endpoint_first)


@exercise("06.3", notebook=NB, find="how the shortcut student's final error depends on the number of jumps",
          check="the shortcut student's final gap with 8 jumps is below its final gap with 1 jump")
def _(gap_1: float, gap_8: float) -> bool:
    return float(gap_8) < float(gap_1)


@exercise("06.4", notebook=NB, find="whether rCM's DMD term pulls one-step samples out of the gaps between modes",
          check="rcm's between-modes share at 1 step is below scm's")
def _(scm_between: float, rcm_between: float) -> bool:
    return float(rcm_between) < float(scm_between)
