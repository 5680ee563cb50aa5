"""Reflow with one-step distillation (rectified flow).

Paper: Liu, Gong & Liu, "Flow Straight and Fast: Learning to Generate and Transfer Data
with Rectified Flow" (ICLR 2023); one-round reflow and its training details from Lee et
al., "Improving the Training of Rectified Flows" (NeurIPS 2024).

Mechanism as implemented (following gnobitab/RectifiedFlow and sangyun884/rfpp):
1. Couplings: draw noise z, integrate the teacher's ODE accurately (``pair_steps``
   Heun steps) to get x1 = ODE(z). The pairs are generated once, saved, and stay paired
   (RectifiedFlow issue #36).
2. Reflow: fine-tune a copy of the teacher on straight interpolations of the pairs,
   x_t = (1 - t) x1 + t z with target velocity z - x1, t from the U-shaped density
   p(t) ~ exp(4t) + exp(4(1-t)) of Lee et al. (or uniform). This straightens paths.
3. Distil to one step: a copy of the reflowed flow is trained at t = 1 only, so that
   z - v(z, 1) = x1 (pseudo-Huber loss, as Lee et al. use in 2D).
Sampling uses the one-step map at 1 NFE and the reflowed flow with Euler at more NFE.

Fidelity notes:
- One reflow round (Lee et al. show one suffices); the original paper's 2D notebook uses
  50k pairs from 1000 Euler steps and 5k steps; defaults here are smaller for CPU time.
- The student always lives on the linear process (rectified flow). With a teacher on
  another process the couplings are still the teacher's ODE pairs, and the student
  starts from a fresh MLP instead of the teacher's weights.
- No LPIPS (2D points): pseudo-Huber with c = 0.00054 * sqrt(d) scaled for 2D.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from lab.config import check, param
from lab.diffusion.denoiser import Denoiser
from lab.diffusion.generators import ReflowGenerator, make_noise
from lab.diffusion.process import LinearFlow
from lab.diffusion.samplers import ode_sample
from lab.losses import pseudo_huber, sq_dist
from lab.methods.base import Method, MethodConfig, Targets, register
from lab.trainable import StepOutput


@dataclass
class ReflowConfig(MethodConfig):
    steps: int = 2500
    lr: float = 5e-4
    n_pairs: int = param(20000, allowed="an integer >= batch")
    pair_steps: int = param(64, ge=2)
    distill_frac: float = param(0.4, ge=0, lt=1)
    t_dist: str = param("u_shaped", choices=("uniform", "u_shaped"))
    huber_c: float = param(0.01, ge=0, note="0 means squared L2")

    def validate(self):
        super().validate()
        check(self.n_pairs >= self.batch, "n_pairs", self.n_pairs, f"an integer >= batch ({self.batch})")


def _u_shaped(u: torch.Tensor, a: float = 4.0) -> torch.Tensor:
    """Inverse CDF of p(t) ~ exp(a t) + exp(a (1 - t)) on [0, 1] (Lee et al. 2024)."""
    # CDF(t) = (e^{a t} - e^{a(1-t)} + e^{a} - 1) / (2 (e^{a} - 1)); solve e^{at} - e^{a} e^{-at} = c.
    ea = math.exp(a)
    c = 2 * (ea - 1) * u - ea + 1
    y = (c + torch.sqrt(c * c + 4 * ea)) / 2  # y = e^{a t}
    return (torch.log(y) / a).clamp(0.0, 1.0)


@register("reflow")
class Reflow(Method):
    Config = ReflowConfig
    family = "step distillation / straightening"
    mechanism = "retrain on (noise, teacher sample) couplings so paths straighten, then distil to one step"
    paper = "Liu et al. 2023, Flow Straight and Fast: Rectified Flow (+ Lee et al. 2024 one-round reflow)"
    zoo_points = "all"
    digits_recipe = {"steps": 800, "batch": 64, "lr": 1e-4, "n_pairs": 2048, "pair_steps": 25}
    zoo_digits = False  # two networks, 8 MB: bench-only

    def setup(self):
        self.linear = LinearFlow()
        same = self.student_from_teacher() and self.process.name == "linear" and self.teacher.pred == "v"
        net = self.new_student_net() if same else self.fresh_net()
        self.flow = Denoiser(net, self.linear, "v")
        self.add_net("flow", net, lr=self.config.lr)
        self.one_step: Denoiser | None = None
        self.pairs_z = self.pairs_x = self.pairs_c = None
        self.reflow_steps = self.config.steps - int(round(self.config.steps * self.config.distill_frac))

    @torch.no_grad()
    def make_pairs(self):
        c = self.config
        z = make_noise(c.n_pairs, self.shape, seed=self.seed + 7919, device=self.device)
        self.pairs_c = self.pair_labels(c.n_pairs, self.seed + 7920)
        x = ode_sample(self.teacher, z, c.pair_steps, "heun", y=self.pairs_c).x
        self.pairs_z, self.pairs_x = z, x

    def _start_distill(self):
        net = copy.deepcopy(self.flow.net)
        self.one_step = Denoiser(net, self.linear, "v")
        self.add_net("one_step", net, lr=self.config.lr)

    def sample_batch(self, it):
        if self.pairs_z is None:
            self.make_pairs()
        c = self.config
        idx = self.randint(0, c.n_pairs, (c.batch,))
        u = self.rand(c.batch)
        t = _u_shaped(u) if c.t_dist == "u_shaped" else u
        batch = {"z": self.pairs_z[idx], "x1": self.pairs_x[idx], "t": t}
        if self.pairs_c is not None:
            batch["y"] = self.pairs_c[idx]
        return batch

    def _loss(self, d2):
        c = self.config.huber_c
        return pseudo_huber(d2, c).mean() if c > 0 else d2.mean()

    def targets(self, batch, t=None) -> Targets:
        if "z" not in batch:
            raise ValueError("reflow's target depends on the (noise, teacher sample) coupling, not on x_t alone; "
                             "pass a batch from sample_batch() or probe_batch()")
        z, x1 = batch["z"], batch["x1"]
        tt = batch["t"] if t is None else torch.full((z.shape[0],), float(t), device=z.device)
        x_t = self.linear.add_noise(x1, z, tt)
        with torch.no_grad():
            teacher = self.teacher.velocity(x_t, tt) if self.process.name == "linear" else None
            student = self.flow.velocity(x_t, tt)
        return Targets(x_t, tt, z - x1, "v", teacher, student, {"z": z, "x1": x1})

    def probe_batch(self, n, t, seed=0):
        if self.pairs_z is None:
            self.make_pairs()
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, self.pairs_z.shape[0], (n,), generator=g).to(self.device)
        out = {"z": self.pairs_z[idx], "x1": self.pairs_x[idx], "t": torch.full((n,), float(t), device=self.device)}
        if self.pairs_c is not None:
            out["y"] = self.pairs_c[idx]
        return out

    def step(self, batch, it):
        z, x1, t = batch["z"], batch["x1"], batch["t"]
        if it < self.reflow_steps:
            x_t = self.linear.add_noise(x1, z, t)
            v = self.flow.velocity(x_t, t)
            loss = self._loss(sq_dist(v, z - x1))
            self.opt_step("flow", loss)
            return StepOutput(losses={"reflow": loss.item()}, stage="reflow")
        if self.one_step is None:
            self._start_distill()
        ones = torch.ones(z.shape[0], device=z.device)
        x_hat = self.one_step.x0(z, ones)
        loss = self._loss(sq_dist(x_hat, x1))
        self.opt_step("one_step", loss)
        return StepOutput(losses={"distill": loss.item()}, stage="distill")

    def generator(self) -> ReflowGenerator:
        return ReflowGenerator(self.flow, self.one_step, native_nfe=(1, 2, 4))

    def extra_state(self):
        return {"pairs_z": self.pairs_z, "pairs_x": self.pairs_x, "pairs_c": self.pairs_c,
                "distilling": self.one_step is not None}

    def load_extra_state(self, sd):
        if sd.get("pairs_z") is not None:
            self.pairs_z, self.pairs_x = sd["pairs_z"].to(self.device), sd["pairs_x"].to(self.device)
            self.pairs_c = sd["pairs_c"].to(self.device) if sd.get("pairs_c") is not None else None
        if sd.get("distilling") and self.one_step is None:
            self._start_distill()
