"""The Method interface and the registry.

A method is a class with a validated config dataclass, a ``targets()`` that says what
the student regresses to (usable without training), and a ``step()`` that trains.

    @register("progressive")
    class Progressive(Method):
        Config = ProgressiveConfig
        def targets(self, batch, t=None) -> Targets: ...
        def step(self, batch, it) -> StepOutput: ...
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from lab.data.toy2d import Source, resolve
from lab.diffusion.denoiser import Denoiser
from lab.diffusion.generators import FlowGenerator, Generator
from lab.errors import LabError
from lab.losses import sq_dist
from lab.nets import DIFFUSION_TYPES, build_net, check_net_spec, spec_for
from lab.config import Config, param
from lab.trainable import StepOutput, Trainable, make_registry, resolve_reference

#: the distillation methods by name: ``register("name")`` decorates a Method subclass
REGISTRY, register, list_methods, get_method = make_registry("method")


@dataclass
class Targets:
    """What a method regresses to at given noisy inputs.

    ``target`` and ``teacher`` (the teacher's own prediction at the same x_t, t) are in
    ``space`` ("x0": a clean-sample estimate; "v": a velocity). ``student`` is the
    current student's prediction in the same space, when it has one.
    """

    x_t: torch.Tensor
    t: torch.Tensor
    target: torch.Tensor
    space: str
    teacher: torch.Tensor | None = None
    student: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)


def diffusion_net(spec, name: str, types=DIFFUSION_TYPES) -> dict:
    """A network-spec config field's validator (``param(..., spec=diffusion_net)``): a complete spec of one
    of ``types`` (default: every diffusion network)."""
    return check_net_spec(spec, name, types, complete=True)


@dataclass
class MethodConfig(Config):
    steps: int = param(2000, ge=1)
    batch: int = param(512, ge=2)
    lr: float = param(1e-3, gt=0)
    student_net: dict = param({"type": "mlp", "hidden": 256, "depth": 4, "t_dim": 32}, spec=diffusion_net,
                              note="network spec")


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, mu: float) -> None:
    """target <- mu * target + (1 - mu) * source, parameter by parameter."""
    for pt, ps in zip(target.parameters(), source.parameters()):
        pt.mul_(mu).add_(ps.detach(), alpha=1 - mu)


class Method(Trainable):
    """Base class. Subclasses set ``Config``, ``family``, ``mechanism``, ``paper`` and implement
    ``targets``, ``step`` and ``generator``.

    Class-conditional teachers (image teachers are trained with label dropout): every batch
    gets labels ``y`` drawn from the data's classes (a share ``label_dropout`` set to the null
    label, so the student still samples unconditionally), and ``step`` and ``targets`` run with
    those labels bound to every denoiser of the method (``conditioned``): teacher, student, fake
    score and target nets all see the same labels without each method threading ``y`` through.
    A call with an explicit ``y`` is left alone; a call on a sub-batch without one is an error
    (the method must pass the matching slice of ``batch["y"]``). Methods whose
    mechanism is about labels (guidance, msd) set ``handles_labels = True`` and do it themselves.
    """

    Config = MethodConfig
    family = "step distillation"
    mechanism = ""
    paper = ""
    #: config overrides for a tiny run (tests: a few dozen steps on the analytic 8-Gaussians teacher)
    tiny: dict = {"batch": 64, "student_net": {"type": "mlp", "hidden": 32, "depth": 2, "t_dim": 16}}
    #: the teacher the tiny run uses (a zoo entry)
    tiny_teacher: str = "toy2d/8gaussians/analytic"
    #: the kinds of data the method supports: "points" ((D,) samples) and/or "images" ((C, H, W) samples)
    data_kinds: tuple = ("points", "images")
    #: why a method does not support a data kind (shown in the error)
    data_kinds_note: str = ""
    #: True when the method conditions on labels itself (no automatic label binding)
    handles_labels: bool = False
    #: share of null labels in the batches of a class-conditional teacher
    label_dropout: float = 0.1
    # ---- what the zoo ships and the benchmarks run (lab.zoo and bench/ derive their lists from these)
    #: the zoo's 2D students of this method: "all" (one per zoo dataset), "showcase" (the app's default
    #: dataset only) or "" (none; a `lab distill` away)
    zoo_points: str = ""
    #: the method needs a class-conditional teacher (the zoo distils it from the exact analytic mixture)
    needs_conditional_teacher: bool = False
    #: config overrides for an 8x8 digits student (the zoo's and bench/digits.py's recipe); None: the
    #: bench's short fixed budget
    digits_recipe: dict | None = None
    #: the zoo ships this method's digits student (built with ``digits_recipe``)
    zoo_digits: bool = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for name in ("sample_batch", "step", "targets"):
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_labelled", False):
                setattr(cls, name, _with_labels(name, fn))

    def __init__(self, teacher: "Generator | str", data: "Source | str", config: "MethodConfig | dict | None" = None,
                 seed: int = 0, device=None):
        super().__init__(seed, device)
        self.use_config(config)
        config = self.config
        if isinstance(teacher, str):  # a reference: resolved by lab.zoo.resolve (installed hook, no upward import)
            teacher = resolve_reference(teacher, "generator", self.device).model
        if not isinstance(teacher, FlowGenerator):
            raise LabError(f"{self.name} needs a diffusion/flow teacher (a FlowGenerator), got {type(teacher).__name__}")
        self.teacher_gen = teacher.to(self.device).eval()
        self.teacher: Denoiser = teacher.denoiser
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.data = resolve(data)
        #: the shape of one sample: (2,) for points, (C, H, W) for images; the network follows from it
        self.shape = tuple(self.data.shape)
        kind = "images" if len(self.shape) == 3 else "points"
        if kind not in self.data_kinds:
            raise LabError(f"{self.name} supports {' and '.join(self.data_kinds)} data, not {kind} ({self.data.spec})"
                           + (f": {self.data_kinds_note}" if self.data_kinds_note else "")
                           + f"; methods for {kind}: {', '.join(m for m in list_methods() if kind in REGISTRY[m].data_kinds)}")
        self.process = self.teacher.process
        #: the number of classes when the teacher is class-conditional (labels are then bound to every call)
        self.n_classes = int(getattr(self.teacher.net, "n_classes", 0) or 0)
        self.conditional = bool(self.n_classes) and not self.handles_labels
        if self.conditional and self.data.n_classes != self.n_classes:
            raise LabError(f"the teacher has {self.n_classes} classes but {self.data.spec} has {self.data.n_classes}")
        torch.manual_seed(self.seed)
        self.setup()

    # ---- labels of a class-conditional teacher
    def draw_labels(self, n: int) -> torch.Tensor:
        """Data labels for n samples (a share ``label_dropout`` set to the null label ``n_classes``)."""
        y = self.randint(0, self.n_classes, (n,))
        drop = self.rand(n) < self.label_dropout
        return torch.where(drop, torch.full_like(y, self.n_classes), y)

    def col(self, v: torch.Tensor) -> torch.Tensor:
        """A per-sample coefficient (n,) shaped (n, 1, ...) to broadcast against samples of this data."""
        return v.reshape(v.shape[0], *([1] * len(self.shape)))

    def pair_labels(self, n: int, seed: int) -> torch.Tensor | None:
        """Labels for n precomputed (noise, teacher sample) pairs of a class-conditional teacher (None otherwise):
        classes cycled, a share ``label_dropout`` null, from their own seeded generator."""
        if not self.conditional:
            return None
        g = torch.Generator().manual_seed(int(seed))
        y = torch.arange(n) % self.n_classes
        drop = torch.rand(n, generator=g) < self.label_dropout
        return torch.where(drop, torch.full_like(y, self.n_classes), y).to(self.device)

    def denoisers(self) -> list:
        """Every denoiser of the method, and any network that takes bound labels itself (``bound_y``)."""
        out = [v for v in vars(self).values() if isinstance(v, Denoiser)]
        out += [n for n in self.networks.values() if hasattr(n, "bound_y") and not isinstance(n, Denoiser)]
        return out

    def conditioned(self, y: torch.Tensor | None):
        """A context in which every denoiser of the method is conditioned on labels y (None: no change)."""
        import contextlib

        @contextlib.contextmanager
        def ctx():
            if y is None or not self.conditional:
                yield
                return
            ds = self.denoisers()
            old = [d.bound_y for d in ds]
            for d in ds:
                d.bound_y = y
            try:
                yield
            finally:
                for d, o in zip(ds, old):
                    d.bound_y = o
        return ctx()

    # ---- to override
    def setup(self) -> None: ...

    def targets(self, batch: dict, t: float | None = None) -> Targets:
        raise NotImplementedError

    def step(self, batch: dict, it: int) -> StepOutput:
        raise NotImplementedError

    def generator(self) -> Generator:
        raise NotImplementedError

    # ---- helpers
    def new_student_net(self) -> nn.Module:
        """A copy of the teacher's network when it is a trainable net, else a fresh net from ``student_net``."""
        tnet = self.teacher.net
        if any(True for _ in tnet.parameters()):
            net = copy.deepcopy(tnet)
            for p in net.parameters():
                p.requires_grad_(True)
            return net
        return self.fresh_net()

    def fresh_net(self, spec: dict | None = None, **overrides) -> nn.Module:
        """A new network for this data from ``spec`` (default ``config.student_net``) with ``overrides``
        (n_classes, extra): an MLP for points, the data's UNet for images (see :func:`lab.nets.spec_for`)."""
        return build_net(spec_for(self.shape, self.config.student_net if spec is None else spec, **overrides))

    def frozen_copy(self, name: str, denoiser: Denoiser) -> Denoiser:
        """A frozen copy of ``denoiser`` (a target, EMA or stage-teacher network), checkpointed as
        ``name`` without an optimiser."""
        net = copy.deepcopy(denoiser.net).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.add_net(name, net)
        return Denoiser(net, denoiser.process, denoiser.pred)

    # ---- the sampled student's EMA
    def add_sampling_ema(self, source, decay: float, name: str = "generator_ema"):
        """Register an exponential moving average (``decay``) of ``source`` (a Denoiser or a bare network) as what
        the method's generator samples (:meth:`sampled`): updated after every training step, checkpointed as
        ``name``. Nothing is added when decay is 0 (the generator then samples ``source`` itself). This is the EMA
        of the generator that the one-step papers sample and evaluate; see each method's docstring."""
        if decay <= 0:
            return source
        if isinstance(source, Denoiser):
            ema = self.frozen_copy(name, source)
            pair = (ema.net, source.net)
        else:
            net = copy.deepcopy(source).eval()
            for p in net.parameters():
                p.requires_grad_(False)
            ema = self.add_net(name, net)
            pair = (net, source)
        self._sampling_emas = {**getattr(self, "_sampling_emas", {}), id(source): (ema, *pair, float(decay))}
        return ema

    def sampled(self, source):
        """What the generator samples for ``source``: its EMA when :meth:`add_sampling_ema` registered one, else
        ``source`` itself."""
        return getattr(self, "_sampling_emas", {}).get(id(source), (source,))[0]

    def averaged_nets(self) -> list:
        """The trained networks whose EMA the generator samples (empty without :meth:`add_sampling_ema`)."""
        return [src for _, _, src, _ in getattr(self, "_sampling_emas", {}).values()]

    @torch.no_grad()
    def update_sampling_emas(self, it: int) -> None:
        """One EMA update of every :meth:`add_sampling_ema` copy, once per step ``it`` (run after ``step``)."""
        if getattr(self, "_ema_it", None) == it:
            return
        self._ema_it = it
        for _, ema, src, mu in getattr(self, "_sampling_emas", {}).values():
            ema_update(ema, src, mu)

    @torch.no_grad()
    def copy_sampled_to_trained(self) -> None:
        """Set every trained network to its sampling EMA (when a saved, i.e. averaged, student is loaded back)."""
        for _, ema, src, _ in getattr(self, "_sampling_emas", {}).values():
            src.load_state_dict(ema.state_dict())

    def student_from_teacher(self) -> bool:
        return any(True for _ in self.teacher.net.parameters())

    def sample_batch(self, it: int) -> dict:
        c = self.config
        x0 = self.data.sample(c.batch, self.rng).to(self.device)
        return {"x0": x0, "eps": self.randn(c.batch, *self.shape)}

    def probe_batch(self, n: int, t: float, seed: int = 0) -> dict:
        """A batch with every sample at time t (for the targets probe)."""
        g = torch.Generator().manual_seed(seed)
        x0, y = self.data.sample(n, g, labelled=True)
        x0 = x0.to(self.device)
        eps = torch.randn(n, *self.shape, generator=g).to(self.device)
        tt = torch.full((n,), float(t), device=self.device)
        out = {"x0": x0, "eps": eps, "t": tt, "x_t": self.process.add_noise(x0, eps, tt)}
        if self.conditional:
            out["y"] = y.to(self.device)
        return out

    @torch.no_grad()
    def snapshot(self, n: int = 512, t: float = 0.5) -> dict:
        """Internals worth keeping during training: the student's samples at its smallest native NFE
        from fixed noise, and the regression targets at time t on fixed inputs."""
        from lab.diffusion.generators import make_noise  # lazy: only needed for snapshots

        gen = self.generator()
        nfe = min(gen.native_nfe) if gen.native_nfe else 1
        out = {"samples": gen.sample(z=make_noise(n, self.shape, seed=2024, device=self.device), nfe=nfe, seed=0).x,
               "samples_nfe": torch.tensor(nfe)}
        try:
            tg = self.targets(self.probe_batch(min(n, 256), t, seed=2025), t=t)
            out.update({"targets_x_t": tg.x_t, "targets_target": tg.target, "targets_t": torch.tensor(float(t))})
            if tg.teacher is not None:
                out["targets_teacher"] = tg.teacher
        except (ValueError, KeyError):
            pass
        return {k: v.detach().cpu() for k, v in out.items()}

    def fit_fake_score(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, name: str = "fake_score") -> float:
        """One denoising (flow-matching) step of the fake score ``self.fake`` (a Denoiser) on the detached
        samples x, noised with eps at times t; returns the loss. Shared by every method that fits a score
        to its own generator's samples (dmd, vsd, sid, rcm, vsd_particles)."""
        x = x.detach()
        x_t = self.process.add_noise(x, eps, t)
        loss = sq_dist(self.fake.velocity(x_t, t), self.process.v_from_x0_eps(t, x, eps, x)).mean()
        self.opt_step(name, loss)
        return loss.item()

    def opt_step(self, name: str, loss: torch.Tensor, clip: float | None = None) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        self.backward(loss)  # scaled under fp16; under torchrun DDP averages the gradients across ranks here
        self.optimizer_step(opt, clip, self.networks[name].parameters())

    def config_dict(self) -> dict:
        return asdict(self.config)

    @classmethod
    def describe(cls) -> dict:
        return {"name": cls.name, "family": cls.family, "mechanism": cls.mechanism, "paper": cls.paper}


def _with_labels(name: str, fn):
    """Wrap a method's sample_batch (adds labels y) or step/targets (binds batch['y'] to every denoiser)."""
    import functools

    if name == "sample_batch":
        @functools.wraps(fn)
        def sample_batch(self, it):
            batch = fn(self, it)
            if self.conditional and "y" not in batch:
                n = next(v.shape[0] for v in batch.values() if torch.is_tensor(v) and v.ndim >= 1)
                batch["y"] = self.draw_labels(n)
            return batch
        wrapped = sample_batch
    else:
        @functools.wraps(fn)
        def wrapped(self, batch, *a, **kw):
            with self.conditioned(batch.get("y") if isinstance(batch, dict) else None):
                out = fn(self, batch, *a, **kw)
            if name == "step":  # the sampled student's EMA follows every training step (once per step)
                self.update_sampling_emas(a[0] if a else kw.get("it"))
            return out
    wrapped._labelled = True
    return wrapped



for _name in ("sample_batch", "step", "targets"):
    setattr(Method, _name, _with_labels(_name, Method.__dict__[_name]))
