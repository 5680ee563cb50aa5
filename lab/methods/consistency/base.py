"""What the consistency methods share: a student f(x_t, t) that maps every point of a teacher ODE trajectory
to the trajectory's origin (Song et al., "Consistency Models", ICML 2023), sampled multistep.

``self.student`` is a :class:`~lab.diffusion.denoiser.Denoiser` whose x0 prediction is f (``f(x, 0) = x``
by its parameterisation), so the shared :class:`~lab.diffusion.generators.ConsistencyGenerator` samples it:
jump to x0, re-noise to the next time, jump again. :func:`lab.methods.base.ema_update` moves a target network towards the
student (the discrete-time methods' theta^-; shortcut's target net too).
"""
from __future__ import annotations

from lab.diffusion.generators import ConsistencyGenerator
from lab.methods.base import Method


class ConsistencyMethod(Method):
    """A method whose ``setup`` sets ``self.student``, a Denoiser predicting x0 = f(x_t, t); its generator is
    multistep consistency sampling at 1, 2 and 4 steps, and the student is what an evaluation EMA averages."""

    def generator(self) -> ConsistencyGenerator:
        return ConsistencyGenerator(self.sampled(self.student), native_nfe=(1, 2, 4))

    def ema_nets(self):
        return {"student": self.sampled(self.student).net}
