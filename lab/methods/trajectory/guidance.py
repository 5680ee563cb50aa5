"""Guidance distillation (stage one): one network pass per step instead of two.

Paper: Meng, Rombach, Gao, Kingma, Ermon, Ho & Salimans, "On Distillation of Guided
Diffusion Models" (CVPR 2023). Classifier-free guidance evaluates a conditional and an
unconditional model at every step; stage one of the paper trains a single student,
conditioned on the guidance weight w, to output the combined (guided) prediction, so
sampling costs one pass per step. Stage two progressively halves the student's steps.

Guidance convention (used everywhere in this module, as in the issue):
    v_guided = v_u + w (v_c - v_u)
so w = 0 is the unconditional model, w = 1 the conditional one, w > 1 extrapolates.

Mechanism as implemented:
- Teacher: a class-conditional flow/diffusion model (the analytic Gaussian-mixture
  teacher takes the component index as label; y = None is the whole mixture, which is
  the unconditional model). Unconditional teachers (the MLP zoo teachers) are refused
  with a LabError: guidance needs v_c and v_u.
- Student: with an analytic teacher (no weights) a fresh network for the data with a label
  embedding (n_classes + a null label) and the guidance weight w as an extra Fourier-embedded
  scalar input, prediction type v. With a trained teacher (the digits UNet) the teacher's own
  network widened by a w input that it ignores at initialisation (``lab.nets.widen``), as the
  paper initialises the student from the conditional teacher.
- Stage one, each step: labelled data (x0, y), t ~ U[t_min, 1], x_t = (1 - t) x0 + t eps,
  w ~ U[w_min, w_max] per sample; target = v_u(x_t) + w (v_c(x_t) - v_u(x_t)) from the
  frozen teacher (two teacher passes, no gradient); loss = |v_s(x_t, t, y, w) - target|^2.
  A share ``p_uncond`` of samples get the null label, whose target is v_u (so the
  student also samples unconditionally, e.g. when no label is given). Cosine learning-rate
  decay over stage one.
- A share ``traj_share`` of each batch replaces noised data by states visited by the
  guided teacher's own Euler sampler (K in ``traj_steps`` steps, random y and w; a pool of
  ``n_traj`` trajectories made once): at large w the guided trajectories leave the
  noised-data region, and without these inputs the student extrapolates there.
- Stage two (``halvings`` > 0, the last ``halvings x halving_steps`` optimiser steps):
  progressive distillation of the w-conditioned student from ``start_steps`` Euler steps,
  halving each round. The frozen previous student takes two Euler half-steps
  t -> t - 1/(2N) -> t - 1/N (same y and w); the student's target velocity makes one
  Euler step land on the same point (for the linear flow Euler = DDIM, so this is the
  paper's DDIM target); t on the student's grid i/N; fresh Adam per round.
- Generators: ``generator()`` is a ``guided_flow`` generator (Euler, nfe = steps, one
  pass each) that takes y and w; ``guided_teacher(w)`` is a ``cfg`` generator on the
  teacher (2 passes per step, so nfe = 2 x steps) for comparison.

Fidelity notes:
- The regression is in velocity space with a uniform weight over t (the paper regresses
  x-space predictions with its SNR weighting on a cosine VP schedule); t is drawn from
  [t_min, 1] (t_min = 0.02) because the analytic teacher is an x0 predictor whose
  velocity divides by t.
- The paper trains stage one on noised data only; the guided-trajectory inputs
  (``traj_share`` = 0.5) are our addition (AGD trains on CFG trajectories). Measured with
  600 steps, w = 4 at 2 steps: without them the student's samples were 4.7 away from the
  guided teacher's on average (same noise), with them 0.6; ``traj_share=0`` is the paper.
- On 2D the student is a fresh net (the analytic teacher has no weights to copy; the paper
  initialises the student from the conditional teacher, which the digits student does). It has to learn the product of w
  with v_c - v_u through the Fourier embedding of w, which is slow: 2000 steps by default.
- w ~ U[0, 4] (the paper uses w in [0, 4] on ImageNet 64 with (1 + w) c - w u, i.e. our
  w minus 1).
- Default is stage one only (halvings = 0): the w-conditioned student then samples at any
  step count. Measured on 8 Gaussians (analytic teacher, 4 Euler steps, mean per-class SWD
  to the 64-step guided teacher, 4000 samples): w = 1 / 2 / 4: student 0.050 / 0.036 /
  0.095 (4 passes) vs guided teacher 0.084 / 0.068 / 0.089 (8 passes); seed 1 gave 0.056 /
  0.046 / 0.102. At 2 steps and w = 4 the stage-one student is poor (0.30 vs 0.21).
- Stage two, 1000 + 2 x 300 steps, 8 -> 4 -> 2 steps, w = 2: the 2-step student reached 0.036
  vs 0.16 for the stage-one student at 2 steps, 0.24 for the guided teacher at 2 steps and
  0.068 at 4 steps (8 passes); a halved student is specialised: at 4 steps it got worse
  (0.095). The paper's 2-step and 1-step students come from many more halving rounds.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lab.config import check, param
from lab.diffusion.analytic import GMMPosterior
from lab.diffusion.denoiser import Denoiser
from lab.diffusion.generators import Generator, register_generator
from lab.diffusion.process import broadcast_coef
from lab.diffusion.samplers import SampleResult, ode_sample
from lab.errors import LabError
from lab.losses import sq_dist
from lab.methods.base import Targets, diffusion_net, register
from lab.methods.trajectory.base import HalvingConfig, HalvingMethod
from lab.nets import widen
from lab.trainable import StepOutput, cosine_decay


def is_class_conditional(denoiser: Denoiser) -> bool:
    """True when the denoiser's network takes a class label (analytic GMM posterior or a net with n_classes)."""
    return isinstance(denoiser.net, GMMPosterior) or int(getattr(denoiser.net, "n_classes", 0) or 0) > 0


