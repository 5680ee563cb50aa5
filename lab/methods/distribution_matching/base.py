"""What the distribution-matching methods share (see README.md): a fake score fitted online to the
generator's own samples, DMD's score gradient, and the one-step generator set up from the teacher.

- :class:`FakeScoreMixin`: the fake score ``self.fake`` and its optimiser, its updates on detached generator
  samples, and DMD's generator gradient (real minus fake x0 prediction, normalised by mean|x - x0_real|,
  Yin et al. 2024 / tianweiy/DMD2 ``edm_guidance.py``) and loss. Mixed into any :class:`Method` (rcm, an sCM).
- :class:`OneStepDistributionMatching`: a one-step generator G (a copy of the teacher) plus the fake score:
  setup, ``generate``, the batches, ``targets``/``probe_batch`` and the generator (dmd, dmd2, sid, vsd).
- :class:`NoisyInputOneStepGenerator` (kind ``onestep_tinit``): G(z) = x0_G(t_init z, t_init) (sid, vsd).
- :func:`decay_lr`: the linear learning-rate decay of sid and vsd.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lab.config import check, param
from lab.diffusion.denoiser import Denoiser
from lab.diffusion.generators import ConsistencyGenerator, Generator, register_generator
from lab.diffusion.samplers import SampleResult
from lab.losses import mean_abs, sq_dist
from lab.methods.base import Method, MethodConfig, Targets

LR_DECAYS = ("none", "linear")


def decay_lr(method: Method, it: int, lrs: dict[str, float], kind: str) -> None:
    """Set each optimiser's learning rate for step ``it`` (a pure function of it: resume-safe).
    "linear" goes from the base rate to 10% of it at ``config.steps``."""
    f = 1.0 if kind == "none" else 1.0 - 0.9 * min(it / max(method.config.steps, 1), 1.0)
    for name, lr in lrs.items():
        for g in method.optimizers[name].param_groups:
            g["lr"] = lr * f


def one_step(denoiser: Denoiser, z: torch.Tensor, t_init: float = 1.0, y=None, **cond) -> torch.Tensor:
    """x0_G(t_init z, t_init): the denoiser's clean-sample prediction from noise scaled to level t_init."""
    t = torch.full((z.shape[0],), t_init, device=z.device, dtype=z.dtype)
    return denoiser.x0(t_init * z, t, y, **cond)


@register_generator
class NoisyInputOneStepGenerator(Generator):
    """One-step generator G(z) = x0_net(t_init z, t_init): the teacher's clean-sample prediction
    from noise scaled to the noise level t_init (SiD's ``sigma_init``; t_init = 1 is plain x0(z, 1))."""

    kind = "onestep_tinit"
    denoisers = ("denoiser",)
    spec_fields = ("t_init",)

    def __init__(self, denoiser: Denoiser, t_init: float = 1.0, native_nfe=(1,), dim=2):
        self.denoiser, self.t_init, self.native_nfe, self.dim = denoiser, float(t_init), tuple(native_nfe), dim

    def apply(self, z, y=None, **cond):
        """G(z), differentiable (used for training)."""
        return one_step(self.denoiser, z, self.t_init, y, **cond)

    def sample_from(self, z, nfe, *, seed=0, y=None, return_trajectory=False, **cond):
        with torch.no_grad():
            x = self.apply(z, y, **cond)
        times = torch.tensor([self.t_init, 0.0])
        return SampleResult(x, torch.stack([z, x]) if return_trajectory else None, times, 1)


@dataclass
class DistributionMatchingConfig(MethodConfig):
    lr_fake: float = param(1e-3, gt=0)
    t_min: float = 0.02  # the generator gradient's times: U[t_min, t_max]
    t_max: float = 0.98
    ema: float = param(0.0, ge=0, lt=1, note="EMA decay of the sampled generator; 0 samples the raw generator")
    beta1: float = param(0.9, ge=0, lt=1, note="Adam beta1 of both networks (SiD's code uses 0)")

    def validate(self):
        super().validate()
        check(0.0 < self.t_min < self.t_max < 1.0, "t_min/t_max", (self.t_min, self.t_max), "0 < t_min < t_max < 1")


