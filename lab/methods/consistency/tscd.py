"""Trajectory segmented consistency distillation (TSCD).

Paper: Ren et al., "Hyper-SD: Trajectory Segmented Consistency Model for Efficient Image
Synthesis" (NeurIPS 2024), with the "map to any earlier time" view of Zheng et al.,
"Trajectory Consistency Distillation" (TCD, 2024). The time axis [0, 1] is cut into K equal
segments; inside each segment a consistency function maps every point of the teacher's
ODE trajectory to the trajectory's point at the segment's START (its lower boundary in
our t = 1 noise convention), not to x0. A K-segment model therefore samples natively in K
deterministic jumps, boundary to boundary. Hyper-SD trains progressively with K = 8, 4, 2, 1,
each stage initialised from the previous one.

Mechanism as implemented:
- Map to a boundary: f(x_t, t -> s) = DDIM step from t to s with the student's x0 estimate,
  i.e. alpha(s) x0_hat + sigma(s) eps_hat(x0_hat). For a linear-flow velocity network this
  is the flow-map form x_t + (s - t) F(x_t, t) (exact DDIM for this flow), which meets the boundary
  condition f(x_s, s -> s) = x_s exactly and is the teacher's own Euler jump at
  initialisation (student initialised from the teacher).
- Discretise [0, 1] into N intervals (N divisible by every K); draw n, noise data to
  x_{t_{n+1}}, take ONE teacher ODE step (Heun) to t_n, and regress
  f_theta(x_{t_{n+1}}, t_{n+1} -> b) onto the target network's f_{theta^-}(x_hat_{t_n}, t_n -> b),
  where b = floor(n K / N) / K is the lower boundary of the segment of t_{n+1}; when t_n = b
  the target is x_hat_{t_n} itself (boundary condition). Loss measured at the boundary.
- K = 1 is exactly consistency distillation (``lab.methods.consistency.consistency``): b = 0 and the
  map is the x0 estimate. This class subclasses it and reuses its teacher step and EMA.
- ``segments``: a single K (int) or a tuple of stages (e.g. (8, 4, 2, 1)); ``steps`` are
  split evenly over the stages, the target network is reset to the student at each stage
  change, and the optimiser carries over.
- Sampler (generator kind ``segments``): nfe = k jumps to the boundaries of k equal
  segments, deterministic (TCD's gamma = 0). ``gamma`` > 0 gives TCD's stochastic sampler
  (predict at s = (1 - gamma) t_next, re-noise to t_next); gamma = 1 is multistep
  consistency sampling. Native NFE = the K values of the schedule.

Fidelity notes:
- Time is t in [0, 1] of the linear flow, uniform grid, boundary at t = 0 (as in our
  consistency method); Hyper-SD uses SD's 1000-step DDPM grid and LCM-style skipping.
- No human-feedback or score-distillation stages of Hyper-SD (they are separate methods:
  here only TSCD itself), no LoRA: the whole student is fine-tuned.
- Loss: pseudo-Huber (c = 0.03) as in our consistency method; Hyper-SD uses L2 / Huber too.
- After a progressive schedule the final network was trained last with the smallest K; the
  generator still accepts the earlier K (the weights were trained for them), but the last
  stage dominates. Measured on 8 Gaussians (zoo teacher; SWD at 50 teacher steps 0.090, about
  the floor), 600 steps: schedule (8, 4, 2, 1) gave 0.44 at 1 step (only 150 steps of K = 1;
  plain K = 1 for 600 steps gives 0.090) and 0.093 at 2 jumps. So the default is a single
  K = 2 (a 2-step model, native NFE 2): 0.094 at 2 NFE after 600 steps (1.05x the teacher).
- Same budget (300 steps), same seed, NFE = K: K = 4 beats K = 1 at 4 NFE (SWD 0.092 vs 0.110,
  K = 1 with its best sampler); at 2 NFE K = 2 and K = 1 tie in SWD (0.101 vs 0.101; 0.094 vs
  0.093 at 600 steps), but K = 2 stays closer to the teacher's own ODE output from the same
  noise (mean distance 0.107 vs 0.153): the paper's "trajectory preservation". Learning rate
  1e-3 instead of 6e-4 changed little (2 NFE, K = 2 vs K = 1: 0.100 vs 0.108).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lab.config import check, describe_field, is_num, param
from lab.diffusion.denoiser import Denoiser
from lab.diffusion.generators import Generator, register_generator
from lab.diffusion.process import broadcast_coef
from lab.diffusion.samplers import SampleResult, time_grid
from lab.methods.base import Targets, register
from lab.methods.consistency.consistency import Consistency, ConsistencyConfig
from lab.trainable import StepOutput


def segment_map(denoiser: Denoiser, x, t, s, y=None, **cond):
    """f(x_t, t -> s): DDIM jump with the denoiser's x0 estimate (x_t + (s - t) v for a linear-flow v network)."""
    x0 = denoiser.x0(x, t, y, **cond)
    return denoiser.process.ddim_step(x, t, s, x0)