def guided_velocity(denoiser: Denoiser, x, t, y, w):
    """v_u + w (v_c - v_u): two passes (one with the label, one with the null label y = None)."""
    v_u = denoiser.velocity(x, t, None)
    if y is None:
        return v_u
    v_c = denoiser.velocity(x, t, y)
    w = torch.as_tensor(w, dtype=x.dtype, device=x.device)
    w = broadcast_coef(w, v_c) if w.ndim == 1 else w
    return v_u + w * (v_c - v_u)


class _CFG(nn.Module):
    """A denoiser-shaped wrapper whose velocity is the classifier-free-guided velocity of a teacher."""

    def __init__(self, denoiser: Denoiser, w: float):
        super().__init__()
        self.inner, self.w = denoiser, float(w)
        self.process = denoiser.process
        self.pred = "v"

    def velocity(self, x, t, y=None, w=None, **cond):
        return guided_velocity(self.inner, x, self.inner.time_batch(t, x), y, self.w if w is None else w)

    def x0(self, x, t, y=None, w=None, **cond):
        t = self.inner.time_batch(t, x)
        return self.process.x0_eps_from_v(x, t, self.velocity(x, t, y, w))[0]


@register_generator
class CFGGenerator(Generator):
    """A class-conditional teacher sampled with classifier-free guidance: 2 passes per Euler step.

    ``nfe`` counts network passes: ``nfe = 2 * steps`` (an odd nfe rounds down, at least one step).
    Without a label the unconditional model is used (one pass per step, still counted as two).
    """

    kind = "cfg"
    denoisers = ("denoiser",)
    spec_fields = ("w",)
    default_nfe = 2

    def __init__(self, denoiser: Denoiser, w: float = 2.0, native_nfe=(), dim=2):
        self.denoiser, self.w, self.native_nfe, self.dim = denoiser, float(w), tuple(native_nfe), dim

    def sample_from(self, z, nfe, *, seed=0, y=None, return_trajectory=False, w=None, **cond):
        steps = max(1, nfe // 2)
        y = None if y is None else torch.as_tensor(y, device=z.device).long()
        res = ode_sample(_CFG(self.denoiser, self.w if w is None else w), z, steps, "euler", y=y,
                         return_trajectory=return_trajectory)
        return SampleResult(res.x, res.trajectory, res.times, 2 * steps)


@register_generator
class GuidedFlowGenerator(Generator):
    """A w-conditioned student v(x_t, t, y, w) sampled with Euler: nfe = steps, one pass each."""

    kind = "guided_flow"
    denoisers = ("denoiser",)
    spec_fields = ("w",)
    default_nfe = 4

    def __init__(self, denoiser: Denoiser, w: float = 2.0, native_nfe=(1, 2, 4, 8), dim=2):
        self.denoiser, self.w, self.native_nfe, self.dim = denoiser, float(w), tuple(native_nfe), dim

    def sample_from(self, z, nfe, *, seed=0, y=None, return_trajectory=False, w=None, **cond):
        y = None if y is None else torch.as_tensor(y, device=z.device).long()
        w = torch.full((z.shape[0],), float(self.w if w is None else w), device=z.device)
        return ode_sample(self.denoiser, z, nfe, "euler", y=y, return_trajectory=return_trajectory, w=w)


def mlp_net(spec, name):
    """The student's network spec: an MLP (the method sets its n_classes and its extra input w)."""
    return diffusion_net(spec, name, ("mlp",))


@dataclass
class GuidanceConfig(HalvingConfig):
    steps: int = 2000
    batch: int = 256
    lr: float = 2e-3
    student_net: dict = param({"type": "mlp", "hidden": 128, "depth": 3, "t_dim": 32}, spec=mlp_net,
                              note="an mlp spec; n_classes and extra are set by the method")
    start_steps: int = 8
    halvings: int = param(0, ge=0, allowed="an integer in [0, log2(start_steps)] (0: stage one only)")
    w_min: float = param(0.0, ge=0)
    w_max: float = param(4.0, ge=0)
    w_eval: float = param(2.0, ge=0)
    p_uncond: float = param(0.1, ge=0, lt=1)
    t_min: float = param(0.02, gt=0, lt=1)
    lr_decay: bool = True
    traj_share: float = param(0.5, ge=0, le=1)
    n_traj: int = param(2048, ge=1)
    traj_steps: tuple[int, ...] = param((1, 2, 4, 8), ge=1, min_len=1, note="step counts")
    halving_steps: int = param(400, ge=1)

    def validate(self):
        super().validate()
        check(self.w_min <= self.w_max, "w_min/w_max", (self.w_min, self.w_max), "0 <= w_min <= w_max")
        check(self.steps > self.halvings * self.halving_steps, "steps", self.steps,
              f"more than halvings x halving_steps = {self.halvings * self.halving_steps} (stage one needs steps)")


@register("guidance")
class Guidance(HalvingMethod):
    handles_labels = True
    Config = GuidanceConfig
    family = "guidance distillation"
    mechanism = "one w-conditioned student regresses the classifier-free-guided teacher v_u + w (v_c - v_u): 1 pass per step"
    paper = "Meng et al. 2023, On Distillation of Guided Diffusion Models"
    zoo_points = "showcase"
    needs_conditional_teacher = True
    digits_recipe = {"steps": 400, "batch": 32, "lr": 1e-4, "start_steps": 4, "halvings": 2, "halving_steps": 100,
                     "n_traj": 256, "traj_steps": [2, 4, 8]}
    zoo_digits = True
    tiny = {"batch": 64, "n_traj": 64, "halvings": 1, "start_steps": 2, "halving_steps": 10,
            "student_net": {"type": "mlp", "hidden": 32, "depth": 2, "t_dim": 16}}

    def setup(self):
        c = self.config
        if not is_class_conditional(self.teacher):
            raise LabError(f"guidance needs a class-conditional teacher (v_c and v_u), got an unconditional "
                           f"{type(self.teacher.net).__name__}; use e.g. toy2d/8gaussians/analytic")
        self.n_classes = int(self.data.n_classes)
        if self.n_classes < 1:
            raise LabError(f"guidance needs labelled data (a source with classes), got {self.data.spec}")
        if self.student_from_teacher():  # Meng et al. initialise the student from the teacher (w ignored at first)
            self.student = Denoiser(widen(self.teacher.net, ["w"]), self.process, self.teacher.pred)
            for p in self.student.net.parameters():
                p.requires_grad_(True)
        else:
            self.student = Denoiser(self.fresh_net(n_classes=self.n_classes, extra=["w"]), self.process, "v")
        self.add_net("student", self.student.net, lr=c.lr)
        self.pool = None  # states on the guided teacher's Euler trajectories: x_t, t, y, w
        self.stage = 0  # 0: stage one (regress the guided teacher); k >= 1: halving k of stage two
        self.stage_teacher = None  # frozen copy of the student (stage two)
        self.stage_one_steps = c.steps - c.halvings * c.halving_steps

    # ---- stage two schedule (progressive halving of the w-conditioned student)
    def stage_of(self, it: int) -> int:
        c = self.config
        if it < self.stage_one_steps:
            return 0
        return min(1 + (it - self.stage_one_steps) // c.halving_steps, c.halvings)

    def student_steps(self, stage: int | None = None) -> int | None:
        """Steps of the student being trained in a halving stage (None in stage one)."""
        stage = self.stage if stage is None else stage
        return self.config.start_steps // 2**stage if stage > 0 else None

    @torch.no_grad()
    def halving_target(self, x_t, t, y, w, n_s: int):
        """Two Euler half-steps of the frozen stage teacher t -> t - 1/(2 n_s) -> s = t - 1/n_s; the
        target velocity makes ONE Euler step of the student land on the same point."""
        stage_teacher, dt = self.stage_teacher, 1.0 / n_s
        mid, s_ = (t - 0.5 * dt).clamp_min(0.0), (t - dt).clamp_min(0.0)
        z_mid = x_t + self.col((mid - t)) * stage_teacher.velocity(x_t, t, y, w=w)
        z_s = z_mid + self.col((s_ - mid)) * stage_teacher.velocity(z_mid, mid.clamp_min(1e-4), y, w=w)
        return (z_s - x_t) / self.col((s_ - t)), z_s

    @torch.no_grad()
    def make_pool(self):
        """Run the guided teacher (Euler, K steps, K drawn from traj_steps) from n_traj noises with random
        labels and w, and keep every state it visits before its last step (the student's inputs at inference)."""
        c = self.config
        g = torch.Generator().manual_seed(self.seed + 4099)
        n = c.n_traj
        z = torch.randn(n, *self.shape, generator=g)
        y = torch.randint(0, self.n_classes, (n,), generator=g)
        w = c.w_min + (c.w_max - c.w_min) * torch.rand(n, generator=g)
        ks = torch.tensor(list(c.traj_steps))[torch.randint(0, len(c.traj_steps), (n,), generator=g)]
        xs, ts, ys, ws = [], [], [], []
        for k in sorted(set(ks.tolist())):
            sel = ks == k
            x, yy, ww = z[sel].to(self.device), y[sel].to(self.device), w[sel].to(self.device)
            grid = torch.linspace(1.0, 0.0, k + 1)
            for i in range(k):
                tt = torch.full((x.shape[0],), float(grid[i]), device=self.device)
                xs.append(x), ts.append(tt), ys.append(yy), ws.append(ww)
                x = x + float(grid[i + 1] - grid[i]) * self.teacher_target(x, tt, yy, ww)[0]
        self.pool = {"x_t": torch.cat(xs), "t": torch.cat(ts).clamp_min(c.t_min), "y": torch.cat(ys), "w": torch.cat(ws)}

    def sample_batch(self, it):
        c = self.config
        x0, y = self.data.sample(c.batch, self.rng, labelled=True)
        drop = self.rand(c.batch) < c.p_uncond
        y = torch.where(drop, torch.full_like(y.to(self.device), self.n_classes), y.to(self.device))
        batch = {"x0": x0.to(self.device), "y": y, "eps": self.randn(c.batch, *self.shape),
                 "t": c.t_min + (1 - c.t_min) * self.rand(c.batch),
                 "w": c.w_min + (c.w_max - c.w_min) * self.rand(c.batch)}
        stage = self.stage_of(it)
        if stage > 0:  # stage two: times on the halving student's grid, t = i / n_s
            batch["t"] = self.grid_times(self.student_steps(stage))
        if c.traj_share > 0:
            if self.pool is None:
                self.make_pool()
            batch["from_pool"] = self.rand(c.batch) < c.traj_share
            batch["pool_idx"] = self.randint(0, self.pool["x_t"].shape[0], (c.batch,))
        return batch

    def _inputs(self, batch):
        """x_t, t, y, w of a training batch: noised data, with a share replaced by guided-trajectory states."""
        x_t = self.process.add_noise(batch["x0"], batch["eps"], batch["t"])
        t, y, w = batch["t"], batch["y"], batch["w"]
        if "from_pool" in batch:
            m, i = batch["from_pool"], batch["pool_idx"]
            p = {k: v[i] for k, v in self.pool.items()}
            x_t = torch.where(self.col(m), p["x_t"], x_t)
            t, y, w = torch.where(m, p["t"], t), torch.where(m, p["y"], y), torch.where(m, p["w"], w)
        return x_t, t, y, w

    def probe_batch(self, n, t, seed=0):
        g = torch.Generator().manual_seed(seed)
        x0, y = self.data.sample(n, g, labelled=True)
        eps = torch.randn(n, *self.shape, generator=g)
        tt = torch.full((n,), float(t))
        return {k: v.to(self.device) for k, v in
                {"x0": x0, "y": y, "eps": eps, "t": tt, "x_t": self.process.add_noise(x0, eps, tt),
                 "w": torch.full((n,), self.config.w_eval)}.items()}

    @torch.no_grad()
    def teacher_target(self, x_t, t, y, w):
        """Guided teacher velocity; the null label (y == n_classes) gets the unconditional v_u."""
        v_u = self.teacher.velocity(x_t, t, None)
        cond = y < self.n_classes
        v_c = self.teacher.velocity(x_t, t, torch.where(cond, y, torch.zeros_like(y)))
        guided = v_u + self.col(w) * (v_c - v_u)
        return torch.where(self.col(cond), guided, v_u), v_c

    def targets(self, batch, t=None) -> Targets:
        """Target at x_t for the batch's labels and w (on a bare grid: class 0 and w = w_eval).

        Stage one: the guided teacher's velocity (``teacher`` is the unguided conditional v_c).
        Stage two: the velocity of one Euler step onto the frozen previous student's two half-steps
        (``teacher`` is then the guided teacher, for reference)."""
        if "x_t" in batch:
            x_t = batch["x_t"]
            tt = torch.full((x_t.shape[0],), float(t), device=x_t.device) if t is not None else batch["t"]
        else:
            n = batch["x0"].shape[0]
            tt = torch.full((n,), float(t), device=self.device) if t is not None else batch["t"]
            x_t = self.process.add_noise(batch["x0"], batch["eps"], tt)
        n = x_t.shape[0]
        y = batch.get("y", torch.zeros(n, dtype=torch.long, device=x_t.device))
        w = batch.get("w", torch.full((n,), self.config.w_eval, device=x_t.device))
        target, teacher = self.teacher_target(x_t, tt, y, w)
        info = {"y": y, "w": w, "stage": self.stage}
        if self.stage > 0:
            teacher = target
            target, z_s = self.halving_target(x_t, tt, y, w, self.student_steps())
            info.update(teacher_endpoint=z_s, student_steps=self.student_steps())
        with torch.no_grad():
            student = self.student.velocity(x_t, tt, y, w=w)
        return Targets(x_t, tt, target, "v", teacher, student, info)

    def step(self, batch, it):
        c = self.config
        self.advance(self.stage_of(it))
        if c.lr_decay and self.stage == 0:  # cosine decay to 5% of lr over stage one (a function of it: exact on resume)
            for g in self.optimizers["student"].param_groups:
                g["lr"] = c.lr * cosine_decay(it / max(1, self.stage_one_steps), floor=0.05)
        x_t, t, y, w = self._inputs(batch)
        if self.stage == 0:
            target, _ = self.teacher_target(x_t, t, y, w)
            name, stage = "guided_v", "stage one: regress the guided teacher"
        else:
            n_s = self.student_steps()
            # the null label has no w-dependence; keep it as is (the stage teacher learned v_u there)
            target, _ = self.halving_target(x_t, t, y, w, n_s)
            name, stage = "halving", f"stage two, halving {self.stage}: {2 * n_s}->{n_s} steps"
        pred = self.student.velocity(x_t, t, y, w=w)
        loss = sq_dist(pred, target).mean()
        self.opt_step("student", loss)
        return StepOutput(losses={name: loss.item()}, metrics={"mean_w": w.mean().item(), "stage": float(self.stage)},
                          stage=stage)

    def generator(self) -> GuidedFlowGenerator:
        c = self.config
        native = (c.start_steps // 2**c.halvings,) if c.halvings else (1, 2, 4, 8)
        return GuidedFlowGenerator(self.student, c.w_eval, native_nfe=native)

    def guided_teacher(self, w: float | None = None) -> CFGGenerator:
        """The teacher with classifier-free guidance at weight w (2 passes per step)."""
        return CFGGenerator(self.teacher, self.config.w_eval if w is None else w)

    def ema_nets(self):
        return {"student": self.student.net}

    def extra_state(self):
        return {"pool": self.pool, **super().extra_state()}

    def load_extra_state(self, sd):
        super().load_extra_state(sd)
        if sd.get("pool") is not None:
            self.pool = {k: v.to(self.device) for k, v in sd["pool"].items()}
