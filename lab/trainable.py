"""Shared base for anything the loop trains (teacher training and distillation methods).

It owns a CPU random generator for batches (so the same seed gives the same numbers
on any device), the named networks and their optimisers, and a state dict that
captures all of it for exact resume.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lab.config import config_from_dict
from lab.errors import LabError


@dataclass
class StepOutput:
    """What one step returns: named loss terms, diagnostics, and optional internals (arrays)."""

    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    internals: dict[str, Any] = field(default_factory=dict)
    stage: str = ""

    def row(self) -> dict[str, float]:
        return {**{f"loss/{k}": float(v) for k, v in self.losses.items()}, **{k: float(v) for k, v in self.metrics.items()}}


def resolve_device(device: "str | torch.device | None") -> torch.device:
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise LabError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N, mps") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise LabError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N, mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LabError(f"device {device!r} requested but CUDA is not available; allowed here: auto, cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise LabError(f"device {device!r}: there are {torch.cuda.device_count()} CUDA devices; allowed: "
                       f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise LabError(f"device {device!r} requested but MPS is not available; allowed here: auto, cpu")
    return dev


def default_device() -> torch.device:
    """The device the apps (and anything without a ``--device``) run networks on: ``$LAB_DEVICE`` (auto, cpu,
    cuda, cuda:N, mps) when set, else cpu."""
    import os

    return resolve_device(os.environ.get("LAB_DEVICE") or "cpu")


#: --precision values: the autocast dtype of each (None: full precision)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device) -> str:
    """``precision`` if torch can autocast to it on ``device``; else a one-line error naming the allowed values."""
    if precision not in PRECISIONS:
        raise LabError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    dev = torch.device(device)
    dtype = PRECISIONS[precision]
    if dtype is None:
        return precision
    if not torch.amp.is_autocast_available(dev.type):
        raise LabError(f"precision {precision} needs autocast, which torch {torch.__version__} does not support on "
                       f"{dev.type}; allowed here: fp32")
    try:
        with torch.autocast(dev.type, dtype=dtype):
            torch.ones(2, 2, device=dev) @ torch.ones(2, 2, device=dev)
    except (RuntimeError, AssertionError) as e:
        raise LabError(f"precision {precision} is not supported by torch {torch.__version__} on {dev.type} "
                       f"({str(e).splitlines()[0][:120]}); allowed here: fp32") from None
    if precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise LabError("precision bf16 is not supported by this GPU; allowed here: fp32, fp16")
    return precision


def cosine_decay(frac: float, floor: float = 0.0) -> float:
    """The cosine learning-rate factor at fraction ``frac`` of training (clipped to [0, 1]): 1 at the start,
    ``floor`` at the end (Loshchilov & Hutter, SGDR, without restarts)."""
    frac = min(max(float(frac), 0.0), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))


def make_registry(kind: str):
    """A name -> class registry for ``kind`` (e.g. "method"): returns ``(REGISTRY, register, names, get)``:
    the dict, the ``@register("name")`` class decorator (sets ``cls.name``; a second registration of a name is
    an error), the sorted names, and ``get(name)`` (an unknown name is a one-line error naming the allowed ones)."""
    registry: dict = {}

    def register(name: str):
        def deco(cls):
            if name in registry:
                raise LabError(f"{kind} {name!r} is registered twice")
            cls.name = name
            registry[name] = cls
            return cls
        return deco

    def names() -> list[str]:
        return sorted(registry)

    def get(name: str):
        if name not in registry:
            raise LabError(f"unknown {kind} {name!r}; allowed: {', '.join(names())}")
        return registry[name]

    return registry, register, names, get


# A method or KD method may be given its teacher as a reference (a zoo entry name, a run/model folder, a diffusers
# pipeline folder) instead of the loaded model. Resolving references is the zoo's job (lab.zoo.resolve), and the zoo
# sits above the methods, so they do not import it: lab.zoo installs its resolver here when it is imported (which
# ``import lab`` always does), and the methods, KD and the diffusers export call :func:`resolve_reference`.
_MODEL_RESOLVER = None


def install_model_resolver(resolver) -> None:
    """Set the function that turns a model reference into the loaded model (lab.zoo does, on import):
    ``resolver(ref, device=..., kind=..., **options)`` returning an object with ``.model``."""
    global _MODEL_RESOLVER
    _MODEL_RESOLVER = resolver


def resolve_reference(ref, kind: str, device=None, **options):
    """:func:`lab.zoo.resolve` (the installed resolver) of ``ref`` as ``kind`` ("generator", "kd", ...): the
    loaded model is ``.model``."""
    if _MODEL_RESOLVER is None:
        raise LabError(f"cannot resolve the model reference {ref!r}: no resolver installed (import lab first)")
    return _MODEL_RESOLVER(ref, device=device if device is not None else "cpu", kind=kind, **options)


class Trainable:
    name = "trainable"

    def __init__(self, seed: int = 0, device=None):
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.rng = torch.Generator().manual_seed(self.seed)
        self.it = 0
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        #: "fp32", "bf16" or "fp16" (:meth:`set_precision`); fp16 scales the loss with ``scaler``
        self.precision = "fp32"
        self.scaler = None
        #: under torchrun (lab.runs.distributed): (rank, world size), and the local batch size while a step runs
        self._world = None
        self._shard_n = None

    # ---- precision and compilation (the run's config stores them, so a resume keeps them)
    def set_precision(self, precision: str = "fp32") -> None:
        """Mixed precision for the training steps: the loop runs ``step`` under :meth:`autocast`; fp16 also
        scales the loss (a :class:`torch.amp.GradScaler`, Micikevicius et al. 2018, "Mixed Precision Training")
        through :meth:`backward` / :meth:`optimizer_step`."""
        self.precision = check_precision(precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None

    def autocast(self):
        """The autocast context of this trainable's precision (a no-op for fp32)."""
        import contextlib

        dtype = PRECISIONS.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled under fp16."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def optimizer_step(self, opt: torch.optim.Optimizer, clip: float | None = None, params=None) -> None:
        """``opt.step()`` (after clipping ``params``' gradient norm to ``clip``), unscaled first under fp16."""
        if self.scaler is not None:
            if clip:
                self.scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, clip)
            self.scaler.step(opt)
            return
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()

    def end_step(self) -> None:
        """After a training step (the loop calls it): the fp16 loss scale is updated once per step."""
        if self.scaler is not None:
            self.scaler.update()

    def compile(self) -> None:
        """``torch.compile`` every trained network (in place: same parameters, same state_dict keys)."""
        for k, net in self.networks.items():
            if k in self.optimizers:
                try:
                    net.compile()
                except Exception as e:  # noqa: BLE001 - torch raises many kinds; one line names it
                    raise LabError(f"torch.compile is not supported here ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:120] if str(e) else ''}); run without --compile") from None

    def use_config(self, config) -> None:
        """Set ``self.config`` from an instance of ``self.Config``, a dict of its fields or None (the defaults),
        validated; ``total_steps`` follows its ``steps``."""
        if isinstance(config, dict) or config is None:
            config = config_from_dict(self.Config, config)
        if not isinstance(config, self.Config):
            raise LabError(f"{self.name} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self.total_steps = config.steps

    # ---- randomness: drawn on the CPU, moved to the device
    def _draw(self, fn, shape) -> torch.Tensor:
        """``fn(shape)`` from the shared generator. Under torchrun, while a step runs, a draw whose first
        dimension is the local batch is drawn for the global batch and this rank's slice kept, so the numbers are
        those of one process (see lab.runs.distributed)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = tuple(shape[0])
        k = self._shard_n
        if k is not None and self._world is not None and len(shape) >= 1 and int(shape[0]) == k:
            rank, size = self._world
            full = fn((k * size, *shape[1:]))
            return full[rank * k:(rank + 1) * k].to(self.device)
        return fn(tuple(shape)).to(self.device)

    def randn(self, *shape) -> torch.Tensor:
        return self._draw(lambda s: torch.randn(*s, generator=self.rng), shape)

    def rand(self, *shape) -> torch.Tensor:
        return self._draw(lambda s: torch.rand(*s, generator=self.rng), shape)

    def randint(self, low, high, shape) -> torch.Tensor:
        return self._draw(lambda s: torch.randint(low, high, s, generator=self.rng), (tuple(shape),))

    # ---- nets and optimisers
    def add_net(self, name: str, net: nn.Module, lr: float | None = None, **opt_kwargs) -> nn.Module:
        net = net.to(self.device)
        self.networks[name] = net
        if lr is not None:
            self.optimizers[name] = torch.optim.Adam(net.parameters(), lr=lr, **opt_kwargs)
        return net

    def nets(self) -> dict[str, nn.Module]:
        return dict(self.networks)

    def ema_nets(self) -> dict[str, nn.Module]:
        """Networks an evaluation EMA should average (default: none)."""
        return {}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, sd: dict) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {
            "it": self.it,
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "nets": {k: n.state_dict() for k, n in self.networks.items()},
            "opts": {k: o.state_dict() for k, o in self.optimizers.items()},
            "extra": self.extra_state(),
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }

    def load_state_dict(self, sd: dict) -> None:
        self.load_extra_state(sd.get("extra", {}))  # may create stage-specific nets first
        self.it = int(sd["it"])
        self.rng.set_state(sd["rng"])
        torch.set_rng_state(sd["torch_rng"])
        for k, s in sd["nets"].items():
            if k not in self.networks:
                raise LabError(f"checkpoint has network {k!r} that this {self.name} does not define")
            self.networks[k].load_state_dict(s)
        for k, s in sd["opts"].items():
            self.optimizers[k].load_state_dict(s)
        if self.scaler is not None and sd.get("scaler"):
            self.scaler.load_state_dict(sd["scaler"])
