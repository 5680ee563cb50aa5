"""Rounds of step halving, shared by progressive distillation and stage two of guidance distillation.

Salimans & Ho, "Progressive Distillation for Fast Sampling of Diffusion Models" (ICLR 2022): a student
learns to take one step where the frozen teacher of the round takes two; the student then becomes the
frozen teacher of the next round, which trains at half the steps again with a fresh optimiser. Meng et
al., "On Distillation of Guided Diffusion Models" (CVPR 2023), run the same rounds on their w-conditioned
student. A method here keeps ``self.student`` (a Denoiser) and says when each round starts
(:meth:`HalvingMethod.stage_of`) and how many steps its student takes; the base freezes the stage teacher,
resets the optimiser, draws times on the student's grid and checkpoints the round.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lab.config import check, param
from lab.methods.base import Method, MethodConfig


@dataclass
class HalvingConfig(MethodConfig):
    start_steps: int = param(64, ge=2, allowed="a power of two >= 2")
    halvings: int = param(5, ge=1, allowed="an integer in [1, log2(start_steps)]")

    def validate(self):
        super().validate()
        check(self.start_steps & (self.start_steps - 1) == 0, "start_steps", self.start_steps, "a power of two >= 2")
        check(2**self.halvings <= self.start_steps, "halvings", self.halvings,
              f"at most log2(start_steps) = {self.start_steps.bit_length() - 1}")


class HalvingMethod(Method):
    """A method trained in rounds of halving. Its ``setup`` sets ``self.student``, ``self.stage = 0`` and
    ``self.stage_teacher`` (the frozen teacher of the current round); ``self.stage`` is checkpointed."""

    Config = HalvingConfig

    def stage_of(self, it: int) -> int:
        """The stage iteration ``it`` trains in."""
        raise NotImplementedError

    def advance(self, stage: int) -> None:
        """Move on to ``stage``: each new round freezes the student as its teacher and restarts Adam."""
        while self.stage < stage:
            self.stage_teacher = self.frozen_copy("stage_teacher", self.student)
            self.optimizers["student"] = torch.optim.Adam(self.student.net.parameters(), lr=self.config.lr)
            self.stage += 1

    def grid_times(self, n_s: int) -> torch.Tensor:
        """A batch of times i / n_s, i uniform in 1..n_s: the grid of a student taking n_s steps."""
        return self.randint(1, n_s + 1, (self.config.batch,)).float() / n_s

    def extra_state(self):
        return {"stage": self.stage}

    def load_extra_state(self, sd):
        if "stage" in sd:
            self.advance(int(sd["stage"]))
