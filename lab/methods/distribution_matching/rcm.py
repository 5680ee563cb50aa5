"""Score-regularised continuous-time consistency distillation (rCM): sCM plus a DMD regulariser.

Paper: Zheng et al., "Large Scale Diffusion Distillation via Score-Regularized Continuous-Time
Consistency" (2025); the sCM part is :mod:`lab.methods.consistency.scm` (Lu & Song, ICLR 2025). Loss
weights and update schedule from the rCM paper.

rCM adds a DMD-style reverse-divergence term on the student's one-step samples (real score = teacher,
fake score fitted online), which is mode-seeking where the consistency objective is mode-covering.

Fidelity notes: see :mod:`lab.methods.consistency.scm` for the sCM part (TrigFlow time map, tangent
warm-up, adaptive weighting); the DMD term uses DMD's normaliser (mean |x - x0_real|) and a fake score
fitted every step, as :mod:`lab.methods.distribution_matching.dmd` does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lab.diffusion.denoiser import Denoiser
from lab.losses import mean_abs, sq_dist
from lab.methods.base import register
from lab.methods.consistency.scm import SCM, SCMConfig
from lab.trainable import StepOutput, check, is_num


@dataclass
class RCMConfig(SCMConfig):
    dmd_weight: float = 1.0
    dmd_start: int = -1           # -1: at the end of the tangent warm-up
    lr_fake: float = 2e-4
    fake_updates: int = 1
    dmd_t_min: float = 0.02
    dmd_t_max: float = 0.98

    def __post_init__(self):
        super().__post_init__()
        check(is_num(self.dmd_weight) and self.dmd_weight >= 0, "dmd_weight", self.dmd_weight, "a float >= 0 (0: plain sCM)")
        check(isinstance(self.dmd_start, int) and self.dmd_start >= -1, "dmd_start", self.dmd_start,
              "an integer >= 0, or -1 for the end of the warm-up")
        check(is_num(self.lr_fake) and self.lr_fake > 0, "lr_fake", self.lr_fake, "a positive float")
        check(isinstance(self.fake_updates, int) and self.fake_updates >= 1, "fake_updates", self.fake_updates, "an integer >= 1")
        check(is_num(self.dmd_t_min) and is_num(self.dmd_t_max) and 0.0 < self.dmd_t_min < self.dmd_t_max < 1.0,
              "dmd_t_min/dmd_t_max", (self.dmd_t_min, self.dmd_t_max), "0 < dmd_t_min < dmd_t_max < 1")


@register("rcm")
class RCM(SCM):
    Config = RCMConfig
    family = "step distillation / trajectory + distribution matching"
    mechanism = "sCM plus a DMD reverse-divergence regulariser on the student's 1-step samples (online fake score)"
    paper = "Zheng et al. 2025, Large Scale Diffusion Distillation via Score-Regularized Continuous-Time Consistency"
    zoo_points = "showcase"
    tiny = {**SCM.tiny, "dmd_start": 2}

    def setup(self):
        super().setup()
        pred = self.teacher.pred if self.student_from_teacher() else "v"
        self.fake = Denoiser(self.new_student_net(), self.process, pred)
        self.add_net("fake_score", self.fake.net, lr=self.config.lr_fake)

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
        batch["fake"] = [(self.randn(c.batch, *self.shape), self.rand(c.batch), self.randn(c.batch, *self.shape)) for _ in range(c.fake_updates)]
        return batch

    def generate(self, z):
        return self.student.x0(z, torch.ones(z.shape[0], device=z.device))

    @torch.no_grad()
    def score_gradient(self, x, t, eps):
        x_t = self.process.add_noise(x, eps, t)
        real = self.teacher.x0(x_t, t)
        fake = self.fake.x0(x_t, t)
        norm = mean_abs(x - real).clamp_min(1e-8)
        return torch.nan_to_num((fake - real) / norm)

    def step(self, batch, it):
        self.set_lr(it)
        losses = {}
        for z, t, eps in batch["fake"]:
            with torch.no_grad():
                x = self.generate(z)
            losses["fake"] = self.fit_fake_score(x, t, eps)
        loss, metrics = self.scm_loss(batch, it)
        losses["scm"] = loss.item()
        if self.dmd_on(it):
            x = self.generate(batch["z"])
            grad = self.score_gradient(x.detach(), batch["dmd_t"], batch["dmd_eps"])
            loss_dm = 0.5 * sq_dist(x, (x - grad).detach()).mean()
            loss = loss + self.config.dmd_weight * loss_dm
            losses["dm"] = loss_dm.item()
            metrics["dmd_grad_norm"] = grad.flatten(1).norm(dim=1).mean().item()
        self.step_student(loss)
        return StepOutput(losses=losses, metrics=metrics, stage="rcm" if self.dmd_on(it) else "scm")

    def ema_nets(self):
        return {"student": self.cm}
