"""Probes look inside methods and generators. They return data (tidy DataFrames, arrays), never figures.

- ``targets``: at a chosen t, the teacher's prediction and the method's regression target.
- ``trajectories``: teacher ODE paths and a student's jumps from the same noise, with straightness.
- ``sample_panels``: teacher at N steps and students at 1, 2, 4 steps from the same noise, with distances.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd
import torch

from lab.diffusion.generators import Generator, make_noise
from lab.diffusion.samplers import straightness
from lab.errors import LabError
from lab.metrics import sliced_wasserstein


def to_numpy(x):
    """A tensor (detached, on the CPU) or anything array-like as a numpy array."""
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def grid(lim: float = 3.0, n: int = 15, device="cpu") -> torch.Tensor:
    u = torch.linspace(-lim, lim, n)
    gx, gy = torch.meshgrid(u, u, indexing="xy")
    return torch.stack([gx.flatten(), gy.flatten()], 1).to(device)


def targets(method, t: float = 0.5, n: int = 200, on: str = "auto", lim: float = 3.0, seed: int = 0) -> pd.DataFrame:
    """What ``method`` regresses to at time t.

    ``on="grid"`` evaluates on a regular grid of x_t (methods whose target is a function of
    x_t alone); ``on="data"`` on the method's own training inputs at time t; ``"auto"``
    tries the grid first. Columns: x, y (the input x_t), target_x, target_y, teacher_x,
    teacher_y, student_x, student_y, space, t, on.
    """
    if on not in ("auto", "grid", "data"):
        raise LabError(f"unknown probe location {on!r}; allowed: auto, grid, data")
    if not 0.0 < float(t) <= 1.0:
        raise LabError(f"t must be in (0, 1], got {t}")
    tg = None
    if on in ("auto", "grid"):
        side = max(2, int(round(np.sqrt(n))))
        x_t = grid(lim, side, method.device)
        try:
            tg = method.targets({"x_t": x_t}, t=t)
            where = "grid"
        except (ValueError, KeyError):
            if on == "grid":
                raise LabError(f"{method.name}'s target is not a function of x_t alone; use on='data'") from None
    if tg is None:
        tg = method.targets(method.probe_batch(n, t, seed), t=t)
        where = "data"
    out = pd.DataFrame({"x": to_numpy(tg.x_t[:, 0]), "y": to_numpy(tg.x_t[:, 1]),
                        "target_x": to_numpy(tg.target[:, 0]), "target_y": to_numpy(tg.target[:, 1])})
    for k in ("teacher", "student"):
        v = getattr(tg, k)
        out[f"{k}_x"] = to_numpy(v[:, 0]) if v is not None else np.nan
        out[f"{k}_y"] = to_numpy(v[:, 1]) if v is not None else np.nan
    out["space"], out["t"], out["on"], out["method"] = tg.space, float(t), where, method.name
    return out


def trajectories(teacher: Generator, student: Generator | None = None, n: int = 64, teacher_nfe: int = 50,
                 student_nfe: int = 2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paths from the same noise. Returns (paths, summary).

    paths: one row per (model, path, point) with columns model, path, k, t, x, y.
    summary: one row per model with mean straightness (0 = straight) and nfe.
    """
    z = make_noise(n, teacher.shape, seed, teacher.device)
    rows, summ = [], []
    models = [("teacher", teacher, teacher_nfe)]
    if student is not None:
        models.append(("student", student, student_nfe))
    for label, gen, nfe in models:
        res = gen.sample(z=z, nfe=nfe, seed=seed, return_trajectory=True)
        tr, ts = to_numpy(res.trajectory), to_numpy(res.times)
        k_idx, p_idx = np.meshgrid(np.arange(tr.shape[0]), np.arange(tr.shape[1]), indexing="ij")
        rows.append(pd.DataFrame({"model": label, "path": p_idx.ravel(), "k": k_idx.ravel(),
                                  "t": np.repeat(ts[: tr.shape[0]], tr.shape[1]),
                                  "x": tr[..., 0].ravel(), "y": tr[..., 1].ravel()}))
        s = straightness(res.trajectory, res.times[: res.trajectory.shape[0]])
        summ.append({"model": label, "nfe": nfe, "straightness": float(s.mean())})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(summ)


