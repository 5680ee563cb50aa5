"""One noise process: x_t = alpha(t) * x0 + sigma(t) * eps, t in [0, 1], t = 1 is noise.

All conversions between x0, eps, velocity (dx_t/dt) and score live here and nowhere
else. Methods ask a :class:`~lab.diffusion.Denoiser` for the quantity they need.

Conventions (t = 1 is noise, as in diffusers' flow-matching schedulers):
- ``linear`` (rectified flow / flow matching): alpha = 1 - t, sigma = t,
  velocity v = eps - x0. This is diffusers' FlowMatchEulerDiscreteScheduler with
  sigma = t, and an Euler step is exactly deterministic DDIM.
- ``vp_cosine``: alpha = cos(pi t / 2), sigma = sin(pi t / 2) (variance preserving,
  the cosine schedule of Nichol & Dhariwal without the small offset).
"""
from __future__ import annotations

import math

import torch

from lab.errors import LabError


def broadcast_coef(c: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample coefficient (n,) or scalar against x (n, ...)."""
    if not torch.is_tensor(c):
        return torch.as_tensor(c, dtype=x.dtype, device=x.device)
    c = c.to(dtype=x.dtype, device=x.device)
    if c.ndim == 0:
        return c
    return c.reshape(c.shape[0], *([1] * (x.ndim - 1)))


class Process:
    name: str = "process"

    # --- schedule -----------------------------------------------------------
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        return (self.alpha(t) / self.sigma(t).clamp_min(1e-12)) ** 2

    # --- forward process ----------------------------------------------------
    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return broadcast_coef(self.alpha(t), x0) * x0 + broadcast_coef(self.sigma(t), x0) * eps

    # --- conversions (one place) -------------------------------------------
    def eps_from_x0(self, x_t, t, x0):
        return (x_t - broadcast_coef(self.alpha(t), x_t) * x0) / broadcast_coef(self.sigma(t), x_t).clamp_min(1e-12)

    def x0_from_eps(self, x_t, t, eps):
        return (x_t - broadcast_coef(self.sigma(t), x_t) * eps) / broadcast_coef(self.alpha(t), x_t).clamp_min(1e-12)

    def v_from_x0_eps(self, t, x0, eps, like):
        return broadcast_coef(self.d_alpha(t), like) * x0 + broadcast_coef(self.d_sigma(t), like) * eps

    def x0_eps_from_v(self, x_t, t, v):
        """Solve [alpha sigma; alpha' sigma'] [x0; eps] = [x_t; v]."""
        a, s = broadcast_coef(self.alpha(t), x_t), broadcast_coef(self.sigma(t), x_t)
        da, ds = broadcast_coef(self.d_alpha(t), x_t), broadcast_coef(self.d_sigma(t), x_t)
        det = a * ds - s * da
        x0 = (ds * x_t - s * v) / det
        eps = (a * v - da * x_t) / det
        return x0, eps

    def score_from_eps(self, x_t, t, eps):
        return -eps / broadcast_coef(self.sigma(t), x_t).clamp_min(1e-12)

    def eps_from_score(self, x_t, t, score):
        return -score * broadcast_coef(self.sigma(t), x_t)

    def ddim_step(self, x_t, t, s, x0):
        """Deterministic DDIM from t to s given the x0 prediction at (x_t, t)."""
        eps = self.eps_from_x0(x_t, t, x0)
        return broadcast_coef(self.alpha(s), x_t) * x0 + broadcast_coef(self.sigma(s), x_t) * eps

    def x0_coeffs(self, t: torch.Tensor, pred: str):
        """(c_skip, c_out) with x0_hat = c_skip * x_t + c_out * F for a network F of type ``pred``.

        At t = 0 every process here has alpha = 1, sigma = 0, so for eps and v networks
        c_skip = 1 and c_out = 0: the consistency boundary condition f(x, 0) = x holds by
        construction. An x0 network has no skip connection (c_skip = 0, c_out = 1); the
        consistency method then enforces the boundary explicitly.
        """
        a, s, da, ds = self.alpha(t), self.sigma(t), self.d_alpha(t), self.d_sigma(t)
        if pred == "x0":
            return torch.zeros_like(t), torch.ones_like(t)
        if pred == "eps":
            return 1.0 / a.clamp_min(1e-12), -s / a.clamp_min(1e-12)
        if pred == "v":
            det = a * ds - s * da
            return ds / det, -s / det
        raise LabError(f"unknown prediction type {pred!r}; allowed: x0, eps, v")

    def to_dict(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearFlow(Process):
    """Rectified flow / flow matching: x_t = (1 - t) x0 + t eps, v = eps - x0."""

    name = "linear"

    def alpha(self, t):
        return 1.0 - t

    def sigma(self, t):
        return t

    def d_alpha(self, t):
        return -torch.ones_like(t)

    def d_sigma(self, t):
        return torch.ones_like(t)


class VPCosine(Process):
    """Variance preserving cosine schedule: alpha = cos(pi t/2), sigma = sin(pi t/2)."""

    name = "vp_cosine"

    def alpha(self, t):
        return torch.cos(0.5 * math.pi * t)

    def sigma(self, t):
        return torch.sin(0.5 * math.pi * t)

    def d_alpha(self, t):
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def d_sigma(self, t):
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)


PROCESSES = {"linear": LinearFlow, "vp_cosine": VPCosine}


def get_process(name: "str | Process") -> Process:
    if isinstance(name, Process):
        return name
    if isinstance(name, dict):
        name = name["name"]
    if name not in PROCESSES:
        raise LabError(f"unknown process {name!r}; allowed: {', '.join(PROCESSES)}")
    return PROCESSES[name]()
