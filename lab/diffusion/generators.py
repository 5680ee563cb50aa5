"""Generators: anything that turns noise into samples with a chosen number of steps.

Teachers and every student share this interface, so the app, the CLI, the probes and
the benchmark treat them alike:

    gen.sample(n=1000, nfe=4, seed=0)              -> SampleResult (x, trajectory, times, nfe)
    gen.sample(z=noise, nfe=1, return_trajectory=True)

A generator is saved as a folder: ``model.json`` (kind, process, network specs,
sampler settings, model card) plus ``weights.safetensors``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lab.diffusion.denoiser import Denoiser
from lab.diffusion.samplers import SOLVERS, SampleResult, consistency_sample, heun_steps_for_nfe, ode_sample, time_grid
from lab.errors import LabError
from lab.io import atomic_write_json, load_tensors, read_json, save_tensors
from lab.nets import build_net, net_spec

GENERATORS: dict[str, type] = {}


def register_generator(cls):
    GENERATORS[cls.kind] = cls
    return cls


def make_noise(n: int, dim: int | tuple = 2, seed: int | None = 0, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """Noise drawn on the CPU from a seeded generator, then moved: same seed, same numbers on every device."""
    shape = (n, *(dim if isinstance(dim, tuple) else (dim,)))
    g = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    return torch.randn(shape, generator=g, dtype=dtype).to(device)


class Generator:
    kind = "generator"
    native_nfe: tuple[int, ...] = ()
    dim: int | tuple = 2

    def nets(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    @property
    def device(self):
        for net in self.nets().values():
            for p in list(net.parameters()) + list(net.buffers()):
                return p.device
        return torch.device("cpu")

    def to(self, device):
        for net in self.nets().values():
            net.to(device)
        return self

    def eval(self):
        for net in self.nets().values():
            net.eval()
        return self

    @property
    def shape(self) -> tuple:
        """The shape of one sample: read from the networks ((2,) for points, (C, H, W) for images)."""
        for net in self.nets().values():
            for m in net.modules():
                s = getattr(m, "sample_shape", None)
                if s:
                    return tuple(s)
        return tuple(self.dim) if isinstance(self.dim, (tuple, list)) else (int(self.dim),)

    def _noise(self, n, z, seed):
        if z is not None:
            return z.to(self.device)
        if n is None:
            raise LabError("give either n (number of samples) or z (the noise)")
        return make_noise(n, self.shape, seed, self.device)

    def _check_nfe(self, nfe):
        if not isinstance(nfe, int) or nfe < 1:
            raise LabError(f"nfe must be a positive integer, got {nfe!r}")

    def sample(self, n=None, nfe=1, seed=0, z=None, y=None, return_trajectory=False, **cond) -> SampleResult:
        raise NotImplementedError

    def extra_spec(self) -> dict:
        return {}

    def spec(self) -> dict:
        return {"kind": self.kind, "native_nfe": list(self.native_nfe), **self.extra_spec(),
                "nets": {k: net_spec(v) for k, v in self.nets().items()}}

    def save(self, folder, card: dict | None = None) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for name, net in self.nets().items():
            for k, v in net.state_dict().items():
                tensors[f"{name}.{k}"] = v
        save_tensors(folder / "weights.safetensors", tensors)
        atomic_write_json(folder / "model.json", {**self.spec(), "card": card or {}})
        return folder


@register_generator
class FlowGenerator(Generator):
    """A denoiser sampled by an ODE solver (teachers; progressive students with ``ddim``)."""

    kind = "flow"

    def __init__(self, denoiser: Denoiser, solver: str = "euler", native_nfe=(), dim=2):
        if solver not in SOLVERS:
            raise LabError(f"unknown solver {solver!r}; allowed: {', '.join(SOLVERS)}")
        self.denoiser, self.solver, self.native_nfe, self.dim = denoiser, solver, tuple(native_nfe), dim

    def nets(self):
        return {"denoiser": self.denoiser.net}

    def extra_spec(self):
        return {"process": self.denoiser.process.name, "pred": self.denoiser.pred, "solver": self.solver}

    @classmethod
    def from_spec(cls, spec, nets):
        d = Denoiser(nets["denoiser"], spec["process"], spec["pred"])
        return cls(d, spec.get("solver", "euler"), spec.get("native_nfe", ()), spec.get("dim", 2))

    def sample(self, n=None, nfe=1, seed=0, z=None, y=None, return_trajectory=False, solver=None, **cond):
        self._check_nfe(nfe)
        solver = solver or self.solver
        steps = heun_steps_for_nfe(nfe) if solver == "heun" else nfe
        return ode_sample(self.denoiser, self._noise(n, z, seed), steps, solver, y=y,
                          return_trajectory=return_trajectory, **cond)


@register_generator
class ConsistencyGenerator(Generator):
    """A consistency function f(x_t, t) = c_skip(t) x_t + c_out(t) F(x_t, t), sampled multistep."""

    kind = "consistency"

    def __init__(self, denoiser: Denoiser, native_nfe=(1, 2, 4), dim=2):
        self.denoiser, self.native_nfe, self.dim = denoiser, tuple(native_nfe), dim

    def nets(self):
        return {"denoiser": self.denoiser.net}

    def extra_spec(self):
        return {"process": self.denoiser.process.name, "pred": self.denoiser.pred}

    @classmethod
    def from_spec(cls, spec, nets):
        return cls(Denoiser(nets["denoiser"], spec["process"], spec["pred"]), spec.get("native_nfe", (1, 2, 4)))

    @staticmethod
    def times(nfe: int) -> torch.Tensor:
        return time_grid(nfe)[:-1]  # 1, (k-1)/k, ..., 1/k

    def sample(self, n=None, nfe=1, seed=0, z=None, y=None, return_trajectory=False, **cond):
        self._check_nfe(nfe)
        z = self._noise(n, z, seed)
        g = torch.Generator().manual_seed(int(seed) + 1_000_003) if seed is not None else None
        with torch.no_grad():
            return consistency_sample(lambda x, t: self.denoiser.x0(x, t, y, **cond), self.denoiser.process, z,
                                      self.times(nfe).to(z), generator=g, return_trajectory=return_trajectory)


@register_generator
class ReflowGenerator(Generator):
    """A rectified (reflowed) flow sampled with Euler, plus a distilled one-step map used at nfe = 1."""

    kind = "reflow"

    def __init__(self, flow: Denoiser, one_step: Denoiser | None, native_nfe=(1, 2, 4), dim=2):
        self.flow, self.one_step, self.native_nfe, self.dim = flow, one_step, tuple(native_nfe), dim

    def nets(self):
        nets = {"flow": self.flow.net}
        if self.one_step is not None:
            nets["one_step"] = self.one_step.net
        return nets

    def extra_spec(self):
        return {"process": self.flow.process.name, "pred": self.flow.pred}

    @classmethod
    def from_spec(cls, spec, nets):
        flow = Denoiser(nets["flow"], spec["process"], spec["pred"])
        one = Denoiser(nets["one_step"], spec["process"], spec["pred"]) if "one_step" in nets else None
        return cls(flow, one, spec.get("native_nfe", (1, 2, 4)))

    def sample(self, n=None, nfe=1, seed=0, z=None, y=None, return_trajectory=False, **cond):
        self._check_nfe(nfe)
        d = self.one_step if (nfe == 1 and self.one_step is not None) else self.flow
        return ode_sample(d, self._noise(n, z, seed), nfe, "euler", y=y, return_trajectory=return_trajectory, **cond)


def load_generator(folder, device="cpu") -> Generator:
    folder = Path(folder)
    mj = folder / "model.json"
    if not mj.exists():
        raise LabError(f"{folder} is not a model folder (no model.json)")
    spec = read_json(mj)
    kind = spec.get("kind")
    if kind not in GENERATORS:
        raise LabError(f"unknown generator kind {kind!r} in {mj}; allowed: {', '.join(GENERATORS)}")
    nets = {k: build_net(s) for k, s in spec["nets"].items()}
    wpath = folder / "weights.safetensors"
    tensors = load_tensors(wpath) if wpath.exists() else {}
    for name, net in nets.items():
        sd = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        if net.state_dict():
            net.load_state_dict(sd)
    gen = GENERATORS[kind].from_spec(spec, nets)
    gen.card = spec.get("card", {})
    gen.folder = folder
    return gen.to(device).eval()


def analytic_generator(gmm, process="linear", solver="euler") -> FlowGenerator:
    from lab.diffusion.analytic import analytic_teacher

    return FlowGenerator(analytic_teacher(gmm, process), solver)

