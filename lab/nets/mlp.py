"""A time-conditioned MLP for 2D (optionally class-conditioned, optionally with extra scalar inputs)."""
from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from lab.errors import LabError
from lab.nets.registry import NETS
from lab.nets.specs import check_net_spec


class FourierTime(nn.Module):
    """Sinusoidal embedding of a scalar in [0, 1] (scaled by 1000 as diffusers does)."""

    def __init__(self, dim: int = 64, scale: float = 1000.0):
        super().__init__()
        self.dim, self.scale = dim, scale
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        a = (t.float() * self.scale)[:, None] * self.freqs[None]
        return torch.cat([torch.sin(a), torch.cos(a)], dim=-1)


class TimeMLP(nn.Module):
    """out = MLP([x, emb(t), emb(y), emb(extra...)]).

    ``n_classes > 0`` adds a label embedding with one extra "null" label (index
    n_classes) for classifier-free guidance. ``extra`` names scalar conditions (for
    example ``("w",)`` for a guidance weight) passed as keyword arguments.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, t_dim: int = 32,
                 n_classes: int = 0, extra: tuple[str, ...] = ()):
        super().__init__()
        if depth < 1 or hidden < 1:
            raise LabError(f"depth and hidden must be >= 1, got depth={depth}, hidden={hidden}")
        self.dim, self.hidden, self.depth, self.t_dim = dim, hidden, depth, t_dim
        self.n_classes, self.extra = n_classes, tuple(extra)
        self.t_emb = FourierTime(t_dim)
        cond = t_dim
        if n_classes:
            self.y_emb = nn.Embedding(n_classes + 1, t_dim)
            cond += t_dim
        self.extra_emb = nn.ModuleDict({k: FourierTime(t_dim, scale=100.0) for k in self.extra})
        cond += t_dim * len(self.extra)
        layers: list[nn.Module] = [nn.Linear(dim + cond, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, dim))
        self.body = nn.Sequential(*layers)
        self.sample_shape = (dim,)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, **cond) -> torch.Tensor:
        h = [x, self.t_emb(t)]
        if self.n_classes:
            if y is None:
                y = torch.full((x.shape[0],), self.n_classes, device=x.device, dtype=torch.long)
            h.append(self.y_emb(y))
        for k in self.extra:
            if k not in cond:
                raise LabError(f"this network needs the condition {k!r}; it takes: {', '.join(self.extra)}")
            v = torch.as_tensor(cond[k], device=x.device, dtype=x.dtype)
            h.append(self.extra_emb[k](v.expand(x.shape[0]) if v.ndim == 0 else v))
        return self.body(torch.cat(h, dim=-1))

    def spec(self) -> dict:
        return {"type": "mlp", "dim": self.dim, "hidden": self.hidden, "depth": self.depth, "t_dim": self.t_dim,
                "n_classes": self.n_classes, "extra": list(self.extra)}


NETS["mlp"] = TimeMLP


def build_net(spec: dict, path: str = "net") -> nn.Module:
    """The network of ``spec`` (validated first by :func:`lab.nets.specs.check_net_spec`; ``path`` names it)."""
    spec = check_net_spec(spec, path)
    kind = spec.pop("type")
    if "extra" in spec:
        spec["extra"] = tuple(spec["extra"])
    try:
        return NETS[kind](**spec)
    except TypeError as e:
        allowed = [p for p in inspect.signature(NETS[kind]).parameters]
        raise LabError(f"bad options for network type {kind!r}: {e}; allowed: {', '.join(allowed)}") from None


def net_spec(net: nn.Module) -> dict:
    if not hasattr(net, "spec"):
        raise LabError(f"network {type(net).__name__} has no spec(); it cannot be saved")
    return net.spec()
