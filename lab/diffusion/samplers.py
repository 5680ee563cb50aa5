"""Samplers that can return full trajectories.

All go from t = 1 (noise) to t = 0 (data) on a time grid (uniform by default).
A trajectory is a tensor (steps + 1, n, ...) with the matching times (steps + 1,).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lab.diffusion.denoiser import Denoiser
from lab.diffusion.process import Process
from lab.errors import LabError

SOLVERS = ("euler", "heun", "ddim")


@dataclass
class SampleResult:
    x: torch.Tensor
    trajectory: torch.Tensor | None
    times: torch.Tensor
    nfe: int


def time_grid(steps: int, t_max: float = 1.0, t_min: float = 0.0, device=None) -> torch.Tensor:
    if not isinstance(steps, int) or steps < 1:
        raise LabError(f"steps must be a positive integer, got {steps!r}")
    return torch.linspace(t_max, t_min, steps + 1, device=device)


def heun_steps_for_nfe(nfe: int) -> int:
    """Heun with the last step plain Euler (as in EDM) costs 2*steps - 1 evaluations."""
    return max(1, (nfe + 1) // 2)


@torch.no_grad()
def ode_sample(
    denoiser: Denoiser,
    z: torch.Tensor,
    steps: int,
    solver: str = "euler",
    y: torch.Tensor | None = None,
    times: torch.Tensor | None = None,
    return_trajectory: bool = False,
    **cond,
) -> SampleResult:
    """Integrate the probability-flow ODE from z at t = times[0] down to times[-1]."""
    if solver not in SOLVERS:
        raise LabError(f"unknown solver {solver!r}; allowed: {', '.join(SOLVERS)}")
    ts = times if times is not None else time_grid(steps, device=z.device)
    ts = ts.to(z.device, z.dtype)
    proc: Process = denoiser.process
    x, traj, nfe = z, [z], 0
    for i in range(len(ts) - 1):
        t, s = ts[i], ts[i + 1]
        tb = t.expand(x.shape[0])
        if solver == "ddim":
            x0 = denoiser.x0(x, tb, y, **cond)
            x = proc.ddim_step(x, tb, s.expand(x.shape[0]), x0)
            nfe += 1
        else:
            v = denoiser.velocity(x, tb, y, **cond)
            nfe += 1
            x_next = x + (s - t) * v
            if solver == "heun" and float(s) > 0:
                v2 = denoiser.velocity(x_next, s.expand(x.shape[0]), y, **cond)
                nfe += 1
                x_next = x + (s - t) * 0.5 * (v + v2)
            x = x_next
        if return_trajectory:
            traj.append(x)
    return SampleResult(x, torch.stack(traj) if return_trajectory else None, ts, nfe)


@torch.no_grad()
def consistency_sample(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    process: Process,
    z: torch.Tensor,
    times: torch.Tensor,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
) -> SampleResult:
    """Multistep consistency sampling: jump to x0_hat, re-noise to the next time, jump again.

    ``times`` are the times at which the consistency function is evaluated, the first
    one being the noise level of z (normally 1). The trajectory records the noisy
    states x_{t_i} and the final sample.
    """
    x, traj = z, [z]
    x0 = z
    for i, t in enumerate(times):
        tb = t.expand(x.shape[0]).to(z)
        x0 = fn(x, tb)
        if i + 1 < len(times):
            s = times[i + 1].expand(x.shape[0]).to(z)
            eps = torch.randn(x.shape, generator=generator, device="cpu").to(z) if generator is not None \
                else torch.randn_like(x)
            x = process.add_noise(x0, eps, s)
            if return_trajectory:
                traj.append(x)
    if return_trajectory:
        traj.append(x0)
    ts = torch.cat([times.to(z), torch.zeros(1, device=z.device, dtype=z.dtype)])
    return SampleResult(x0, torch.stack(traj) if return_trajectory else None, ts, len(times))


def straightness(trajectory: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Per-path straightness of Liu et al. (2022): S = int |v_t - (x_end - x_start)|^2 dt.

    On a discrete path with step velocities v_i = dx_i / dt_i this is
    sum_i |dt_i| * |v_i - (x_end - x_start)/(t_end - t_start)|^2 / |t_end - t_start|.
    It is zero exactly for straight paths traversed at constant speed. Returns (n,).
    """
    dts = (times[1:] - times[:-1]).to(trajectory)
    dx = trajectory[1:] - trajectory[:-1]
    total = (trajectory[-1] - trajectory[0]) / (times[-1] - times[0])
    v = dx / dts.reshape(-1, *([1] * (dx.ndim - 1)))
    dev = ((v - total.unsqueeze(0)) ** 2).flatten(2).sum(-1)  # (steps, n)
    w = dts.abs() / (times[-1] - times[0]).abs()
    return (w[:, None] * dev).sum(0)
