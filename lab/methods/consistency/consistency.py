"""Consistency distillation (discrete time).

Paper: Song, Dhariwal, Chen & Sutskever, "Consistency Models" (ICML 2023). A consistency
function f(x_t, t) maps every point of a teacher ODE trajectory to the trajectory's
origin; it is trained so that adjacent points on the teacher's trajectory map to the
same output, with the boundary condition f(x, 0) = x.

Mechanism as implemented (following openai/consistency_models ``karras_diffusion.py``):
- Parameterisation f(x_t, t) = c_skip(t) x_t + c_out(t) F(x_t, t), with c_skip, c_out
  given by the process and the network's prediction type (``Process.x0_coeffs``); for eps
  and v networks c_skip(0) = 1 and c_out(0) = 0, so the boundary condition holds exactly;
  for an x0 network (no skip) the target at t = 0 is set to x itself.
- Discretise [0, 1] into N intervals; draw n, noise data to x_{t_{n+1}}, take ONE teacher
  ODE step (Heun, as in the paper) to t_n, and regress f_theta(x_{t_{n+1}}, t_{n+1}) onto
  the target network f_{theta^-}(x_hat_{t_n}, t_n) (stop-gradient).
- The target network theta^- is an EMA of the student with decay ``target_ema`` (0.95 for
  CD in the paper), separate from any evaluation EMA.
- Student initialised from the teacher; multistep consistency sampling (jump to x0,
  re-noise to the next time, jump again) gives 1, 2, 4-step samples.

Fidelity notes:
- Time is our t in [0, 1] of the linear flow (t = 1 pure noise) instead of EDM's
  sigma in [0.002, 80]; the grid is uniform in t rather than Karras' rho = 7 spacing,
  and the boundary is at t = 0 (we can evaluate there) instead of sigma_min.
- For a velocity-predicting flow teacher the parameterisation reduces to
  f = x_t - t * F (c_skip = 1, c_out = -t), which is the teacher's own x0 estimate at
  initialisation (the flow-map form x_t + (s - t) F at s = 0, one Euler jump of the flow;
  see :mod:`lab.methods.consistency.tscd`).
- Loss: pseudo-Huber sqrt(d^2 + c^2) - c with c = 0.03 (as in improved consistency
  training and LCM) instead of the paper's L2/LPIPS; ``loss="l2"`` gives the paper's L2.
  Measured on moons (1-step SWD, teacher at 50 steps 0.031): defaults of the paper's
  shape (N = 18, L2, lr 3e-4) gave 0.044; N = 32, pseudo-Huber, lr 6e-4 gave 0.039.
- No dropout, so no RNG sharing between online and target passes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lab.config import param
from lab.diffusion.denoiser import Denoiser
from lab.losses import pseudo_huber, sq_dist
from lab.methods.base import MethodConfig, Targets, register
from lab.methods.base import ema_update
from lab.methods.consistency.base import ConsistencyMethod
from lab.trainable import StepOutput


@dataclass
class ConsistencyConfig(MethodConfig):
    steps: int = 2000
    lr: float = 6e-4
    n_intervals: int = param(32, ge=2)
    target_ema: float = param(0.95, ge=0, lt=1)
    solver: str = param("heun", choices=("euler", "heun"))
    loss: str = param("huber", choices=("l2", "huber"))
    huber_c: float = param(0.03, gt=0)


@register("consistency")
class Consistency(ConsistencyMethod):
    Config = ConsistencyConfig
    family = "step distillation / trajectory"
    mechanism = "map adjacent points of the teacher's ODE trajectory to the same origin (EMA target net)"
    paper = "Song et al. 2023, Consistency Models"
    zoo_points = "all"
    digits_recipe = {"steps": 600, "batch": 64, "lr": 1e-4, "n_intervals": 18, "target_ema": 0.95}
    zoo_digits = True

    def setup(self):
        net = self.new_student_net()
        pred = self.teacher.pred if self.student_from_teacher() else "v"
        self.student = Denoiser(net, self.process, pred)
        self.add_net("student", net, lr=self.config.lr)
        self.target = self.frozen_copy("target", self.student)

    def sample_batch(self, it):
        batch = super().sample_batch(it)
        batch["n"] = self.randint(0, self.config.n_intervals, (self.config.batch,))
        return batch

    @torch.no_grad()
    def teacher_step(self, x, t, s):
        """One teacher ODE step from (x, t) to s: Euler, or Heun (``solver="heun"``) where s > 0."""
        v = self.teacher.velocity(x, t)
        x_s = x + self.col((s - t)) * v
        if self.config.solver == "heun":
            ok = self.col((s > 0))
            v2 = self.teacher.velocity(x_s, s)
            x_s = torch.where(ok, x + self.col((s - t)) * 0.5 * (v + v2), x_s)
        return x_s

    def distance(self, pred, target) -> torch.Tensor:
        """The mean consistency loss: pseudo-Huber or L2 of the per-sample distance."""
        d2 = sq_dist(pred, target)
        return (pseudo_huber(d2, self.config.huber_c) if self.config.loss == "huber" else d2).mean()

    def update_target(self) -> None:
        """The target network theta^-: an EMA of the student with decay ``target_ema``."""
        ema_update(self.target.net, self.student.net, self.config.target_ema)

    @torch.no_grad()
    def _target(self, x_t, t, s):
        x_s = self.teacher_step(x_t, t, s)
        x0 = self.target.x0(x_s, s)
        # boundary condition f(x, 0) = x for every parameterisation (pred='x0' has c_skip(0) = 0, c_out(0) = 1)
        return torch.where(self.col((s <= 0)), x_s, x0), x_s

    def targets(self, batch, t=None) -> Targets:
        N = self.config.n_intervals
        if t is not None:
            n_up = max(1, round(float(t) * N))
            x_t = batch["x_t"]
            tt = torch.full((x_t.shape[0],), n_up / N, device=x_t.device)
        else:
            tt = (batch["n"] + 1).float() / N
            x_t = self.process.add_noise(batch["x0"], batch["eps"], tt)
        s = tt - 1.0 / N
        target, x_s = self._target(x_t, tt, s)
        with torch.no_grad():
            teacher = self.teacher.x0(x_t, tt)
            student = self.student.x0(x_t, tt)
        return Targets(x_t, tt, target, "x0", teacher, student, {"x_s": x_s, "s": s})

    def step(self, batch, it):
        N = self.config.n_intervals
        t = (batch["n"] + 1).float() / N
        s = batch["n"].float() / N
        x_t = self.process.add_noise(batch["x0"], batch["eps"], t)
        target, _ = self._target(x_t, t, s)
        loss = self.distance(self.student.x0(x_t, t), target)
        self.opt_step("student", loss)
        self.update_target()
        return StepOutput(losses={"consistency": loss.item()}, metrics={"mean_t": t.mean().item()}, stage="consistency")
