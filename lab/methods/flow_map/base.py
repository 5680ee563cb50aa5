"""What the flow-map methods share: a network that jumps from time t to an earlier time s in one evaluation.

A flow map X(x, t, s) follows the teacher's probability-flow ODE from t to s (Boffi, Albergo &
Vanden-Eijnden, "Flow Map Matching", 2024; the three methods here are special cases). Its network is the
teacher's own with one more scalar input (the target time s, or the step size d), widened so that it
ignores that input at initialisation (:func:`map_net_from_teacher`): the student starts as the teacher's
one Euler step. Sampling walks the grid 1 -> (k-1)/k -> ... -> 0 with one jump per step
(:class:`JumpGenerator`); flowmap and boot save the bare network X(x, t, s) = x + (s - t) u(x, t, s)
(:class:`MapGenerator`), shortcut a step-size-conditioned velocity.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lab.config import param
from lab.diffusion.generators import Generator
from lab.diffusion.process import broadcast_coef, get_process
from lab.diffusion.samplers import SampleResult, time_grid
from lab.methods.base import Method, MethodConfig
from lab.nets import widen


def map_net_from_teacher(method: Method, extra: str) -> nn.Module:
    """The teacher's net with an extra scalar input ``extra`` that it ignores at initialisation
    (:func:`lab.nets.widen`), or, with an analytic teacher (no weights), a fresh net for the data; trainable."""
    if method.student_from_teacher():
        net = widen(method.teacher.net, [extra])
    else:
        net = method.fresh_net(extra=[*method.config.student_net.get("extra", []), extra])
    for p in net.parameters():
        p.requires_grad_(True)
    return net


def map_apply(net: nn.Module, x, t, s, y=None, **cond):
    """(X(x, t, s), u) with X(x, t, s) = x + (s - t) u(x, t, s): X(x, t, t) = x exactly."""
    u = net(x, t, y, s=s, **cond)
    return x + broadcast_coef(s - t, x) * u, u


# ---------------------------------------------------------------- generators
class JumpGenerator(Generator):
    """Samples with ``nfe`` jumps along ``time_grid(nfe)`` (1 -> (k-1)/k -> ... -> 0); a subclass writes
    :meth:`jump`. ``from_noise``: every jump starts from the noise at t = 1 (the k grid times are points of
    one predicted path, boot) instead of from the previous state."""

    from_noise = False

    def jump(self, x, t, s, y=None, **cond) -> torch.Tensor:
        """The state at time s from the state x at time t (t, s: 0-dim tensors)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample_from(self, z, nfe, *, seed=0, y=None, return_trajectory=False, **cond):
        ts = time_grid(nfe, device=z.device).to(z.dtype)
        x, traj = z, [z]
        for i in range(nfe):
            start, t = (z, ts[0]) if self.from_noise else (x, ts[i])
            x = self.jump(start, t, ts[i + 1], y, **cond)
            traj.append(x)
        return SampleResult(x, torch.stack(traj) if return_trajectory else None, ts, nfe)


class MapGenerator(JumpGenerator):
    """A bare map network X(x, t, s) = x + (s - t) u(x, t, s), saved as ``net_name`` with its process."""

    net_name = "map"

    def __init__(self, net: nn.Module, process="linear", native_nfe=None, dim=2):
        self.net, self.process, self.dim = net, get_process(process), dim
        self.native_nfe = type(self).native_nfe if native_nfe is None else tuple(native_nfe)

    def nets(self):
        return {self.net_name: self.net}

    def extra_spec(self):
        return {"process": self.process.name}

    @classmethod
    def from_spec(cls, spec, nets):
        return cls(nets[cls.net_name], spec.get("process", "linear"), spec.get("native_nfe"), spec.get("dim", 2))

    def jump(self, x, t, s, y=None, **cond):
        return map_apply(self.net, x, t.expand(x.shape[0]), s.expand(x.shape[0]), y, **cond)[0]

    @torch.no_grad()
    def state_at(self, z, t, y=None, **cond):
        """One jump from noise z at time 1 to time t (a float or a per-sample tensor)."""
        t = torch.as_tensor(t, dtype=z.dtype, device=z.device).expand(z.shape[0])
        return map_apply(self.net, z, torch.ones_like(t), t, y, **cond)[0]


# ---------------------------------------------------------------- methods with a bare map network
@dataclass
class MapConfig(MethodConfig):
    steps: int = 800
    lr: float = 3e-4
    solver: str = param("heun", choices=("euler", "heun"), note="the teacher's ODE step")


class MapMethod(Method):
    """A method training a bare map network ``self.net`` (saved as its generator's ``net_name``; the new input
    is ``s``), sampled by its ``generator_class``. Subclasses write the batches, targets and step."""

    Config = MapConfig
    generator_class: type[MapGenerator] = MapGenerator

    def setup(self):
        self.net = map_net_from_teacher(self, "s")
        self.add_net(self.generator_class.net_name, self.net, lr=self.config.lr)

    @torch.no_grad()
    def teacher_step(self, x, t, s):
        """One teacher ODE step from (x, t) to s (Euler, or Heun with ``solver="heun"``)."""
        h = self.col((s - t))
        v1 = self.teacher.velocity(x, t)
        x_s = x + h * v1
        if self.config.solver == "heun":
            x_s = x + h * 0.5 * (v1 + self.teacher.velocity(x_s, s))
        return x_s

    def generator(self) -> MapGenerator:
        return self.generator_class(self.sampled(self.net), self.process)

    def ema_nets(self):
        return {self.generator_class.net_name: self.sampled(self.net)}