def panel_nfes(gen: Generator, wanted=(1, 2, 4), native_only: bool = True) -> tuple[int, ...]:
    """The NFEs at which to show ``gen``: those of ``wanted`` it serves natively (a one-step generator
    is shown at 1 NFE only); all of ``wanted`` for a generator without native NFEs (ODE samplers)
    or when ``native_only`` is off; its smallest native NFE when none of ``wanted`` is native."""
    nat = tuple(getattr(gen, "native_nfe", ()) or ())
    if not native_only or not nat:
        return tuple(wanted)
    return tuple(k for k in wanted if k in nat) or (min(nat),)


def timed_sample(gen: Generator, z: torch.Tensor, nfe: int, seed: int = 0, y=None, repeats: int = 5,
                 budget: float | None = None, **cond) -> tuple:
    """Sample ``gen`` from noise ``z`` at ``nfe``, timed warm: one untimed call first (first-call setup,
    allocator, caches), then ``repeats`` timed calls, each until the samples are on the host (so an
    asynchronous device is timed too). With a ``budget`` (seconds), stop early once at least
    ``min(3, repeats)`` timed calls took that long together (a slow model still gets a median of three).
    Returns (SampleResult of the last call, its x a CPU tensor; median seconds; every timed call's seconds)."""
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise LabError(f"repeats must be an integer >= 1, got {repeats!r}")
    z = z.to(gen.device)
    y = None if y is None else y.to(gen.device)
    gen.sample(z=z, nfe=nfe, seed=seed, y=y, **cond).x.cpu()  # warm-up, not timed
    times, res = [], None
    while len(times) < repeats and not (budget is not None and len(times) >= min(3, repeats) and sum(times) > budget):
        t0 = time.perf_counter()
        res = gen.sample(z=z, nfe=nfe, seed=seed, y=y, **cond)
        res.x = res.x.cpu()
        times.append(time.perf_counter() - t0)
    return res, statistics.median(times), times


def sample_panels(teacher: Generator, students: dict[str, Generator], source, n: int = 1000, teacher_nfe: int = 50,
                  student_nfe=(1, 2, 4), seed: int = 0, native_only: bool = True) -> pd.DataFrame:
    """Samples from the same noise: teacher at ``teacher_nfe`` and each student at each of ``student_nfe``
    that it serves natively (``panel_nfes``; ``native_only=False`` shows every one).

    One row per point: model, nfe, x, y; plus per-panel columns swd (to fresh data), swd_floor
    and seconds (wall-clock time to sample, warm: the median of up to three timed calls after an untimed one).
    """
    from lab.metrics import noise_floor  # inside: no cycle; lab.metrics is already imported at the top

    ref = source.sample(n, torch.Generator().manual_seed(seed + 777))
    floor = noise_floor(source, n)
    z = make_noise(n, teacher.shape, seed, teacher.device)
    panels = [("teacher", teacher, teacher_nfe)] + [(name, g, k) for name, g in students.items()
                                                    for k in panel_nfes(g, student_nfe, native_only)]
    frames = []
    for label, gen, nfe in panels:
        res, sec, _ = timed_sample(gen, z, nfe, seed=seed, repeats=3, budget=0.5)
        x = res.x
        xs = to_numpy(x)
        frames.append(pd.DataFrame({"model": label, "nfe": nfe, "x": xs[:, 0], "y": xs[:, 1],
                                    "swd": sliced_wasserstein(x, ref), "swd_floor": floor, "seconds": sec}))
    return pd.concat(frames, ignore_index=True)


def panel_summary(panels: pd.DataFrame) -> pd.DataFrame:
    return panels.groupby(["model", "nfe"], sort=False)[["swd", "swd_floor", "seconds"]].first().reset_index()


# similarity and calibration probes (knowledge distillation, issue 5)
from lab.metrics.calibration import agreement, ece, entropy_per_class, reliability, soft_labels, temperature_sweep  # noqa: E402
from lab.metrics.similarity import cka_matrix, linear_cka, minibatch_cka, rbf_cka  # noqa: E402

__all__ = ["grid", "targets", "trajectories", "panel_nfes", "timed_sample", "sample_panels", "panel_summary", "linear_cka", "rbf_cka",
           "minibatch_cka", "cka_matrix", "ece", "reliability", "agreement", "entropy_per_class", "soft_labels",
           "temperature_sweep"]
