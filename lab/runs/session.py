"""A training run advanced on demand: the shared part of the live sessions (``lab.runs.live``, ``lab.runs.live_kd``).

A subclass keeps its loops (suspended :func:`lab.runs.loop.train` generators) and says what one step is in
:meth:`SteppedSession.step_once`: it returns False when nothing more can run (the end of the run, or an error kept
in ``error``). This class counts, times and bounds the steps: ``advance(k)`` runs exactly ``k`` (fewer only at the
end), ``advance_for(seconds)`` as many whole steps as fit in about that much wall time (which steps run never depends
on the timing, only how many per call).
"""
from __future__ import annotations

import time

import numpy as np

from lab.errors import LabError


class SteppedSession:
    """Subclasses set ``self.method`` (whose ``it`` and ``total_steps`` are the session's) and call
    :meth:`restart` whenever they rebuild their loops; :meth:`step_once` runs one step."""

    method = None

    def restart(self) -> None:
        self.error, self.seconds, self.done = "", 0.0, False

    def step_once(self) -> bool:  # pragma: no cover - every session says what a step is
        raise NotImplementedError

    @property
    def iteration(self) -> int:
        """Completed training steps."""
        return int(self.method.it)

    @property
    def total(self) -> int:
        return int(self.method.total_steps)

    def advance(self, k: int = 1) -> int:
        """Run exactly ``k`` more steps (fewer only when the run reaches its end, or fails: then ``error`` says why
        and the session stops); returns the step count."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise LabError(f"k must be a positive integer (steps to run), got {k!r}")
        t0 = time.perf_counter()
        for _ in range(int(k)):
            if self.done or not self.step_once():
                self.done = True
                break
            if self.iteration >= self.total:
                self.done = True
        self.seconds += time.perf_counter() - t0
        return self.iteration

    def advance_for(self, seconds: float, at_most: int = 1000) -> int:
        """Whole steps for about ``seconds`` of wall time (at least one, at most ``at_most``): a page's "auto" steps
        per frame. Which steps run does not depend on the timing, only how many per call."""
        t_end = time.perf_counter() + float(seconds)
        for _ in range(int(at_most)):
            before = self.iteration
            if self.advance(1) == before or time.perf_counter() >= t_end:
                break
        return self.iteration


__all__ = ["SteppedSession"]
