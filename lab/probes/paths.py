"""Path probes for data-free trajectory students (flowmap, boot): how far their intermediate
states are from the teacher's ODE path from the same noise. Returns data; ``lab.viz.paths`` draws it."""
from __future__ import annotations

import pandas as pd
import torch

from lab.diffusion.generators import Generator, make_noise
from lab.diffusion.samplers import ode_sample
from lab.methods.flow_map.flowmap import FlowMapGenerator, map_apply

__all__ = ["path_error"]


@torch.no_grad()
def path_error(gen: Generator, teacher, n: int = 512, seed: int = 0, points: int = 8, fine_steps: int = 64):
    """How far the student's states are from the teacher's ODE path started at the same noise.

    The teacher path is ``fine_steps`` Euler steps from z; at each of the times 1 - k/points
    (k = 1..points) it records the mean distance of the student's state at that time:
    ``jump`` = one evaluation from noise (``gen.state_at(z, t)``: X(z, 1, t) for a flow map,
    g(z, t) for BOOT) and, for a flow map, ``chain`` = k jumps of size 1/points. Returns a
    DataFrame with columns t, kind, error, teacher_spread (mean distance of the teacher's
    state from its own mean, a scale for the errors).
    """
    if fine_steps % points:
        raise ValueError(f"fine_steps ({fine_steps}) must be a multiple of points ({points})")
    z = make_noise(n, 2, seed=seed, device=gen.device)
    traj = ode_sample(teacher.denoiser if hasattr(teacher, "denoiser") else teacher, z, fine_steps, "euler",
                      return_trajectory=True).trajectory
    rows, x = [], z
    for k in range(1, points + 1):
        t = 1.0 - k / points
        ref = traj[k * fine_steps // points]
        spread = (ref - ref.mean(0)).norm(dim=-1).mean().item()
        rows.append({"t": t, "kind": "jump", "error": (gen.state_at(z, t) - ref).norm(dim=-1).mean().item(),
                     "teacher_spread": spread})
        if isinstance(gen, FlowMapGenerator):
            tb = torch.full((n,), 1.0 - (k - 1) / points, device=z.device)
            x = map_apply(gen.net, x, tb, torch.full_like(tb, t))[0]
            rows.append({"t": t, "kind": "chain", "error": (x - ref).norm(dim=-1).mean().item(), "teacher_spread": spread})
    return pd.DataFrame(rows, columns=["t", "kind", "error", "teacher_spread"])
