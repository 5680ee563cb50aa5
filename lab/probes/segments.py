"""Segment boundaries: where a few-step student jumps, and how close it stays to the teacher's ODE.

``segment_boundaries(method)`` takes a segmented consistency model (``tscd``: one stage per
K of its schedule) or any method whose generator has native NFEs (``shortcut``: 1, 2, 4, 8
steps), and returns ONE tidy DataFrame (data only, no figure) with three kinds of rows:

- ``kind == "boundary"``: the segment boundaries b_j = j / K of each stage (x, y empty);
- ``kind == "teacher"``: the teacher's ODE paths from fixed noise (K empty), with
  ``at_boundary`` marking the points whose time is a boundary of some stage;
- ``kind == "student"``: the student's jumps with ``nfe = K`` from the same noise, one row
  per (K, path, point), with the teacher's ODE state at the same time (``teacher_x``,
  ``teacher_y``; the teacher's grid contains every boundary) and their distance ``gap``.

Columns: kind, K, path, k, t, x, y, at_boundary, teacher_x, teacher_y, gap, method.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lab.diffusion.generators import make_noise
from lab.errors import LabError

COLUMNS = ["kind", "K", "path", "k", "t", "x", "y", "at_boundary", "teacher_x", "teacher_y", "gap", "method"]


def _stages(method) -> list[int]:
    cfg = getattr(method, "config", None)
    stages = getattr(cfg, "stages", None)
    if stages:
        return list(dict.fromkeys(int(k) for k in stages))
    return [int(k) for k in method.generator().native_nfe]


def segment_boundaries(method, n: int = 32, seed: int = 0, stages: "list[int] | None" = None,
                       teacher_steps: int = 64) -> pd.DataFrame:
    """Boundaries per stage and the student's jumps on fixed noise (see the module docstring)."""
    ks = [int(k) for k in (stages or _stages(method))]
    if not ks or any(k < 1 for k in ks):
        raise LabError(f"stages must be positive integers, got {ks!r}")
    lcm = int(np.lcm.reduce(ks))
    if teacher_steps % lcm:
        teacher_steps = lcm * max(1, round(teacher_steps / lcm))
    gen, teacher = method.generator(), method.teacher_gen
    z = make_noise(n, 2, seed, method.device)
    with torch.no_grad():
        tr = teacher.sample(z=z, nfe=teacher_steps, seed=seed, return_trajectory=True, solver="euler")
    t_traj = tr.trajectory.cpu().numpy()  # (S + 1, n, 2)
    t_times = tr.times.cpu().numpy()
    bounds = sorted({round(j / k, 9) for k in ks for j in range(k + 1)})

    def teacher_at(t):
        i = int(np.argmin(np.abs(t_times - t)))
        return t_traj[i] if abs(t_times[i] - t) < 1e-6 else None

    rows = []
    for k in ks:
        for j in range(k + 1):
            rows.append({"kind": "boundary", "K": k, "path": -1, "k": j, "t": j / k})
    on_b = np.array([any(abs(tt - b) < 1e-6 for b in bounds) for tt in t_times])
    S = t_traj.shape[0]
    for p in range(n):
        for i in range(S):
            rows.append({"kind": "teacher", "K": np.nan, "path": p, "k": i, "t": float(t_times[i]),
                         "x": float(t_traj[i, p, 0]), "y": float(t_traj[i, p, 1]), "at_boundary": bool(on_b[i])})
    for k in ks:
        with torch.no_grad():
            res = gen.sample(z=z, nfe=k, seed=seed, return_trajectory=True)
        st, times = res.trajectory.cpu().numpy(), res.times.cpu().numpy()
        for i in range(st.shape[0]):
            tt = float(times[min(i, len(times) - 1)])
            ref = teacher_at(tt)
            for p in range(n):
                r = {"kind": "student", "K": k, "path": p, "k": i, "t": tt, "x": float(st[i, p, 0]),
                     "y": float(st[i, p, 1]), "at_boundary": True}
                if ref is not None:
                    r.update(teacher_x=float(ref[p, 0]), teacher_y=float(ref[p, 1]),
                             gap=float(np.hypot(st[i, p, 0] - ref[p, 0], st[i, p, 1] - ref[p, 1])))
                rows.append(r)
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    df["method"] = getattr(method, "name", "")
    df["at_boundary"] = df["at_boundary"].fillna(False).astype(bool)
    return df


def boundary_gaps(df: pd.DataFrame) -> pd.DataFrame:
    """Mean distance between the student's state and the teacher's ODE state, per K and boundary time."""
    sub = df[(df.kind == "student") & df.gap.notna()]
    return sub.groupby(["K", "t"], as_index=False)["gap"].mean().sort_values(["K", "t"], ascending=[True, False])