@register_generator
class SegmentGenerator(Generator):
    """A segmented consistency model: jumps boundary to boundary (deterministic, TCD gamma = 0 by default)."""

    kind = "segments"
    denoisers = ("denoiser",)
    spec_fields = ("gamma",)

    def __init__(self, denoiser: Denoiser, native_nfe=(1,), gamma: float = 0.0, dim=2):
        self.denoiser, self.native_nfe, self.gamma, self.dim = denoiser, tuple(native_nfe), float(gamma), dim

    def sample_from(self, z, nfe, *, seed=0, y=None, return_trajectory=False, gamma=None, **cond):
        gamma = self.gamma if gamma is None else float(gamma)
        g = torch.Generator().manual_seed(int(seed) + 1_000_003) if seed is not None else None
        ts = time_grid(nfe, device=z.device).to(z.dtype)
        proc = self.denoiser.process
        x, traj = z, [z]
        with torch.no_grad():
            for i in range(nfe):
                tb = ts[i].expand(x.shape[0])
                t_next = ts[i + 1].expand(x.shape[0])
                s = (1.0 - gamma) * t_next if i + 1 < nfe else t_next  # no noise on the last step
                x = segment_map(self.denoiser, x, tb, s, y, **cond)
                if gamma > 0 and i + 1 < nfe:  # forward-noise x_s from s up to t_next
                    eps = torch.randn(x.shape, generator=g).to(x) if g is not None else torch.randn_like(x)
                    r = proc.alpha(t_next) / proc.alpha(s).clamp_min(1e-12)
                    std = (proc.sigma(t_next) ** 2 - (r * proc.sigma(s)) ** 2).clamp_min(0).sqrt()
                    x = broadcast_coef(r, x) * x + broadcast_coef(std, x) * eps
                if return_trajectory:
                    traj.append(x)
        return SampleResult(x, torch.stack(traj) if return_trajectory else None, ts, nfe)


def stages_of(segments) -> tuple:
    """The stages of a ``segments`` value: (K,) for one K, else the list as a tuple."""
    return (segments,) if isinstance(segments, int) else tuple(segments)


@dataclass
class TSCDConfig(ConsistencyConfig):
    steps: int = 600
    segments: tuple | int = param(2, allowed="an integer K >= 1 or a list of them (stages, e.g. [8, 4, 2, 1])")

    def validate(self):
        super().validate()
        segs = stages_of(self.segments) if isinstance(self.segments, (int, list, tuple)) else ()
        check(len(segs) >= 1 and all(is_num(k) and isinstance(k, int) and k >= 1 for k in segs), "segments",
              self.segments, describe_field(type(self), "segments"))
        check(all(self.n_intervals % k == 0 for k in segs), "n_intervals", self.n_intervals,
              f"a multiple of every K in segments={list(segs)}")
        check(len(segs) <= self.steps, "segments", self.segments, "at most one stage per training step")

    @property
    def stages(self) -> tuple[int, ...]:
        return stages_of(self.segments)


@register("tscd")
class TSCD(Consistency):
    Config = TSCDConfig
    family = "step distillation / trajectory"
    mechanism = "consistency distillation inside K time segments: map x_t to its segment's start, K jumps to sample"
    paper = "Ren et al. 2024, Hyper-SD: Trajectory Segmented Consistency Model (TSCD); Zheng et al. 2024, TCD"
    zoo_points = "showcase"
    digits_recipe = None
    zoo_digits = False
    tiny = {"batch": 64, "student_net": {"type": "mlp", "hidden": 32, "depth": 2, "t_dim": 16}, "segments": [4, 2],
            "n_intervals": 8}

    # ---- stages
    def stage_of(self, it: int) -> int:
        stages = self.config.stages
        per = max(1, self.config.steps // len(stages))
        return min(it // per, len(stages) - 1)

    def K_at(self, it: int) -> int:
        return self.config.stages[self.stage_of(it)]

    def boundary(self, n: torch.Tensor, K: int) -> torch.Tensor:
        """Lower boundary of the segment of t_{n+1} = (n + 1) / N."""
        N = self.config.n_intervals
        return torch.div(n * K, N, rounding_mode="floor").float() / K

    @torch.no_grad()
    def _seg_target(self, x_t, t, s, b):
        x_s = self.teacher_step(x_t, t, s)
        mapped = segment_map(self.target, x_s, s, b)
        return torch.where(self.col((s <= b)), x_s, mapped), x_s

    def targets(self, batch, t=None) -> Targets:
        N = self.config.n_intervals
        K = self.K_at(self.it)
        if t is not None:
            n_up = max(1, round(float(t) * N))
            x_t = batch["x_t"]
            n = torch.full((x_t.shape[0],), n_up - 1, device=x_t.device, dtype=torch.long)
        else:
            n = batch["n"]
            x_t = None
        tt = (n + 1).float() / N
        if x_t is None:
            x_t = self.process.add_noise(batch["x0"], batch["eps"], tt)
        s = n.float() / N
        b = self.boundary(n, K)
        target, x_s = self._seg_target(x_t, tt, s, b)
        with torch.no_grad():
            teacher = segment_map(self.teacher, x_t, tt, b)
            student = segment_map(self.student, x_t, tt, b)
        # the target lives at the boundary b (x-space); with K = 1 it is an x0 estimate
        return Targets(x_t, tt, target, "x0", teacher, student,
                       {"x_s": x_s, "s": s, "boundary": b, "K": K,
                        "note": "target is the ODE point at the segment start b, not x0 (unless b = 0)"})

    def step(self, batch, it):
        N = self.config.n_intervals
        stage = self.stage_of(it)
        if it > 0 and stage != self.stage_of(it - 1):  # new stage: restart the target from the student
            self.target.net.load_state_dict(self.student.net.state_dict())
        K = self.config.stages[stage]
        n = batch["n"]
        t = (n + 1).float() / N
        s = n.float() / N
        b = self.boundary(n, K)
        x_t = self.process.add_noise(batch["x0"], batch["eps"], t)
        target, _ = self._seg_target(x_t, t, s, b)
        loss = self.distance(segment_map(self.student, x_t, t, b), target)
        self.opt_step("student", loss)
        self.update_target()
        return StepOutput(losses={"tscd": loss.item()}, metrics={"K": float(K), "mean_t": t.mean().item()},
                          stage=f"K={K}")

    def generator(self) -> SegmentGenerator:
        return SegmentGenerator(self.student, native_nfe=tuple(sorted(set(self.config.stages))))
