"""Particle paths: where score-distillation particles (``sds``, ``vsd_particles``) go during training.

Returns data only (tidy DataFrames); ``lab.viz.particles`` draws them.

    rec = ParticleRecorder(every=10, n=128)
    for _ in lab.distill(method, callbacks=[rec]): pass
    paths = rec.frame()                        # step, particle, x, y

    paths = particle_paths(method, every=10)   # the same, training ``method`` to its end
    paths = particle_paths("runs/my_sds_run")  # from a run folder's snapshots
    summary = particle_summary(paths, source.gmm)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lab.diffusion.generators import make_noise
from lab.errors import LabError
from lab.runs.loop import Callback, train
from lab.runs.run import Run

COLUMNS = ["step", "particle", "x", "y"]


def current_points(method, n: int | None = None, seed: int = 2024) -> np.ndarray:
    """The method's current points: its first n particles, or its generator on fixed noise."""
    gen = method.generator()
    if n is None:
        n = method.config.n_particles if hasattr(method.config, "n_particles") else 512
    z = make_noise(n, 2, seed=seed, device=method.device)
    nfe = min(gen.native_nfe) if gen.native_nfe else 1
    with torch.no_grad():
        return gen.sample(z=z, nfe=nfe, seed=0).x.detach().cpu().numpy()


class ParticleRecorder(Callback):
    """Records the first ``n`` points every ``every`` steps (and the starting positions)."""

    def __init__(self, every: int = 10, n: int | None = 128):
        if not isinstance(every, int) or every < 1:
            raise LabError(f"every must be a positive integer, got {every!r}")
        self.every, self.n = every, n
        self.steps: list[int] = []
        self.points: list[np.ndarray] = []

    def _record(self, step, trainable):
        if self.steps and self.steps[-1] == step:
            return
        self.steps.append(int(step))
        self.points.append(current_points(trainable, self.n))

    def on_start(self, trainable, total):
        self._record(trainable.it, trainable)

    def on_step(self, state):
        if state.it % self.every == 0 or state.it == state.total:
            self._record(state.it, state.trainable)

    def frame(self) -> pd.DataFrame:
        if not self.points:
            return pd.DataFrame(columns=COLUMNS)
        return _frame(self.steps, self.points)


def _frame(steps, points) -> pd.DataFrame:
    parts = []
    for s, p in zip(steps, points):
        parts.append(pd.DataFrame({"step": s, "particle": np.arange(p.shape[0]), "x": p[:, 0], "y": p[:, 1]}))
    return pd.concat(parts, ignore_index=True)


def particle_paths(method_or_run, every: int = 10, n: int | None = 128, steps: int | None = None) -> pd.DataFrame:
    """Particle positions over training: DataFrame(step, particle, x, y).

    ``method_or_run`` is a method (trained here from its current step to ``steps`` or its
    own total, recording every ``every`` steps) or a run folder / :class:`lab.runs.Run`
    (read from its snapshots: the first ``n`` of each snapshot's ``samples``).
    """
    if isinstance(method_or_run, (str, Path, Run)):
        run = method_or_run if isinstance(method_or_run, Run) else Run.open(method_or_run)
        snaps = run.snapshots()
        if not snaps:
            raise LabError(f"run {run.folder} has no snapshots; train it with a Recorder (distill_run does)")
        steps_, pts = [], []
        for p in snaps:
            with np.load(p, allow_pickle=False) as z:
                if "samples" not in z:
                    continue
                steps_.append(int(p.stem.split("_")[1]))
                pts.append(z["samples"][:n] if n else z["samples"])
        if not pts:
            raise LabError(f"run {run.folder}'s snapshots hold no samples")
        return _frame(steps_, pts)
    if not hasattr(method_or_run, "generator"):
        raise LabError(f"particle_paths needs a method or a run folder, got {type(method_or_run).__name__}")
    rec = ParticleRecorder(every, n)
    for _ in train(method_or_run, steps, [rec]):
        pass
    return rec.frame()


def nearest_mode_distance(points, gmm) -> np.ndarray:
    """Distance from each point to the nearest mixture-component centre."""
    x = torch.tensor(np.array(points, dtype=np.float64))
    return torch.cdist(x, gmm.means.to(torch.float64)).min(1).values.numpy()


def particle_summary(paths: pd.DataFrame, gmm=None) -> pd.DataFrame:
    """Per recorded step: mean step length since the previous record, spread (std of x and y), and,
    with a GMM, the mean distance to the nearest mode centre. Columns: step, n, move, spread, mode_dist."""
    rows, prev = [], None
    for step, g in paths.sort_values(["step", "particle"]).groupby("step", sort=True):
        p = g[["x", "y"]].to_numpy()
        move = float(np.linalg.norm(p - prev, axis=1).mean()) if prev is not None and prev.shape == p.shape else np.nan
        rows.append({"step": int(step), "n": len(p), "move": move, "spread": float(p.std(0).mean()),
                     "mode_dist": float(nearest_mode_distance(p, gmm).mean()) if gmm is not None else np.nan})
        prev = p
    return pd.DataFrame(rows)
