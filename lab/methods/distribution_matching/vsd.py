"""Variational Score Distillation (VSD) into a one-step generator.

Papers: Wang et al., "ProlificDreamer: High-Fidelity and Diverse Text-to-3D Generation with
Variational Score Distillation" (NeurIPS 2023) introduced the VSD gradient (particles of a
3D scene, a LoRA fake score); Nguyen & Tran, "SwiftBrush: One-Step Text-to-Image Diffusion
Model with Variational Score Distillation" (CVPR 2024) used it to train a one-step
generator initialised from the teacher, with the fake score a LoRA of the teacher.

Mechanism as implemented:
- G is a copy of the teacher evaluated at the largest noise level: x = x0_G(z, t = 1).
- Fake score: STARTS FROM THE TEACHER. ``fake_init="lora"`` (default) wraps every
  nn.Linear of a copy of the teacher's net in a low-rank adapter W x + (a/r) B A x with
  the base weight frozen, A random and B = 0 (so the fake score equals the teacher at
  step 0; rank ``lora_rank``, scale ``lora_alpha``); ``"copy"`` trains a full copy.
  Trained with the ordinary denoising (flow-matching) loss on detached generator
  samples at t ~ U(0, 1), ``fake_updates`` steps per generator step (1 in both papers).
- Generator gradient (stop-gradient on the bracket): t ~ U[t_min, t_max] (2%-98%),
  x_t = alpha(t) x + sigma(t) eps, grad_x = w(t) alpha(t) (eps_teacher(x_t) - eps_fake(x_t))
  (the chain rule dx_t/dx = alpha(t)); loss = 0.5 |x - sg(x - grad_x)|^2.
  ``weighting="sigma2"``: w(t) = sigma(t)^2 (DreamFusion / ProlificDreamer);
  ``"unit"``: w = 1.
- At step 0 the two scores agree, so the generator only starts to move once the fake
  score has fitted the generator's own samples: no data, no regression pairs.

Fidelity notes:
- Flow teacher (alpha = 1 - t, sigma = t); eps predictions are read from the teacher's
  velocity through the Denoiser. No classifier-free guidance (the papers use CFG 7.5 for
  text; unconditional 2D here), no camera / text conditioning of the LoRA.
- When the teacher is analytic (the exact GMM posterior, no parameters: the tiny
  contract test) there is nothing to adapt: the fake score is then a fresh MLP from
  ``student_net`` (and so is the generator), and ``fake_init`` is ignored.
- Not in the papers: TWO fake-score steps per generator step (``fake_updates``; the papers
  use one) and a linear learning-rate decay to 10% at ``steps`` (``lr_decay``). The generator
  starts as a near-constant map (the teacher's x0 at t = 1 is about the data mean), and with
  one slow fake step the generator overshoots past the modes for the first ~100 steps and
  can lose modes.
- Toy learning rates: 3e-4 generator, 3e-3 LoRA (SwiftBrush: 1e-6 and 1e-3 on images).
- The generator is saved as kind ``onestep_tinit`` (from ``sid``; t_init = 1, SwiftBrush's
  pure-noise input).
- Measured on 8 Gaussians with the zoo teacher (teacher at 50 steps: SWD 0.090; at 1 step
  1.37), 1-step SWD with these defaults after 900 steps: 0.108 (1.20x; between 1.11x and
  1.37x at the 100-step checks from step 400 on). With ``steps`` = 600: 0.117 (1.30x);
  "copy" fake (lr_fake 1e-3, 1 update): 0.115 (1.29x); LoRA with one fake update and
  lr_fake 3e-3: 0.138 (1.54x); LoRA, lr_fake 1e-3, 2 updates: 0.140; without decay,
  LoRA, rates 1e-3 / 1e-3: 0.38 after 500 steps; generator rate 3e-3: collapsed to 1-2 modes (SWD 1.7);
  "unit" weighting with a copy fake: 0.27 after 400 steps with 7 modes.
  The claim test (900 steps) takes about 60 s on one thread with ~5 other jobs on 2 cores.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from lab.diffusion.denoiser import Denoiser
from lab.losses import sq_dist
from lab.methods.base import Method, MethodConfig, Targets, register
from lab.methods.distribution_matching.sid import LR_DECAYS, NoisyInputOneStepGenerator, decay_lr
from lab.trainable import StepOutput, check, is_num

FAKE_INITS = ("lora", "copy")
WEIGHTINGS = ("sigma2", "unit")


class LoRALinear(nn.Module):
    """y = W x + b + (alpha / r) B A x with W, b frozen, A ~ Kaiming-uniform, B = 0 (as in peft)."""

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float = 4.0):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank, self.scale = rank, alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x):
        return self.base(x) + self.scale * (x @ self.lora_A.t()) @ self.lora_B.t()


def add_lora(net: nn.Module, rank: int = 4, alpha: float = 4.0) -> nn.Module:
    """A copy of ``net`` with every nn.Linear wrapped in a zero-initialised LoRALinear (in place on the copy)."""
    net = copy.deepcopy(net)

    def wrap(mod: nn.Module):
        for name, child in mod.named_children():
            if isinstance(child, nn.Linear):
                setattr(mod, name, LoRALinear(child, rank, alpha))
            else:
                wrap(child)

    for p in net.parameters():
        p.requires_grad_(False)
    wrap(net)
    return net


@dataclass
class VSDConfig(MethodConfig):
    steps: int = 900
    lr: float = 3e-4
    lr_fake: float = 3e-3
    lr_decay: str = "linear"
    fake_init: str = "lora"
    lora_rank: int = 4
    lora_alpha: float = 4.0
    fake_updates: int = 2
    weighting: str = "sigma2"
    t_min: float = 0.02
    t_max: float = 0.98
    t_init: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        check(is_num(self.lr_fake) and self.lr_fake > 0, "lr_fake", self.lr_fake, "a positive float")
        check(self.lr_decay in LR_DECAYS, "lr_decay", self.lr_decay, ", ".join(LR_DECAYS))
        check(self.fake_init in FAKE_INITS, "fake_init", self.fake_init, ", ".join(FAKE_INITS))
        check(isinstance(self.lora_rank, int) and self.lora_rank >= 1, "lora_rank", self.lora_rank, "an integer >= 1")
        check(is_num(self.lora_alpha) and self.lora_alpha > 0, "lora_alpha", self.lora_alpha, "a positive float")
        check(isinstance(self.fake_updates, int) and self.fake_updates >= 1, "fake_updates", self.fake_updates, "an integer >= 1")
        check(self.weighting in WEIGHTINGS, "weighting", self.weighting, ", ".join(WEIGHTINGS))
        check(is_num(self.t_min) and is_num(self.t_max) and 0.0 < self.t_min < self.t_max < 1.0, "t_min/t_max",
              (self.t_min, self.t_max), "0 < t_min < t_max < 1")
        check(is_num(self.t_init) and 0 < self.t_init <= 1, "t_init", self.t_init, "a float in (0, 1] (the generator's input noise level)")


@register("vsd")
class VSD(Method):
    Config = VSDConfig
    family = "step distillation / distribution matching"
    mechanism = "one-step generator pushed by w(t)(eps_teacher - eps_fake) at its noised samples; the fake score is a LoRA of the teacher"
    paper = ("Wang et al. 2023, ProlificDreamer (Variational Score Distillation); "
             "Nguyen & Tran 2024, SwiftBrush: One-Step Text-to-Image Diffusion Model with Variational Score Distillation")
    zoo_points = "showcase"

    def setup(self):
        c = self.config
        from_teacher = self.student_from_teacher()
        pred = self.teacher.pred if from_teacher else "v"
        self.gen = Denoiser(self.new_student_net(), self.process, pred)
        self.add_net("generator", self.gen.net, lr=c.lr)
        if not from_teacher:
            fake_net, self.fake_kind = self.new_student_net(), "fresh"  # analytic teacher: nothing to adapt
        elif c.fake_init == "lora":
            fake_net, self.fake_kind = add_lora(self.teacher.net, c.lora_rank, c.lora_alpha), "lora"
        else:
            fake_net, self.fake_kind = self.new_student_net(), "copy"
        self.fake = Denoiser(fake_net, self.process, pred)
        self.add_net("fake_score", self.fake.net, lr=c.lr_fake)

    # ---- pieces
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator().apply(z)

    def sample_batch(self, it):
        c = self.config
        return {"z": self.randn(c.batch, *self.shape), "t": c.t_min + (c.t_max - c.t_min) * self.rand(c.batch),
                "eps": self.randn(c.batch, *self.shape),
                "fake": [(self.randn(c.batch, *self.shape), self.rand(c.batch), self.randn(c.batch, *self.shape)) for _ in range(c.fake_updates)]}

    @torch.no_grad()
    def score_gradient(self, x, t, eps):
        x_t = self.process.add_noise(x, eps, t)
        e_real = self.teacher.eps(x_t, t)
        e_fake = self.fake.eps(x_t, t)
        a, s = self.col(self.process.alpha(t)), self.col(self.process.sigma(t))
        w = s * s if self.config.weighting == "sigma2" else torch.ones_like(s)
        return torch.nan_to_num(w * a * (e_real - e_fake)), x_t, e_real, e_fake

    def targets(self, batch, t=None) -> Targets:
        if "z" not in batch:
            raise ValueError("vsd's target depends on the generator sample G(z) (the gradient is applied to x = G(z)), "
                             "not on x_t alone; pass a batch from sample_batch() or probe_batch()")
        z = batch["z"]
        tt = batch["t"] if t is None else torch.full((z.shape[0],), float(t), device=z.device)
        with torch.no_grad():
            x = self.generate(z)
            grad, x_t, _, _ = self.score_gradient(x, tt, batch["eps"])
            real, fake = self.teacher.x0(x_t, tt), self.fake.x0(x_t, tt)
        return Targets(x_t, tt, x - grad, "x0", real, fake, {"generator_sample": x, "grad": grad})

    def probe_batch(self, n, t, seed=0):
        g = torch.Generator().manual_seed(seed)
        return {"z": torch.randn(n, *self.shape, generator=g).to(self.device), "eps": torch.randn(n, *self.shape, generator=g).to(self.device),
                "t": torch.full((n,), float(t), device=self.device)}

    def step(self, batch, it):
        c = self.config
        decay_lr(self, it, {"generator": c.lr, "fake_score": c.lr_fake}, c.lr_decay)
        for z, t, eps in batch["fake"]:
            with torch.no_grad():
                x = self.generate(z)
            loss_fake = self.fit_fake_score(x, t, eps)
        x = self.generate(batch["z"])
        grad, _, _, _ = self.score_gradient(x.detach(), batch["t"], batch["eps"])
        loss = 0.5 * sq_dist(x, (x - grad).detach()).mean()
        self.opt_step("generator", loss)
        return StepOutput(losses={"vsd": loss.item(), "fake": loss_fake},
                          metrics={"grad_norm": grad.flatten(1).norm(dim=1).mean().item()}, stage="vsd")

    def generator(self) -> NoisyInputOneStepGenerator:
        return NoisyInputOneStepGenerator(self.gen, self.config.t_init)

    def ema_nets(self):
        return {"generator": self.gen.net}
