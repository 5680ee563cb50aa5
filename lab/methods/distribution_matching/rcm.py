"""Score-regularised continuous-time consistency distillation (rCM): sCM plus a DMD regulariser.

Paper: Zheng et al., "Large Scale Diffusion Distillation via Score-Regularized Continuous-Time
Consistency" (2025); the sCM part is :mod:`lab.methods.consistency.scm` (Lu & Song, ICLR 2025). Loss
weights and update schedule from the rCM paper.

rCM adds a DMD-style reverse-divergence term on the student's one-step samples (real score = teacher,
fake score fitted online), which is mode-seeking where the consistency objective is mode-covering.

Fidelity notes: see :mod:`lab.methods.consistency.scm` for the sCM part (TrigFlow time map, tangent
warm-up, adaptive weighting); the DMD term uses DMD's normaliser (mean |x - x0_real|) and a fake score
fitted every step, as :mod:`lab.methods.distribution_matching.dmd` does (both from
:class:`lab.methods.distribution_matching.base.FakeScoreMixin`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lab.config import check, param
from lab.methods.base import register
from lab.methods.consistency.scm import SCM, SCMConfig
from lab.methods.distribution_matching.base import FakeScoreMixin
from lab.trainable import StepOutput


@dataclass
class RCMConfig(SCMConfig):
    dmd_weight: float = param(1.0, ge=0, note="0: plain sCM")
    dmd_start: int = param(-1, ge=-1, allowed="an integer >= 0, or -1 for the end of the warm-up")
    lr_fake: float = param(2e-4, gt=0)
    fake_updates: int = param(1, ge=1)
    dmd_t_min: float = 0.02
    dmd_t_max: float = 0.98

    def validate(self):
        super().validate()
        check(0.0 < self.dmd_t_min < self.dmd_t_max < 1.0, "dmd_t_min/dmd_t_max", (self.dmd_t_min, self.dmd_t_max),
              "0 < dmd_t_min < dmd_t_max < 1")


@register("rcm")
class RCM(FakeScoreMixin, SCM):
    Config = RCMConfig
    family = "step distillation / trajectory + distribution matching"
    mechanism = "sCM plus a DMD reverse-divergence regulariser on the student's 1-step samples (online fake score)"
    paper = "Zheng et al. 2025, Large Scale Diffusion Distillation via Score-Regularized Continuous-Time Consistency"
    zoo_points = "showcase"
    tiny = {**SCM.tiny, "dmd_start": 2}

    def setup(self):
        super().setup()
        self.add_fake_score()

    def dmd_on(self, it: int) -> bool:
        c = self.config
        start = c.pretrain + c.warmup if c.dmd_start < 0 else c.dmd_start
        return c.dmd_weight > 0 and it >= start

    def sample_batch(self, it):
        batch = super().sample_batch(it)
        c = self.config
        batch["z"] = self.randn(c.batch, *self.shape)
        batch["dmd_t"] = c.dmd_t_min + (c.dmd_t_max - c.dmd_t_min) * self.rand(c.batch)
        batch["dmd_eps"] = self.randn(c.batch, *self.shape)
        batch["fake"] = self.fake_draws(c.fake_updates)
        return batch

    def generate(self, z):
        """The student's one-step sample f(z, 1) (the consistency function at the largest noise level)."""
        return self.student.x0(z, torch.ones(z.shape[0], device=z.device))

    def step(self, batch, it):
        self.set_lr(it)
        losses = {"fake": self.update_fake(batch["fake"])}
        loss, metrics = self.scm_loss(batch, it)
        losses["scm"] = loss.item()
        if self.dmd_on(it):
            loss_dm, metrics["dmd_grad_norm"] = self.dm_loss(self.generate(batch["z"]), batch["dmd_t"], batch["dmd_eps"])
            loss = loss + self.config.dmd_weight * loss_dm
            losses["dm"] = loss_dm.item()
        self.step_student(loss)
        return StepOutput(losses=losses, metrics=metrics, stage="rcm" if self.dmd_on(it) else "scm")
