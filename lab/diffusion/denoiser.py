"""A Denoiser wraps any network ``net(x, t, y=None, **cond)`` and its prediction type.

It answers x0, eps, velocity and score questions through the process, so no method
re-derives the conversions.
"""
from __future__ import annotations

import torch
from torch import nn

from lab.diffusion.process import Process, broadcast_coef, get_process
from lab.errors import LabError

PRED_TYPES = ("x0", "eps", "v")


class Denoiser(nn.Module):
    def __init__(self, net: nn.Module, process: "Process | str" = "linear", pred: str = "v"):
        super().__init__()
        if pred not in PRED_TYPES:
            raise LabError(f"unknown prediction type {pred!r}; allowed: {', '.join(PRED_TYPES)}")
        self.net = net
        self.process = get_process(process)
        self.pred = pred
        #: labels bound for a block of calls (Method.conditioned); an explicit y always wins
        self.bound_y: torch.Tensor | None = None

    def time_batch(self, t, x):
        """``t`` (a number, a scalar or a (n,) tensor) as a (n,) tensor on ``x``'s device and dtype."""
        if not torch.is_tensor(t):
            t = torch.tensor(float(t))
        t = t.to(device=x.device, dtype=x.dtype)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        return t

    def raw(self, x, t, y=None, **cond):
        if y is None and self.bound_y is not None:
            if self.bound_y.shape[0] != x.shape[0]:  # a sub-batch: which labels belong to it is unknown here
                raise RuntimeError(f"labels are bound for a batch of {self.bound_y.shape[0]} but this call has "
                                   f"{x.shape[0]} samples; pass y explicitly (e.g. the same slice of batch['y'])")
            y = self.bound_y
        return self.net(x, self.time_batch(t, x), y, **cond)

    def x0(self, x, t, y=None, **cond):
        t = self.time_batch(t, x)
        c_skip, c_out = self.process.x0_coeffs(t, self.pred)
        return broadcast_coef(c_skip, x) * x + broadcast_coef(c_out, x) * self.raw(x, t, y, **cond)

    def eps(self, x, t, y=None, **cond):
        t = self.time_batch(t, x)
        out = self.raw(x, t, y, **cond)
        if self.pred == "eps":
            return out
        if self.pred == "x0":
            return self.process.eps_from_x0(x, t, out)
        return self.process.x0_eps_from_v(x, t, out)[1]

    def velocity(self, x, t, y=None, **cond):
        t = self.time_batch(t, x)
        out = self.raw(x, t, y, **cond)
        if self.pred == "v":
            return out
        if self.pred == "x0":
            x0, eps = out, self.process.eps_from_x0(x, t, out)
        else:
            x0, eps = self.process.x0_from_eps(x, t, out), out
        return self.process.v_from_x0_eps(t, x0, eps, x)

    def score(self, x, t, y=None, **cond):
        t = self.time_batch(t, x)
        return self.process.score_from_eps(x, t, self.eps(x, t, y, **cond))

    def forward(self, x, t, y=None, **cond):  # the velocity is the ODE's right-hand side
        return self.velocity(x, t, y, **cond)
