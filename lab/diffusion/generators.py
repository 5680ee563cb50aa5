"""Generators: anything that turns noise into samples with a chosen number of steps.

Teachers and every student share this interface, so the app, the CLI, the probes and
the benchmark treat them alike:

    gen.sample(n=1000, nfe=4, seed=0)              -> SampleResult (x, trajectory, times, nfe)
    gen.sample(z=noise, nfe=1, return_trajectory=True)

A generator is saved as a folder: ``model.json`` (kind, process, network specs,
sampler settings, model card) plus ``weights.safetensors``. :func:`load_generator` validates
both (and :func:`read_model_json` / :func:`read_weights` serve the KD loader too): every
malformed folder is one ``LabError`` line naming the file and what is wrong, and neither file
is followed through a symlink that leads outside the folder.

Large draws: ``gen.sample_chunks(n, nfe, seed, chunk=4096)`` yields the samples chunk by chunk
with memory flat in n (``lab sample`` writes them to disk as they come).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from lab.diffusion.denoiser import Denoiser
from lab.diffusion.samplers import SOLVERS, SampleResult, consistency_sample, heun_steps_for_nfe, ode_sample, time_grid
from lab.errors import LabError
from lab.io import atomic_write_json, load_tensors, read_json, save_tensors
from lab.nets import build_net, check_net_spec, net_spec
from lab.nets.specs import short_repr

GENERATORS: dict[str, type] = {}


def register_generator(cls):
    GENERATORS[cls.kind] = cls
    return cls


def make_noise(n: int, dim: int | tuple = 2, seed: int | None = 0, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """Noise drawn on the CPU from a seeded generator, then moved: same seed, same numbers on every device."""
    shape = (n, *(dim if isinstance(dim, tuple) else (dim,)))
    g = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    return torch.randn(shape, generator=g, dtype=dtype).to(device)


def noise_chunks(n: int, dim: int | tuple = 2, seed: int | None = 0, chunk: int = 4096, device="cpu",
                 dtype=torch.float32) -> Iterator[torch.Tensor]:
    """``make_noise(n, dim, seed)`` in consecutive chunks of about ``chunk`` samples, never all at once.

    The chunks are drawn one after another from the one seeded generator, and their concatenation is
    bitwise the single draw: torch's CPU normal sampler turns the uniform stream into normals in blocks
    of 16 values (redrawing the last 16 of a tensor whose size is not a multiple of 16), so every chunk
    but the last holds a multiple of 16 values (``chunk`` is rounded down to that) and a last chunk of
    fewer than 16 values is merged into the one before. ``tests/test_cli_bounds.py`` checks the equality.
    """
    shape = tuple(dim) if isinstance(dim, (tuple, list)) else (int(dim),)
    per = math.prod(shape)
    step = 16 // math.gcd(per, 16)
    chunk = max(step, int(chunk) - int(chunk) % step)
    g = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    left = int(n)
    while left > 0:
        k = min(chunk, left)
        if 0 < (left - k) * per < 16:
            k = left
        yield torch.randn((k, *shape), generator=g, dtype=dtype).to(device)
        left -= k


def chunk_seed(seed: int | None, index: int) -> int | None:
    """The seed a sampler's own extra randomness (re-noising, drawn labels) uses in chunk ``index`` of a
    chunked draw: ``seed`` itself for the first chunk, then a hash of (seed, index) in 0..2^62."""
    if seed is None or index == 0:
        return seed
    import numpy as np

    hi, lo = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, np.uint32)
    return ((int(hi) << 32) | int(lo)) >> 2


class Generator:
    """A trained sampler: networks plus the rule that turns noise into samples.

    A subclass declares what it saves and implements :meth:`sample_from`; the base validates the NFE, draws
    the noise once (or takes ``z``), saves and loads:

    - ``denoisers``: the attributes holding a :class:`Denoiser` (saved as networks of those names; one left
      None is optional and not saved); the first one's process and prediction go into model.json;
    - ``spec_fields``: plain attributes written to model.json and passed back to ``__init__`` on load (the
      constructor's parameters carry the same names);
    - ``default_nfe``: the NFE of a ``sample()`` call that gives none.

    A generator with other networks (particles, routers, guidance wrappers) overrides :meth:`nets`,
    :meth:`extra_spec` and :meth:`from_spec`.
    """

    kind = "generator"
    native_nfe: tuple[int, ...] = ()
    dim: int | tuple = 2
    denoisers: tuple[str, ...] = ()
    spec_fields: tuple[str, ...] = ()
    default_nfe: int = 1

    def nets(self) -> dict[str, nn.Module]:
        if not self.denoisers:
            raise NotImplementedError(f"{type(self).__name__} declares no denoisers; override nets()")
        return {k: getattr(self, k).net for k in self.denoisers if getattr(self, k) is not None}

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

    def noise(self, n=None, z=None, seed=0) -> torch.Tensor:
        """The starting noise: ``z`` on this generator's device, else n draws from ``seed``."""
        if z is not None:
            return z.to(self.device)
        if n is None:
            raise LabError("give either n (number of samples) or z (the noise)")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise LabError(f"n must be a positive integer, got {n!r}")
        return make_noise(n, self.shape, seed, self.device)

    @staticmethod
    def check_nfe(nfe) -> None:
        if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1:
            raise LabError(f"nfe must be a positive integer, got {nfe!r}")

    def sample(self, n=None, nfe=None, seed=0, z=None, y=None, return_trajectory=False, **cond) -> SampleResult:
        """``n`` samples (or one per row of the noise ``z``) in ``nfe`` network evaluations (default
        ``default_nfe``); ``seed`` seeds the noise and any randomness of the sampler; ``y``: class labels of a
        conditional generator."""
        nfe = self.default_nfe if nfe is None else nfe
        self.check_nfe(nfe)
        return self.sample_from(self.noise(n, z, seed), nfe, seed=seed, y=y, return_trajectory=return_trajectory,
                                **cond)

    def sample_from(self, z: torch.Tensor, nfe: int, *, seed=0, y=None, return_trajectory=False,
                    **cond) -> SampleResult:
        """The samples from noise ``z`` (already on the device) in ``nfe`` evaluations (already validated)."""
        raise NotImplementedError

    def sample_chunks(self, n: int, nfe: int = 1, seed: int | None = 0, chunk: int = 4096, y=None,
                      **cond) -> Iterator[torch.Tensor]:
        """The samples of ``sample(n, nfe, seed, y=y)`` as consecutive chunks of at most about ``chunk``
        (memory flat in n); ``y``: None, one label for every sample, or n labels.

        The noise is :func:`noise_chunks`, bitwise the noise of one ``sample(n, seed=seed)`` call, so for a
        sampler that is a deterministic function of its noise (teachers, and students sampled without
        re-noising) the chunks concatenate to exactly the single draw. A sampler with randomness of its own
        (multistep consistency re-noising, labels drawn by a routed generator, particles resampled) takes
        it from ``chunk_seed(seed, i)`` in chunk i: deterministic, independent between chunks, equal to the
        single draw when n fits in one chunk, but not when it does not.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise LabError(f"n must be a positive integer, got {n!r}")
        done = 0
        for i, z in enumerate(noise_chunks(n, self.shape, seed, chunk)):
            k = z.shape[0]
            yi = y
            if isinstance(y, int) and not isinstance(y, bool):
                yi = torch.full((k,), y, dtype=torch.long, device=self.device)
            elif y is not None:
                yi = torch.as_tensor(y)[done:done + k].to(self.device)
            with torch.no_grad():
                x = self.sample(z=z.to(self.device), nfe=nfe, seed=chunk_seed(seed, i), y=yi, **cond).x
            done += k
            yield x  # outside no_grad: the caller's grad mode is its own between chunks

    def extra_spec(self) -> dict:
        out = {}
        if self.denoisers:
            d = getattr(self, self.denoisers[0])
            out = {"process": d.process.name, "pred": d.pred}
        return {**out, **{k: getattr(self, k) for k in self.spec_fields}}

    @classmethod
    def from_spec(cls, spec: dict, nets: dict):
        """The generator of a model.json ``spec`` with its loaded networks ``nets``."""
        if not cls.denoisers:
            raise NotImplementedError(f"{cls.__name__} declares no denoisers; override from_spec()")
        kw = {k: Denoiser(nets[k], spec["process"], spec["pred"]) if k in nets else None for k in cls.denoisers}
        kw.update({k: spec[k] for k in cls.spec_fields if k in spec})
        if spec.get("native_nfe"):  # else the constructor's default
            kw["native_nfe"] = tuple(spec["native_nfe"])
        return cls(**kw)

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
    denoisers = ("denoiser",)
    spec_fields = ("solver",)

    def __init__(self, denoiser: Denoiser, solver: str = "euler", native_nfe=(), dim=2):
        if solver not in SOLVERS:
            raise LabError(f"unknown solver {solver!r}; allowed: {', '.join(SOLVERS)}")
        self.denoiser, self.solver, self.native_nfe, self.dim = denoiser, solver, tuple(native_nfe), dim

    def sample_from(self, z, nfe, *, seed=0, y=None, return_trajectory=False, solver=None, **cond):
        solver = solver or self.solver
        steps = heun_steps_for_nfe(nfe) if solver == "heun" else nfe
        return ode_sample(self.denoiser, z, steps, solver, y=y, return_trajectory=return_trajectory, **cond)


@register_generator
class ConsistencyGenerator(Generator):
    """A consistency function f(x_t, t) = c_skip(t) x_t + c_out(t) F(x_t, t), sampled multistep."""

    kind = "consistency"
    denoisers = ("denoiser",)

    def __init__(self, denoiser: Denoiser, native_nfe=(1, 2, 4), dim=2):
        self.denoiser, self.native_nfe, self.dim = denoiser, tuple(native_nfe), dim

    @staticmethod
    def times(nfe: int) -> torch.Tensor:
        return time_grid(nfe)[:-1]  # 1, (k-1)/k, ..., 1/k

    def sample_from(self, z, nfe, *, seed=0, y=None, return_trajectory=False, **cond):
        g = torch.Generator().manual_seed(int(seed) + 1_000_003) if seed is not None else None
        with torch.no_grad():
            return consistency_sample(lambda x, t: self.denoiser.x0(x, t, y, **cond), self.denoiser.process, z,
                                      self.times(nfe).to(z), generator=g, return_trajectory=return_trajectory)


@register_generator
class ReflowGenerator(Generator):
    """A rectified (reflowed) flow sampled with Euler, plus a distilled one-step map used at nfe = 1."""

    kind = "reflow"
    denoisers = ("flow", "one_step")

    def __init__(self, flow: Denoiser, one_step: Denoiser | None, native_nfe=(1, 2, 4), dim=2):
        self.flow, self.one_step, self.native_nfe, self.dim = flow, one_step, tuple(native_nfe), dim

    def sample_from(self, z, nfe, *, seed=0, y=None, return_trajectory=False, **cond):
        d = self.one_step if (nfe == 1 and self.one_step is not None) else self.flow
        return ode_sample(d, z, nfe, "euler", y=y, return_trajectory=return_trajectory, **cond)


#: the largest model.json read (a real one is a few kB; a diffusers teacher's about 30 kB)
MAX_MODEL_JSON_BYTES = 64 * 2**20
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "true/false", type(None): "null"}


def one_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if there is none)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def model_file(folder, name: str) -> Path:
    """``folder / name``, refused when it is (or passes through) a symlink that leads outside ``folder``."""
    folder = Path(folder)
    p = folder / name
    real, root = Path(os.path.realpath(p)), Path(os.path.realpath(folder))
    if root not in real.parents:
        raise LabError(f"{p} is a symlink to {real}, outside the model folder; allowed: files inside {folder}")
    return p


def read_model_json(folder, what: str = "model folder") -> dict:
    """The validated JSON object in ``folder/model.json`` (its card, if any, a JSON object too)."""
    folder = Path(folder)
    if not folder.exists():
        raise LabError(f"{folder} does not exist; allowed: a {what} (model.json + weights.safetensors)")
    if not folder.is_dir():
        raise LabError(f"{folder} is not a folder; allowed: a {what} (model.json + weights.safetensors)")
    mj = model_file(folder, "model.json")
    if not mj.exists():
        raise LabError(f"{folder} is not a model folder (no model.json)")
    if not mj.is_file():
        raise LabError(f"{mj} is not a file; allowed: a JSON object")
    if mj.stat().st_size > MAX_MODEL_JSON_BYTES:
        raise LabError(f"{mj} is {mj.stat().st_size} bytes; allowed: at most {MAX_MODEL_JSON_BYTES} bytes")
    spec = read_json(mj)  # a missing, unreadable or malformed file is a one-line LabError
    if not isinstance(spec, dict):
        raise LabError(f"{mj} holds {_JSON_TYPES.get(type(spec), type(spec).__name__)}; allowed: a JSON object "
                       f"with kind, nets/net and card")
    card = spec.get("card", {})
    if not isinstance(card, dict):
        raise LabError(f"{mj}: card is {_JSON_TYPES.get(type(card), type(card).__name__)}; allowed: a JSON object")
    return spec


def read_weights(folder) -> dict[str, torch.Tensor]:
    """The tensors of ``folder/weights.safetensors`` (a missing, truncated or corrupt file, or a NaN/Inf weight,
    is a LabError)."""
    w = model_file(folder, "weights.safetensors")
    if not w.is_file():
        raise LabError(f"{w} is missing; a model folder holds model.json and weights.safetensors")
    try:
        tensors = load_tensors(w)
    except LabError:
        raise
    except Exception as e:  # safetensors' SafetensorError, or an OSError/ValueError from a file that is not one
        raise LabError(f"{w} is not a readable safetensors file ({one_line(e)}); it may be truncated or "
                       f"corrupt") from None
    for k, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise LabError(f"{w}: tensor {short_repr(k, 60)} holds NaN or Inf; allowed: finite weights (the model is "
                           f"damaged, or saved from a diverged run)")
    return tensors


def _mismatch(own: dict, tensors: dict, where: str) -> None:
    """A LabError naming the missing, unexpected and wrongly shaped tensors of ``tensors`` against the
    state dict ``own`` (nothing when they fit)."""
    def few(keys):
        return ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")

    missing = [k for k in own if k not in tensors]
    extra = [k for k in tensors if k not in own]
    wrong = [f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in tensors and tuple(tensors[k].shape) != tuple(own[k].shape)]
    problems = ([f"missing {few(missing)}"] if missing else []) + ([f"unexpected {few(extra)}"] if extra else []) \
        + ([f"wrong shape {'; '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''}"] if wrong else [])
    if problems:
        raise LabError(f"{where} does not match its network spec: {'; '.join(problems)}")


def build_fitting(build, tensors: dict, where: str) -> nn.Module:
    """``build()``, after checking on the meta device (no memory, no initialisation) that ``tensors`` fit the
    network it makes: a spec claiming a huge network is refused before anything is allocated."""
    try:
        with torch.device("meta"):
            shapes = build().state_dict()
    except LabError:
        raise
    except Exception:  # a constructor that cannot run on meta: the real build and load check instead
        shapes = None
    if shapes is not None:
        _mismatch(shapes, tensors, where)
    return build()


def load_weights_into(net: nn.Module, tensors: dict, where: str) -> None:
    """``net.load_state_dict(tensors)`` with a one-line LabError naming ``where`` on any mismatch."""
    _mismatch(net.state_dict(), tensors, where)
    try:
        net.load_state_dict(tensors)
    except (RuntimeError, ValueError, TypeError) as e:
        raise LabError(f"{where} does not match its network spec ({one_line(e)})") from None


def load_generator(folder, device="cpu") -> Generator:
    """The generator saved in ``folder`` (eval mode, on ``device``), its card as ``gen.card``; every malformed
    folder (missing or unparseable files, missing keys, wrong types, weights that do not fit) is one LabError."""
    folder = Path(folder)
    spec = read_model_json(folder, "generator folder")
    mj = folder / "model.json"
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in GENERATORS:
        raise LabError(f"unknown generator kind {short_repr(kind)} in {mj}; allowed: {', '.join(GENERATORS)}")
    specs = spec.get("nets")
    if not isinstance(specs, dict) or not specs or not all(isinstance(k, str) and k.isidentifier() for k in specs):
        raise LabError(f"{mj}: nets is {short_repr(specs)}; allowed: a non-empty JSON object name -> network spec "
                       f"(names: identifiers)")
    nfe = spec.get("native_nfe", [])
    if not isinstance(nfe, list) or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in nfe):
        raise LabError(f"{mj}: native_nfe is {short_repr(nfe)}; allowed: a list of positive integers")
    try:
        for k, s in specs.items():
            check_net_spec(s, f"nets.{k}")
    except LabError as e:
        raise LabError(f"invalid {mj}: {e}") from None
    tensors = read_weights(folder)
    wpath = folder / "weights.safetensors"
    stray = sorted({k.split(".", 1)[0] for k in tensors} - set(specs))
    if stray:
        raise LabError(f"{wpath} has weights of network(s) {', '.join(stray)} that {mj} does not list "
                       f"(it lists: {', '.join(specs)})")
    nets = {}
    for name, s in specs.items():
        sd = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        where = f"{wpath} (network {name!r})"
        try:
            nets[name] = build_fitting(lambda: build_net(s, f"nets.{name}"), sd, where)
        except LabError as e:
            raise LabError(str(e) if str(e).startswith(str(wpath)) else f"invalid {mj}: {e}") from None
        except (TypeError, ValueError, KeyError, RuntimeError) as e:
            raise LabError(f"invalid {mj}: network {name!r} cannot be built from its spec ({one_line(e)})") from None
        load_weights_into(nets[name], sd, where)
    try:
        gen = GENERATORS[kind].from_spec(spec, nets)
    except LabError as e:
        raise LabError(f"invalid {mj}: {e}") from None
    except KeyError as e:
        raise LabError(f"{mj} lacks {e.args[0]!r}, which a {kind!r} model needs") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise LabError(f"invalid {mj} for a {kind!r} model ({one_line(e)})") from None
    gen.card = spec.get("card", {})
    gen.folder = folder
    return gen.to(device).eval()


def analytic_generator(gmm, process="linear", solver="euler") -> FlowGenerator:
    from lab.diffusion.analytic import analytic_teacher  # late: analytic imports lab.diffusion, whose __init__ imports this module (cycle)

    return FlowGenerator(analytic_teacher(gmm, process), solver)

