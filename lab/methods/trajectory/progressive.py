"""Progressive distillation.

Paper: Salimans & Ho, "Progressive Distillation for Fast Sampling of Diffusion Models"
(ICLR 2022). Two deterministic DDIM steps of the teacher become one DDIM step of the
student; the student then becomes the teacher and the halving repeats.

Mechanism as implemented (following google-research ``diffusion_distillation``):
- On the student's grid of N_s steps, draw t = i/N_s, s = t - 1/N_s; noise data to x_t.
- The teacher takes two DDIM half-steps t -> t - 1/(2N_s) -> s, no clipping.
- The student's target is the x0 that makes ONE DDIM step from t land on the
  teacher's endpoint: x0* = (z_s - (sigma_s/sigma_t) x_t) / (alpha_s - (sigma_s/sigma_t) alpha_t).
- Loss: max(SNR(t), 1) * |x0_student - x0*|^2 ("SNR+1 truncated" weighting).
- Each halving starts from the current student (initially a copy of the teacher), with
  a fresh optimiser; the student of one round is the frozen teacher of the next.

Fidelity notes:
- The paper halves 8192 -> 1 steps with 50k optimiser steps per halving on CIFAR; here a
  few hundred steps per halving on 2D, starting from ``start_steps`` (default 64).
- The paper uses a cosine VP schedule; our default teacher is a linear flow, for which a
  DDIM step is exactly an Euler step, so the target equals the average velocity of the two
  teacher half-steps (as the progressive baseline of kvfrans/shortcut-models
  ``baselines/targets_progressive.py``).
- The default starts from a 64-step DDIM teacher and halves five times (64 -> 2 steps,
  400 steps per halving). The starting step count matters more than the optimiser steps:
  measured on moons, starting from 16 steps the 4-step student stopped at 2.1x the
  teacher's 50-step distance (it cannot beat its own 16-step teacher), while starting
  from 64 steps the 2-step student reached 1.25x.
- With an analytic (non-trainable) teacher, the first student cannot be a copy of it and
  starts from a fresh MLP (``student_net``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lab.config import check
from lab.diffusion.denoiser import Denoiser
from lab.diffusion.generators import FlowGenerator
from lab.losses import sq_dist
from lab.methods.base import Targets, register
from lab.methods.trajectory.base import HalvingConfig, HalvingMethod
from lab.trainable import StepOutput


@dataclass
class ProgressiveConfig(HalvingConfig):
    steps: int = 2000
    lr: float = 5e-4

    def validate(self):
        super().validate()
        check(self.steps >= self.halvings, "steps", self.steps, f"at least halvings={self.halvings}")


@register("progressive")
class Progressive(HalvingMethod):
    Config = ProgressiveConfig
    family = "step distillation / trajectory"
    mechanism = "two teacher DDIM steps become one student step; repeat the halving"
    paper = "Salimans & Ho 2022, Progressive Distillation for Fast Sampling of Diffusion Models"
    zoo_points = "all"
    digits_recipe = {"steps": 600, "batch": 64, "lr": 1e-4, "start_steps": 16, "halvings": 3}
    zoo_digits = True

    def setup(self):
        c = self.config
        self.stage = 0
        self.stage_teacher = self.teacher  # frozen teacher of the current round
        self.student = Denoiser(self.new_student_net(), self.process, self.teacher.pred
                                if self.student_from_teacher() else "v")
        self.add_net("student", self.student.net, lr=c.lr)
        self._stage_len = c.steps // c.halvings

    # ---- schedule: stage k (from 0) is halving k + 1, each steps // halvings iterations long
    def student_steps(self, stage: int | None = None) -> int:
        stage = self.stage if stage is None else stage
        return self.config.start_steps // 2 ** (stage + 1)

    def stage_of(self, it: int) -> int:
        return min(it // self._stage_len, self.config.halvings - 1)

    def sample_batch(self, it):
        batch = super().sample_batch(it)
        batch["t"] = self.grid_times(self.student_steps(self.stage_of(it)))
        return batch

    @torch.no_grad()
    def _target(self, x_t, t, n_s):
        proc, stage_teacher = self.process, self.stage_teacher
        dt = 1.0 / n_s
        mid, s = t - 0.5 * dt, (t - dt).clamp_min(0.0)
        z_mid = proc.ddim_step(x_t, t, mid, stage_teacher.x0(x_t, t))
        z_s = proc.ddim_step(z_mid, mid, s, stage_teacher.x0(z_mid, mid))
        ratio = proc.sigma(s) / proc.sigma(t)
        x0_star = (z_s - self.col(ratio) * x_t) / self.col((proc.alpha(s) - ratio * proc.alpha(t)))
        return x0_star, z_s

    def targets(self, batch, t=None) -> Targets:
        x_t = batch["x_t"] if "x_t" in batch else self.process.add_noise(batch["x0"], batch["eps"], batch["t"])
        tt = batch["t"] if t is None else torch.full((x_t.shape[0],), float(t), device=x_t.device)
        n_s = self.student_steps()
        x0_star, z_s = self._target(x_t, tt, n_s)
        with torch.no_grad():
            teacher = self.stage_teacher.x0(x_t, tt)
            student = self.student.x0(x_t, tt)
        return Targets(x_t, tt, x0_star, "x0", teacher, student, {"teacher_endpoint": z_s, "student_steps": n_s})

    def step(self, batch, it):
        self.advance(self.stage_of(it))
        n_s = self.student_steps()
        x_t = self.process.add_noise(batch["x0"], batch["eps"], batch["t"])
        t = batch["t"]
        x0_star, _ = self._target(x_t, t, n_s)
        pred = self.student.x0(x_t, t)
        w = self.process.snr(t).clamp(min=1.0, max=1e4)
        loss = (w * sq_dist(pred, x0_star)).mean()
        self.opt_step("student", loss)
        return StepOutput(losses={"distill": loss.item()}, metrics={"student_steps": n_s, "halving": self.stage + 1},
                          stage=f"halving {self.stage + 1}: {2 * n_s}->{n_s} steps")

    def generator(self) -> FlowGenerator:
        return FlowGenerator(self.student, "ddim", native_nfe=(self.student_steps(),))