class FakeScoreMixin:
    """The fake score ``self.fake`` (a Denoiser fitted to the generator's samples) and DMD's gradient.
    The host defines ``generate(z)`` (the generator's samples, differentiable) and ``config.lr_fake``."""

    def score_pred(self) -> str:
        """The prediction of the generator and fake score: the teacher's when they copy it, else velocity."""
        return self.teacher.pred if self.student_from_teacher() else "v"

    def add_fake_score(self, net=None, **adam) -> None:
        """The fake score on ``net`` (default: a copy of the teacher), optimised as "fake_score"."""
        self.fake = Denoiser(self.new_student_net() if net is None else net, self.process, self.score_pred())
        self.add_net("fake_score", self.fake.net, lr=self.config.lr_fake, **adam)

    def fake_draws(self, n: int) -> list:
        """The random inputs of n fake-score updates: (noise z, time t ~ U(0, 1), noise eps) each."""
        c = self.config
        return [(self.randn(c.batch, *self.shape), self.rand(c.batch), self.randn(c.batch, *self.shape))
                for _ in range(n)]

    def update_fake(self, draws) -> float:
        """One fake-score step per draw of :meth:`fake_draws` on detached samples G(z); the last loss."""
        for z, t, eps in draws:
            with torch.no_grad():
                x = self.generate(z)
            loss = self.fit_fake_score(x, t, eps)
        return loss

    @torch.no_grad()
    def score_gradient(self, x, t, eps):
        """DMD's gradient at generator samples x: (x0_fake(x_t) - x0_real(x_t)) / mean|x - x0_real(x_t)|
        (nan_to_num), with x_t and both x0 predictions."""
        x_t = self.process.add_noise(x, eps, t)
        real = self.teacher.x0(x_t, t)
        fake = self.fake.x0(x_t, t)
        norm = mean_abs(x - real).clamp_min(1e-8)
        return torch.nan_to_num((fake - real) / norm), x_t, real, fake

    def dm_loss(self, x, t, eps) -> tuple[torch.Tensor, float]:
        """The generator loss 0.5 |x - sg(x - grad)|^2 (its gradient in x is ``score_gradient``) and the
        gradient's mean norm."""
        grad = self.score_gradient(x.detach(), t, eps)[0]
        return 0.5 * sq_dist(x, (x - grad).detach()).mean(), grad.flatten(1).norm(dim=1).mean().item()


class OneStepDistributionMatching(FakeScoreMixin, Method):
    """A one-step generator G (``self.gen``, a copy of the teacher) pushed by real minus fake score.

    A method overrides what is its own: ``step`` (its loss), and where it differs ``score_gradient`` (vsd),
    ``target_gradient`` (sid, vsd), ``dm_times`` (sid), ``fake_steps`` (sid), ``fake_net`` (vsd),
    ``adam_options`` (sid), ``generate``/``generator`` (dmd2's chain; sid and vsd save ``onestep_tinit``).
    """

    Config = DistributionMatchingConfig
    #: appended to the refusal of a target without a generator sample: why this method needs G(z)
    target_note = ""

    def setup(self):
        adam = self.adam_options()
        self.gen = Denoiser(self.new_student_net(), self.process, self.score_pred())
        self.add_net("generator", self.gen.net, lr=self.config.lr, **adam)
        self.add_sampling_ema(self.gen, self.config.ema)  # what the generator samples: ``self.sampled(self.gen)``
        self.add_fake_score(self.fake_net(), **adam)

    def fake_net(self):
        """The fake score's network (None: a copy of the teacher)."""
        return None

    def adam_options(self) -> dict:
        """Adam's options for both networks besides the learning rate: betas (``config.beta1``, 0.999)."""
        return {"betas": (self.config.beta1, 0.999)}

    @property
    def t_init(self) -> float:
        """The generator's input noise level: the config's ``t_init`` (sid, vsd), else 1 (G(z) = x0_G(z, 1))."""
        return getattr(self.config, "t_init", 1.0)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """G(z), differentiable."""
        return one_step(self.gen, z, self.t_init, y)

    # ---- batches
    def dm_times(self, n: int) -> torch.Tensor:
        """Times of the generator gradient: U[t_min, t_max]."""
        c = self.config
        return c.t_min + (c.t_max - c.t_min) * self.rand(n)

    def fake_steps(self) -> int:
        """Fake-score updates per generator step."""
        return self.config.fake_updates

    def generator_batch(self) -> dict:
        """Noise z, gradient times t and noise eps for one generator step, and the fake-score draws."""
        c = self.config
        return {"z": self.randn(c.batch, *self.shape), "t": self.dm_times(c.batch), "eps": self.randn(c.batch, *self.shape),
                "fake": self.fake_draws(self.fake_steps())}

    def sample_batch(self, it):
        return self.generator_batch()

    # ---- targets
    def target_gradient(self, x, t, eps):
        """(grad, x_t, real x0, fake x0) at generator samples x: the target is x - grad."""
        return self.score_gradient(x, t, eps)

    def targets(self, batch, t=None) -> Targets:
        if "z" not in batch:
            raise ValueError(f"{self.name}'s target depends on the generator sample G(z){self.target_note}, not on "
                             "x_t alone; pass a batch from sample_batch() or probe_batch()")
        z = batch["z"]
        tt = batch["t"] if t is None else torch.full((z.shape[0],), float(t), device=z.device)
        with torch.no_grad():
            x = self.generate(z)
        grad, x_t, real, fake = self.target_gradient(x, tt, batch["eps"])
        return Targets(x_t, tt, x - grad, "x0", real, fake, {"generator_sample": x, "grad": grad})

    def probe_batch(self, n, t, seed=0):
        g = torch.Generator().manual_seed(seed)
        return {"z": torch.randn(n, *self.shape, generator=g).to(self.device),
                "eps": torch.randn(n, *self.shape, generator=g).to(self.device),
                "t": torch.full((n,), float(t), device=self.device)}

    # ---- the student
    def generator(self) -> Generator:
        return ConsistencyGenerator(self.sampled(self.gen), native_nfe=(1,))

    def ema_nets(self):  # the loop's EMA callback averages what is sampled (the method's own EMA when it has one)
        return {"generator": self.sampled(self.gen).net}
